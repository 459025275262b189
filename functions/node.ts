/**
 * One node of the federation. Deployed once per node, each in its operator's own stack;
 * NODE_ID, its bucket and tables come from the environment, its keys from its own secret
 * (read at run time), its peers from the signed membership document it holds. Every route
 * but /status and /identity requires a request signed
 * by the coordinator, and every route that releases or changes key material also
 * requires the client's own signed request, checked here by the node itself
 * (lib/node/gate.ts) against the policy stored with its own fragment.
 */
import * as z from '../lib/zod.js';
import { parseKeyId } from '../lib/key-id.js';
import { httpApi, parseInput, type HttpRequest } from '../lib/http/api.js';
import { parseX25519Public } from '../lib/crypto/seal.js';
import { assertClientKey, type ClientEnvelope } from '../lib/crypto/client-auth.js';
import { clientRecordSchema, holders, matches, policySchema, transitionSchema } from '../lib/access/policy.js';
import { importRequestSchema } from '../lib/node/service.js';
import { nodeLogicalPath, nodeRuntime, type NodeRuntime } from '../lib/node/runtime.js';
import { auditReport } from '../lib/node/audit-report.js';
import { dkgSchemas } from '../lib/node/dkg.js';
import { signSchemas, signerSet } from '../lib/node/signing.js';
import { reshareSchemas } from '../lib/node/reshare.js';
import { datakeySchema, decryptSchema } from '../lib/node/decrypt.js';
import { REWITNESS_BUDGET_MS } from '../lib/audit/checkpointing.js';

const versionParam = z.optional(z.coerce.number().check(z.int(), z.gte(1), z.lte(1_000_000)));
const fragmentQuery = z.strictObject({ keyId: z.string(), recipient: z.string(), version: versionParam });
const keyQuery = z.strictObject({ keyId: z.string(), version: versionParam });
const stateBody = z.extend(transitionSchema, { keyId: z.string() }); // strict, as transitionSchema is
const policyBody = z.strictObject({ keyId: z.string(), policy: policySchema });
const auditQuery = z.strictObject({
  limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(20_000)), 2000),
  // Where a page starts: the `next` of the previous page (the verifier reads every record).
  afterStream: z.optional(z.string().check(z.maxLength(200))),
  afterSeq: z.optional(z.coerce.number().check(z.int(), z.gte(0))),
});

type Runtime = NodeRuntime;
const shape = (threshold: number, participants: { nodeId: string }[]) => ({ threshold, nodeIds: participants.map((p) => p.nodeId) });
/** What a create makes here, and the federation's defaults for what the client left out (the membership this node holds). */
const createShape = (rt: Runtime, threshold: number, participants: { nodeId: string }[]) => {
  const doc = rt.signed!.document;
  return { ...shape(threshold, participants), defaults: { threshold: doc.threshold, nodeIds: doc.nodes.map((n) => n.id) } };
};

/**
 * Authenticate the coordinator, read the relayed client request, then run `fn`; client refusals
 * are audited. `member`: the route holds or makes shares, so it needs this node's share index;
 * such routes read the membership afresh, as a node that just joined must see itself at once.
 */
const authed = <T>(fn: (rt: Runtime, req: HttpRequest, signer: string, client: ClientEnvelope | undefined) => Promise<T>, opts: { member?: boolean } = {}) =>
  async (req: HttpRequest) => {
    const rt = await nodeRuntime(process.env, opts.member);
    const { signer } = await rt.authenticate(req);
    if (opts.member) rt.requireMember();
    let client: ClientEnvelope | undefined;
    try {
      client = rt.envelope(req);
      return await fn(rt, req, signer, client);
    } catch (e) {
      await rt.recordClientRefusal(req, e, client);
      throw e;
    }
  };

