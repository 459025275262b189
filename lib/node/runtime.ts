/**
 * Wires a node from its environment, its own secrets (read at run time, lib/aws/runtime-settings.ts)
 * and the membership document it holds. Two layers: what depends only on configuration and
 * secrets is built once per warm instance; what depends on the membership (this node's share
 * index, its peers' identity keys) is rebuilt when the document changes.
 */
import { dynamoClient, s3Client } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { S3FragmentStore } from '../aws/fragment-store.js';
import { DynamoReplayGuard } from '../aws/replay-guard.js';
import { loadSecrets } from '../aws/runtime-settings.js';
import { identifierFor } from '../crypto/shares.js';
import type { HttpRequest } from '../http/api.js';
import { configKey, nodeConfig, secretFields, type NodeConfig } from '../runtime-config.js';
import { recordRefusal } from '../audit/refusal.js';
import { authenticateServiceRequest } from '../access/service-auth.js';
import { NodeDkg } from './dkg.js';
import { NodeService, auditStream } from './service.js';
import { SessionVault } from './sessions.js';
import { NodeSigning } from './signing.js';
import { NodeReshare } from './reshare.js';
import { NodeDecrypt } from './decrypt.js';
import { NodeAccess } from './access.js';
import { ClientGate } from './gate.js';
import { NodeLifecycle } from './lifecycle.js';
import { NodeMembership } from './membership.js';
import { decodeEnvelope, ENVELOPE_HEADER, type ClientEnvelope } from '../crypto/client-auth.js';
import { signStatement } from '../crypto/identity.js';
import { ed25519PublicFromPrivate } from '../crypto/ed25519-signature.js';
import { x25519PublicFromPrivate } from '../crypto/seal.js';
import { toB64 } from '../encoding.js';
import { ConflictError } from '../errors.js';
import { membershipDigest, signIdentity, type SignedMembership } from '../federation/membership.js';
import { fragmentStatement } from '../reconstruction.js';
import { recordSigStatement } from '../audit/chain.js';
import { CheckpointingAuditLog, logDegraded, publisher } from '../audit/checkpointing.js';
import { NodeClient } from '../coordinator/node-client.js';
import { NodeWitness } from './witness.js';

type Base = Awaited<ReturnType<typeof buildBase>>;
export type NodeRuntime = Awaited<ReturnType<typeof buildMemberRuntime>>;
let base: { key: string; value: Promise<Base> } | undefined;
let member: { key: string; runtime: NodeRuntime } | undefined;

/** The node-relative path: the same whether the node sits under a shared API or its own (needs only NODE_ID). */
export function nodeLogicalPath(req: HttpRequest, env: NodeJS.ProcessEnv = process.env): string {
  const prefix = `/nodes/${env['NODE_ID'] ?? ''}`;
  return req.rawPath.startsWith(prefix) ? req.rawPath.slice(prefix.length) || '/' : req.rawPath;
}

/**
 * This node's runtime for the membership it holds now. `fresh` re-reads the membership
 * (routes that act on it: DKG, reshare, membership itself); others may use a copy a few seconds old.
 */
export async function nodeRuntime(env: NodeJS.ProcessEnv = process.env, fresh = false): Promise<NodeRuntime> {
  const key = configKey('node', env);
  if (base?.key !== key) {
    base = { key, value: buildBase(env) };
    member = undefined;
    // A failed build (secrets unreadable) is retried by the next request.
    base.value.catch(() => { if (base?.key === key) base = undefined; });
  }
  const b = await base.value;
  const signed = await b.membership.current(fresh);
  const mkey = signed ? membershipDigest(signed.document) : 'none';
  if (member?.key !== mkey) member = { key: mkey, runtime: buildMemberRuntime(b, signed) };
  return member.runtime;
}

