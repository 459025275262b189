/**
 * The public API (the "secure aggregator"): keys, signing, reconstruction, clients,
 * lifecycle, policies, approvals, membership and audit verification. Stateless: any number of
 * copies can run. Every route but /status and a key's public key needs a client-signed request; the nodes
 * check that same request again before they release or change anything. The two
 * /federation routes serve the dashboard function, signed with its own key.
 */
import * as z from '../lib/zod.js';
import { changeMembership, coordinatorRuntime, coordinatorSettings, type ClientCall, type CoordinatorRuntime } from '../lib/coordinator/runtime.js';
import { createKeySchema, preprocessSchema, reconstructSchema, signSchema } from '../lib/coordinator/service.js';
import { approvalInputSchema, policyUpdateSchema, registerClientSchema, transitionSchema, type KeyView } from '../lib/coordinator/admin.js';
import { requireRole } from '../lib/access/policy.js';
import { attachApprovals } from '../lib/coordinator/client-context.js';
import { reshareSchema } from '../lib/coordinator/reshare.js';
import { datakeySchema, decryptSchema, reencryptSchema } from '../lib/coordinator/decrypt.js';
import { httpApi, parseInput, type HttpRequest } from '../lib/http/api.js';
import { parseKeyId } from '../lib/key-id.js';
import { telemetry } from '../lib/observability.js';

const obs = telemetry('fedkms-reconstruct');
const approvalsQuery = z.strictObject({ keyId: z.string() });

type Runtime = CoordinatorRuntime;

/**
 * Authenticate the client here too, then run `fn`: for routes with no node in the loop, and
 * for signing, so a stranger cannot spend the pool of pre-published nonce commitments.
 */
const authed = <T>(fn: (rt: Runtime, req: HttpRequest, call: ClientCall) => Promise<T>) =>
  async (req: HttpRequest) => {
    const rt = await coordinatorRuntime(process.env, obs);
    return rt.asClient(req, (call) => fn(rt, req, call));
  };
/**
 * Relay the client's request to the nodes, each of which authenticates and authorizes it itself.
 * `fresh`: the route picks members (create, reshare), so the membership is asked for first.
 */
const relayed = <T>(fn: (rt: Runtime, req: HttpRequest, call: ClientCall) => Promise<T>, fresh = false) =>
  async (req: HttpRequest) => {
    const rt = await coordinatorRuntime(process.env, obs, fresh);
    return rt.asClient(req, (call) => fn(rt, req, call), 'nodes');
  };
/** The dashboard function's calls: its key is accepted on these routes only. */
const fromDashboard = <T>(fn: (rt: Runtime, req: HttpRequest) => Promise<T>) =>
  async (req: HttpRequest) => {
    const rt = await coordinatorRuntime(process.env, obs);
    await rt.dashboard.authenticate(req);
    return fn(rt, req);
  };
const keyOf = (req: HttpRequest) => parseKeyId(req.pathParams['keyId']);
/** A key's version and policy as a quorum of nodes holds them: who may ask for, give and read its approvals. */
const keyView = (rt: Runtime) => async (keyId: string): Promise<KeyView> => {
  const k = (await rt.coordinator.describeKey(keyId)).key as { version: number; type?: string; policy?: unknown };
  return { version: k.version, ...(k.type ? { type: k.type } : {}), policy: k.policy as KeyView['policy'] };
};