export const handler = httpApi({
  service: 'fedkms-node',
  // A signing request carries the message twice (its own field and the relayed client
  // request), so a node takes up to twice the public API's 64 KiB plus room for the rest.
  maxBodyBytes: 160 * 1024,
  routeOf: (req) => `${req.method} ${nodeLogicalPath(req)}`,
  routes: {
    'GET /status': async () => {
      const rt = await nodeRuntime();
      return { ...(await rt.service.status()), member: !!rt.me, membershipVersion: rt.signed?.document.version ?? null };
    },
    // The self-signed identity document: public, like a TLS certificate.
    'GET /identity': async () => (await nodeRuntime()).identity(),
    // Membership (lib/node/membership.ts): the signed document, and its replacement by a newer one.
    'GET /membership': authed(async (rt) => ({ nodeId: rt.cfg.NODE_ID, membership: await rt.membership.current(true) })),
    // A new membership can retire witnesses: checkpoint this node's chains again with the new ones.
    'PUT /membership': authed(async (rt, req, signer) => {
      const answer = await rt.membership.update(req.body, signer);
      await rt.audit.rewitness(REWITNESS_BUDGET_MS);
      return answer;
    }),
    // This node's own audit chains, verified here and signed with its identity key.
    'GET /audit/verify': authed(async (rt) => auditReport(rt.cfg.NODE_ID, await rt.audit.readAll(), rt.sign)),
    // A bounded read of its chains, for the dashboard's events and security log.
    'GET /audit/records': authed(async (rt, req) => {
      const { limit, afterStream, afterSeq } = parseInput(auditQuery, req.query);
      return { nodeId: rt.cfg.NODE_ID, ...(await rt.auditStore.readBounded(limit, afterStream !== undefined && afterSeq !== undefined ? { stream: afterStream, seq: afterSeq } : undefined)) };
    }),
    // Witnessing (lib/node/witness.ts): countersign and keep a peer's or the coordinator's signed checkpoint.
    'POST /audit/witness': async (req: HttpRequest) => {
      const rt = await nodeRuntime();
      const { signer } = await rt.authenticateWitness(req);
      const { clientAuth: _relayed, ...body } = (req.body ?? {}) as Record<string, unknown>;
      return rt.witness.witness(body, signer);
    },
    // The checkpoints this node keeps as a witness, for verification and the dashboard.
    'GET /audit/witnessed': authed(async (rt) => ({ nodeId: rt.cfg.NODE_ID, checkpoints: await rt.witness.list() })),
    // Relayed for a client's own listing (GET /keys), only the keys whose policy on this node lets
    // that client describe them; administrators see every key id. The coordinator's own listing is whole.
    'GET /keys': authed(async (rt, _req, _signer, client) => {
      const all = await rt.service.listKeys();
      if (!client || client.method !== 'GET' || client.path !== '/keys') return all;
      const a = await rt.access.authenticate(client, 'GET /keys');
      if (a.who.roles.includes('admin')) return all;
      const seen: boolean[] = [];
      for (let i = 0; i < all.keys.length; i += 16) {
        seen.push(...(await Promise.all(all.keys.slice(i, i + 16).map(async (k) => {
          const c = await rt.access.control(k.keyId).catch(() => null);
          return !!c && c.state !== 'destroyed' && matches(holders(c.policy, 'describe'), a.who);
        }))));
      }
      return { ...all, keys: all.keys.filter((_, i) => seen[i]) };
    }),
    'GET /key': authed(async (rt, req, _signer, client) => {
      const q = parseInput(keyQuery, req.query);
      const keyId = parseKeyId(q.keyId);
      const control = await rt.gate.describe(client, keyId);
      const answer = await rt.service.describe(keyId, q.version);
      return { ...answer, ...(control ? { control: { state: control.state, policyVersion: control.policyVersion, policy: control.policy, owner: control.owner } } : {}) };
    }),
    'GET /fragment': authed(async (rt, req, _signer, client) => {
      const q = parseInput(fragmentQuery, req.query);
      const keyId = parseKeyId(q.keyId);
      const recipient = parseX25519Public(q.recipient);
      const g = await rt.gate.fragment(client, keyId, q.recipient, q.version);
      const answer = await rt.service.fragment(keyId, recipient, g.actor, q.version, { mode: g.mode, ...(g.approvers.length ? { approvers: g.approvers } : {}) });
      return { ...answer, signature: rt.signFragment(answer, q.recipient, client!.requestId) };
    }),
    'PUT /fragment': authed(async (rt, req, _signer, client) => {
      const body = parseInput(importRequestSchema, req.body);
      const keyId = parseKeyId(body.descriptor.keyId);
      const d = body.descriptor;
      const g = await rt.gate.create(client, keyId, d.type, 'PUT /fragment', { ...createShape(rt, d.publicPackage.threshold, d.participants), descriptor: d });
      return { status: 201, body: await rt.service.importShare(body, g.actor) };
    }, { member: true }),
    'DELETE /fragment': authed(async (rt, req, _signer, client) => {
      const q = parseInput(z.required(keyQuery, { version: true }), req.query);
      const keyId = parseKeyId(q.keyId);
      const g = await rt.gate.deleteVersion(client, keyId, q.version!, await rt.service.versionsOf(keyId));
      return rt.service.deleteVersion(keyId, q.version!, g.actor);
    }),
    // Client registry, key lifecycle and policy (lib/node/lifecycle.ts).
    'GET /clients': authed(async (rt) => ({ nodeId: rt.cfg.NODE_ID, clients: await rt.access.listClients() })),
    'PUT /client': authed(async (rt, req, _signer, client) => {
      const record = parseInput(clientRecordSchema, req.body);
      assertClientKey(record.publicKey);
      const actor = await rt.gate.registerClient(client, record);
      return rt.lifecycle.registerClient(record, actor);
    }),
    'POST /key/state': authed(async (rt, req, _signer, client) => {
      const body = parseInput(stateBody, req.body);
      const g = await rt.gate.transition(client, parseKeyId(body.keyId), body.state);
      return rt.lifecycle.transition(g.control, body.state, g.actor, body.reason, g.breakGlass);
    }),
    'PUT /key/policy': authed(async (rt, req, _signer, client) => {
      const body = parseInput(policyBody, req.body);
      const keyId = parseKeyId(body.keyId);
      // The key's type decides which use its policy may grant (one key, one purpose).
      const versions = await rt.service.versionsOf(keyId);
      const keyType = versions.length ? (await rt.service.describe(keyId)).descriptor.type : undefined;
      const g = await rt.gate.setPolicy(client, keyId, body.policy, keyType);
      return rt.lifecycle.setPolicy(g.control, body.policy, g.actor);
    }),
    // Distributed key generation, relayed by the coordinator (lib/node/dkg.ts).
    'POST /dkg/round1': authed(async (rt, req, _signer, client) => {
      const body = parseInput(dkgSchemas.round1, req.body);
      await rt.gate.create(client, parseKeyId(body.keyId), body.type ?? 'ed25519', 'POST /dkg/round1', createShape(rt, body.threshold, body.participants));
      return rt.dkg.round1(body);
    }, { member: true }),
    'POST /dkg/confirm': authed((rt, req) => rt.dkg.confirm(parseInput(dkgSchemas.confirm, req.body)), { member: true }),
    'POST /dkg/round2': authed((rt, req) => rt.dkg.round2(parseInput(dkgSchemas.round2, req.body)), { member: true }),
    'POST /dkg/round3': authed((rt, req) => rt.dkg.round3(parseInput(dkgSchemas.round3, req.body)), { member: true }),
    'POST /dkg/commit': authed(async (rt, req) => ({ status: 201, body: await rt.dkg.commit(parseInput(dkgSchemas.commit, req.body)) }), { member: true }),
    'POST /dkg/abort': authed((rt, req) => rt.dkg.abort(parseInput(dkgSchemas.abort, req.body))),
    // FROST signing (lib/node/signing.ts). Commitments are public; a signature share needs the client's request.
    // With a client request (as the coordinator always relays one), fresh nonces need the key's sign permission.
    'POST /sign/commit': authed(async (rt, req, _signer, client) => {
      const body = parseInput(signSchemas.commit, req.body);
      const keyId = parseKeyId(body.keyId);
      if (client) await rt.gate.signCommit(client, keyId, body.sessionId);
      return rt.signing.commit({ ...body, keyId });
    }),
    // Filling the pool needs the client's request and the key's sign permission, checked before any nonce exists.
    'POST /sign/preprocess': authed(async (rt, req, _signer, client) => {
      const body = parseInput(signSchemas.preprocess, req.body);
      const keyId = parseKeyId(body.keyId);
      await rt.gate.preprocess(client, keyId);
      return rt.signing.preprocess({ ...body, keyId });
    }),
    'POST /sign/share': authed((rt, req, signer, client) => {
      const body = parseInput(signSchemas.share, req.body);
      const keyId = parseKeyId(body.keyId);
      const check = rt.gate.beginSignShare(client, keyId, signerSet(body.commitments));
      return rt.signing.share({ ...body, keyId }, signer, async (version, message, keyType) => (await check(message, version, keyType)).actor);
    }),
    // Threshold decryption (lib/node/decrypt.ts): a proven partial, sealed to the client's one-time key.
    'POST /decrypt': authed(async (rt, req, _signer, client) => {
      const body = parseInput(decryptSchema, req.body);
      const keyId = parseKeyId(body.keyId);
      const recipient = parseX25519Public(body.recipient);
      if (body.destinationKeyId !== undefined) parseKeyId(body.destinationKeyId);
      const g = await rt.gate.decrypt(client, keyId, body);
      return rt.decrypt.decrypt({ ...body, keyId }, recipient, g.actor, g.requestId, g.approvers);
    }, { member: true }),
    // A data key the coordinator makes once t nodes consent (lib/node/decrypt.ts `datakey`): checked and audited here.
    'POST /datakey': authed(async (rt, req, _signer, client) => {
      const body = parseInput(datakeySchema, req.body);
      const keyId = parseKeyId(body.keyId);
      parseX25519Public(body.recipient);
      const g = await rt.gate.datakey(client, keyId, body);
      return rt.decrypt.datakey({ ...body, keyId }, g.actor, g.requestId);
    }),
    // Refresh and reshare (lib/node/reshare.ts).
    'POST /reshare/deal': authed(async (rt, req, _signer, client) => {
      const body = parseInput(reshareSchemas.deal, req.body);
      const keyId = parseKeyId(body.keyId);
      const { descriptor: d } = await rt.service.describe(keyId, body.version);
      const g = await rt.gate.reshareDeal(client, keyId, shape(d.publicPackage.threshold, d.participants), shape(body.threshold, body.participants));
      return rt.reshare.deal({ ...body, keyId }, g.actor, { state: g.control.state, policy: g.control.policy, policyVersion: g.control.policyVersion, owner: g.control.owner });
    }, { member: true }),
    'POST /reshare/receive': authed(async (rt, req, _signer, client) => {
      const body = parseInput(reshareSchemas.receive, req.body);
      const old = body.old;
      const g = await rt.gate.reshareReceive(client, parseKeyId(old.keyId), shape(old.publicPackage.threshold, old.participants), shape(body.threshold, body.participants));
      return rt.reshare.receive(body, g.admit);
    }, { member: true }),
    'POST /reshare/commit': authed(async (rt, req, signer) => ({ status: 201, body: await rt.reshare.commit(parseInput(reshareSchemas.commit, req.body), signer) }), { member: true }),
  },
});