async function buildBase(env: NodeJS.ProcessEnv) {
  const cfg = nodeConfig(env);
  const secrets = secretFields(await loadSecrets({ AWS_REGION: cfg.AWS_REGION, secretId: cfg.NODE_SECRET_ID, file: cfg.NODE_SECRETS_FILE }), { wrapKey: 32, x25519Private: 32, signingPrivate: 32 });
  const keys = { signingPublic: toB64(ed25519PublicFromPrivate(secrets.signingPrivate)), x25519Public: toB64(x25519PublicFromPrivate(secrets.x25519Private)) };
  const ddb = dynamoClient(cfg);
  const sign = (statement: unknown) => signStatement(secrets.signingPrivate, statement);
  // Every record is signed with this node's identity key; its chains are checkpointed with its peers as witnesses.
  const auditStore = new DynamoAuditLog(ddb, cfg.AUDIT_TABLE, undefined, (hash) => sign(recordSigStatement(hash)));
  const store = new S3FragmentStore(s3Client(cfg), cfg.FRAGMENT_BUCKET);
  const replay = new DynamoReplayGuard(ddb, cfg.REPLAY_TABLE);
  const access = new NodeAccess({ nodeId: cfg.NODE_ID, wrapKey: secrets.wrapKey, store, replay, bootstrapAdmin: cfg.FEDKMS_ADMIN_PUBLIC_KEY, maxSkewS: cfg.MAX_CLOCK_SKEW_S });
  const peerClient = new NodeClient(secrets.signingPrivate, fetch, { signer: `node:${cfg.NODE_ID}` });
  const peersOf = async () => ((await membership.current())?.document.nodes ?? []).filter((n) => n.id !== cfg.NODE_ID);
  const audit = new CheckpointingAuditLog(auditStore, {
    origin: cfg.NODE_ID,
    policy: { releases: cfg.AUDIT_CHECKPOINT_RELEASES, maxAgeMs: cfg.AUDIT_CHECKPOINT_MAX_AGE_S * 1000 },
    sign,
    onDegraded: logDegraded,
    publish: publisher(peersOf, (m, cp, signal) => peerClient.call({ id: m.id, url: m.endpoint }, { method: 'POST', path: '/audit/witness', body: cp }, signal), cfg.AUDIT_WITNESS_TIMEOUT_MS),
  });
  const membership: NodeMembership = new NodeMembership({ nodeId: cfg.NODE_ID, ...keys, access, audit, stream: auditStream(cfg.NODE_ID) });
  /** Identity keys of what this node witnesses: its peers (from the membership it holds) and the coordinator. */
  const witnessKeys = async () => new Map<string, string>([['coordinator', toB64(cfg.COORDINATOR_PUBLIC_KEY)], ...(await peersOf()).map((n) => [n.id, n.signingPublic] as [string, string])]);
  const witness = new NodeWitness({ nodeId: cfg.NODE_ID, access, store, sign, keys: witnessKeys });
  /** The self-signed identity document an operator hands to an administrator. */
  const identity = () => signIdentity({ nodeId: cfg.NODE_ID, endpoint: cfg.NODE_ENDPOINT, ...keys, softwareVersion: cfg.FEDKMS_VERSION, issuedAt: new Date().toISOString() }, secrets.signingPrivate);
  return { cfg, secrets, keys, audit, auditStore, store, replay, access, membership, identity, witness };
}