export const handler = httpApi({
  service: 'fedkms-reconstruct',
  telemetry: obs,
  // A client that names no budget gets the configured one (the function timeout caps both).
  defaultBudgetMs: () => coordinatorSettings().REQUEST_BUDGET_MS,
  routeOf: (req) => `${req.method} ${req.rawPath.replace(/^\/keys\/[^/]+/, '/keys/{keyId}')}`,
  routes: {
    'GET /status': async () => (await coordinatorRuntime(process.env, obs)).coordinator.status(),
    'GET /keys': authed((rt) => rt.coordinator.listKeys()),
    'POST /keys': relayed(async (rt, req, { actor }) => {
      const input = parseInput(createKeySchema, req.body ?? {});
      parseKeyId(input.keyId);
      return { status: 201, body: await rt.coordinator.createKey(input, actor) };
    }, true),
    'GET /keys/{keyId}': relayed((rt, req) => rt.coordinator.describeKey(keyOf(req))),
    'POST /keys/{keyId}/sign': authed((rt, req, { actor }) => rt.coordinator.sign(keyOf(req), parseInput(signSchema, req.body ?? {}), actor)),
    'POST /keys/{keyId}/refresh': relayed((rt, req, { actor }) => rt.coordinator.refresh(keyOf(req), parseInput(reshareSchema, req.body ?? {}), actor)),
    'POST /keys/{keyId}/reshare': relayed((rt, req, { actor }) => rt.coordinator.reshare(keyOf(req), parseInput(reshareSchema, req.body ?? {}), actor), true),
    'POST /keys/{keyId}/preprocess': authed((rt, req) => rt.coordinator.preprocess(keyOf(req), parseInput(preprocessSchema, req.body ?? {}).count ?? 10)),
    // Public keys are public: anyone may check a signature. Asked without a client request,
    // each node describes the key to the coordinator alone (no describe permission involved).
    'GET /keys/{keyId}/public': async (req) => (await coordinatorRuntime(process.env, obs)).coordinator.publicKey(keyOf(req)),
    'POST /keys/{keyId}/reconstruct': relayed(async (rt, req, { who, actor }) => {
      const keyId = keyOf(req);
      const input = parseInput(reconstructSchema, req.body ?? {});
      if (input.recipient && input.expiresAt) attachApprovals(await rt.admin.approvalsFor(keyId, who.name, input.recipient, input.expiresAt));
      return rt.coordinator.reconstruct(keyId, input, actor);
    }),
    // Threshold decryption: each node checks the client's request, seals its proven partial to the client's key.
    'POST /keys/{keyId}/decrypt': relayed(async (rt, req, { who, actor }) => {
      const keyId = keyOf(req);
      const input = parseInput(decryptSchema, req.body ?? {});
      if (input.expiresAt !== undefined) attachApprovals(await rt.admin.approvalsFor(keyId, who.name, input.recipient, input.expiresAt));
      return rt.coordinator.decrypt(keyId, input, actor);
    }),
    // Re-encryption: decrypted by threshold for the client alone, audited with the destination key and context.
    'POST /keys/{keyId}/reencrypt': relayed(async (rt, req, { who, actor }) => {
      const keyId = keyOf(req);
      const input = parseInput(reencryptSchema, req.body ?? {});
      parseKeyId(input.destinationKeyId);
      if (input.expiresAt !== undefined) attachApprovals(await rt.admin.approvalsFor(keyId, who.name, input.recipient, input.expiresAt));
      return rt.coordinator.decrypt(keyId, input, actor);
    }),
    // A data key made by the coordinator once t nodes consent, sealed to the client's one-time key.
    'POST /keys/{keyId}/datakey': relayed((rt, req, { actor }) => rt.coordinator.datakey(keyOf(req), parseInput(datakeySchema, req.body ?? {}), actor)),
    'POST /keys/{keyId}/state': relayed((rt, req, { actor }) => rt.admin.transition(keyOf(req), parseInput(transitionSchema, req.body ?? {}), actor)),
    'PUT /keys/{keyId}/policy': relayed((rt, req, { actor }) => rt.admin.setPolicy(keyOf(req), parseInput(policyUpdateSchema, req.body ?? {}), actor)),
    // Least privilege: the registry in full for administrators; anyone else sees its own entry.
    'GET /clients': authed((rt, _req, { who }) => rt.admin.listClients(who)),
    'POST /clients': relayed(async (rt, req, { actor }) => ({ status: 201, body: await rt.admin.registerClient(parseInput(registerClientSchema, req.body ?? {}), actor) })),
    'GET /approvals': authed((rt, req, { who }) => rt.admin.listApprovals(parseKeyId(parseInput(approvalsQuery, req.query).keyId), who, keyView(rt))),
    'POST /approvals': authed(async (rt, req, { who, actor }) => {
      const input = parseInput(approvalInputSchema, req.body ?? {});
      parseKeyId(input.keyId);
      return rt.admin.approval(input, who, actor, keyView(rt));
    }),
    // A full verification reads every chain of every operator: administrators and auditors only.
    'GET /audit/verify': authed((rt, _req, { who }) => {
      requireRole(who, ['admin', 'auditor'], 'verify the audit trail');
      return rt.federation.verifyAudit();
    }),
    // Membership (lib/coordinator/federation.ts): learned from the nodes; changed by an administrator's signed document.
    'GET /nodes': authed((rt) => rt.federation.list()),
    'PUT /nodes': (req) => changeMembership(req, process.env, obs),
    // The dashboard function's two calls, signed with its own key (not a client's).
    'GET /federation/state': fromDashboard((rt) => rt.dashboard.state()),
    'POST /federation/refusals': fromDashboard((rt, req) => rt.dashboard.recordRefusal(req.body)),
  },
});