function buildMemberRuntime(b: Base, signed: SignedMembership | null) {
  const { cfg, secrets, audit, auditStore, store, replay, access, witness } = b;
  const me = b.membership.me(signed?.document);
  const peers = signed?.document.nodes ?? [];
  // Before it is a member a node has no share index: it serves its identity and status, and waits.
  const identity = { nodeId: cfg.NODE_ID, identifier: me ? identifierFor(me.index) : '', wrapKey: secrets.wrapKey, x25519Private: secrets.x25519Private, version: cfg.FEDKMS_VERSION };
  const service = new NodeService(identity, { store, audit });
  const vault = new SessionVault(store, cfg.NODE_ID, secrets.wrapKey, cfg.SESSION_TTL_S);
  const dkg = new NodeDkg({ ...identity, signingKey: secrets.signingPrivate }, peers, service, vault, audit);
  const signing = new NodeSigning(identity, service, vault, audit, replay);
  const decrypt = new NodeDecrypt(identity, service, audit);
  const reshare = new NodeReshare({ ...identity, signingKey: secrets.signingPrivate }, peers, service, vault, audit);
  const gate = new ClientGate(access, async (keyId) => (await service.versionsOf(keyId)).at(-1), { claims: { scope: cfg.NODE_ID, guard: replay }, rules: { minThreshold: cfg.FEDKMS_MIN_THRESHOLD, minNodes: cfg.FEDKMS_MIN_NODES } });
  const lifecycle = new NodeLifecycle(cfg.NODE_ID, access, service, audit);
  const logicalPath = (req: HttpRequest) => nodeLogicalPath(req, { NODE_ID: cfg.NODE_ID });
  /** Routes that hold or make shares need a share index: only a member has one. */
  const requireMember = () => {
    if (!me) throw new ConflictError('not_a_member', `${cfg.NODE_ID} is not in the federation's membership document${signed ? ` (version ${signed.document.version})` : ' (none received yet)'}`);
    return me;
  };
  /** Authenticate and authorize the signer for this route; refusals are audited (best effort) and rethrown. */
  const authenticate = async (req: HttpRequest) => {
    const path = logicalPath(req);
    try {
      // Only the coordinator may call a node: it relays each client's own signed request.
      return await authenticateServiceRequest(
        { method: req.method, path, query: req.query, body: req.rawBody, headers: req.headers },
        { audience: cfg.NODE_ID, signers: { coordinator: cfg.COORDINATOR_PUBLIC_KEY }, defaultSigner: 'coordinator', replayScope: cfg.NODE_ID, maxSkewS: cfg.MAX_CLOCK_SKEW_S, replay },
      );
    } catch (e) {
      await recordRefusal(audit, auditStream(cfg.NODE_ID), e, { method: req.method, path, sourceIp: req.sourceIp });
      throw e;
    }
  };
  /**
   * The client request the coordinator relays (a header on GET and DELETE, a `clientAuth`
   * field of a JSON body otherwise). The field is removed before the route parses its body.
   */
  const envelope = (req: HttpRequest): ClientEnvelope | undefined => {
    const header = req.headers[ENVELOPE_HEADER];
    const body = req.body as Record<string, unknown> | undefined;
    if (body && typeof body === 'object' && !Array.isArray(body) && 'clientAuth' in body) {
      const { clientAuth, ...rest } = body;
      req.body = rest;
      return decodeEnvelope(clientAuth);
    }
    return header ? decodeEnvelope(header) : undefined;
  };
  /** Client refusals (unknown, disabled, replayed, not authorized, mismatched) go to this node's audit chain. */
  const recordClientRefusal = (req: HttpRequest, e: unknown, env: ClientEnvelope | undefined) =>
    recordRefusal(audit, auditStream(cfg.NODE_ID), e, { method: req.method, path: logicalPath(req), sourceIp: req.sourceIp, signer: env ? `client:${env.client}` : undefined });
  /**
   * The witness route takes a signed request from the coordinator or from a peer node (its
   * identity key in the membership): `node:<id>`. Every other route takes the coordinator only.
   */
  const authenticateWitness = async (req: HttpRequest) => {
    const path = logicalPath(req);
    const signers: Record<string, Uint8Array> = { coordinator: cfg.COORDINATOR_PUBLIC_KEY };
    for (const n of peers) if (n.id !== cfg.NODE_ID) signers[`node:${n.id}`] = Buffer.from(n.signingPublic, 'base64');
    try {
      return await authenticateServiceRequest(
        { method: req.method, path, query: req.query, body: req.rawBody, headers: req.headers },
        { audience: cfg.NODE_ID, signers, defaultSigner: 'coordinator', replayScope: cfg.NODE_ID, maxSkewS: cfg.MAX_CLOCK_SKEW_S, replay },
      );
    } catch (e) {
      await recordRefusal(audit, auditStream(cfg.NODE_ID), e, { method: req.method, path, sourceIp: req.sourceIp });
      throw e;
    }
  };
  /** This node's signature over a released fragment, for clients that pin node identity keys. */
  const signFragment = (answer: Parameters<typeof fragmentStatement>[0], recipient: string, requestId: string) =>
    signStatement(secrets.signingPrivate, fragmentStatement(answer, recipient, requestId));
  /** A statement signed with this node's identity key (its audit report). */
  const sign = (statement: unknown) => signStatement(secrets.signingPrivate, statement);
  return { cfg: cfg as NodeConfig, service, dkg, signing, decrypt, reshare, access, gate, lifecycle, membership: b.membership, signed, me, identity: b.identity, keys: b.keys, audit, auditStore, witness, authenticateWitness, requireMember, authenticate, logicalPath, envelope, recordClientRefusal, signFragment, sign };
}
