/**
 * Wires the Coordinator from its environment, its own secret (read at run time) and the
 * membership it learns from the nodes (lib/coordinator/membership.ts). What depends only on
 * configuration is built once per warm instance; the federation view is rebuilt whenever the
 * learned membership changes, so a node that joins is used without a restart.
 */
import { dynamoClient } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { DynamoCommitmentPool } from '../aws/commitment-pool.js';
import { DynamoReplayGuard } from '../aws/replay-guard.js';
import { DynamoApprovalStore } from '../aws/approval-store.js';
import { loadSecrets } from '../aws/runtime-settings.js';
import { recordRefusal } from '../audit/refusal.js';
import { clientRequestFromHttp } from '../crypto/client-auth.js';
import type { Principal } from '../access/policy.js';
import type { HttpRequest } from '../http/api.js';
import { recordNodeCall, type Telemetry } from '../observability.js';
import { configKey, coordinatorConfig, secretFields, type CoordinatorConfig } from '../runtime-config.js';
import { Administration } from './admin.js';
import { withClientRequest } from './client-context.js';
import { authenticateClient, checkFreshness, ClientDirectory } from './clients.js';
import { DashboardFeed } from './dashboard-feed.js';
import { NodeClient } from './node-client.js';
import { AUDIT_STREAM, Coordinator } from './service.js';
import { endpointOf, MembershipView, type LearnedMembership } from './membership.js';
import { Federation, updateMembership } from './federation.js';
import { FederatedAuditReader } from './federated-audit.js';
import { QuorumError } from '../errors.js';
import { recordSigStatement } from '../audit/chain.js';
import { CheckpointingAuditLog, logDegraded, publisher, REWITNESS_BUDGET_MS } from '../audit/checkpointing.js';
import { signStatement } from '../crypto/identity.js';
import { ed25519PublicFromPrivate } from '../crypto/ed25519-signature.js';
import { toB64 } from '../encoding.js';

export interface ClientCall {
  who: Principal;
  /** The audit actor: `client:<name>` (on node-decided routes, as claimed: the nodes verify it). */
  actor: string;
}

type Base = Awaited<ReturnType<typeof buildBase>>;
export type CoordinatorRuntime = ReturnType<typeof buildRuntime>;
let base: { key: string; telemetry: Telemetry | undefined; value: Promise<Base> } | undefined;
let view: { digest: string; runtime: CoordinatorRuntime } | undefined;

/** Configuration alone (synchronous): what a handler needs before the runtime, e.g. the default budget. */
let parsed: { key: string; cfg: CoordinatorConfig } | undefined;
export function coordinatorSettings(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const key = configKey('coordinator', env);
  if (parsed?.key !== key) parsed = { key, cfg: coordinatorConfig(env) };
  return parsed.cfg;
}

/**
 * The coordinator's runtime for the membership it knows now: built on first use, rebuilt when
 * the membership changes. `fresh` asks the nodes first (operations that pick members: create,
 * reshare), so a node an administrator just added is usable at once on every instance.
 */
export async function coordinatorRuntime(env: NodeJS.ProcessEnv = process.env, telemetry?: Telemetry, fresh = false): Promise<CoordinatorRuntime> {
  const b = await coordinatorBase(env, telemetry);
  const learned = await b.membership.current(fresh);
  if (view?.digest !== learned.digest) view = { digest: learned.digest, runtime: buildRuntime(b, learned) };
  return view.runtime;
}

/** What depends on configuration and the coordinator's secret only: built once per warm instance. */
function coordinatorBase(env: NodeJS.ProcessEnv, telemetry?: Telemetry): Promise<Base> {
  const key = configKey('coordinator', env);
  if (base?.key !== key || base.telemetry !== telemetry) {
    const value = buildBase(env, telemetry);
    base = { key, telemetry, value };
    view = undefined;
    value.catch(() => { if (base?.value === value) base = undefined; });
  }
  return base.value;
}

/**
 * `PUT /nodes`: works with or without a membership (the first version forms the federation).
 * The client's request is checked for freshness here; each node checks the administrator's
 * signature on the document itself, against its own registry.
 */
export async function changeMembership(req: HttpRequest, env: NodeJS.ProcessEnv = process.env, telemetry?: Telemetry) {
  const b = await coordinatorBase(env, telemetry);
  const current = await b.membership.current(true).then((l) => l.signed.document, (e: unknown) => {
    if (e instanceof QuorumError) return null;
    throw e;
  });
  let signed;
  try {
    signed = clientRequestFromHttp({ method: req.method, path: req.rawPath, query: req.query, body: req.rawBody, headers: req.headers });
    checkFreshness(signed, b.cfg.MAX_CLOCK_SKEW_S);
  } catch (e) {
    await recordRefusal(b.audit, AUDIT_STREAM, e, { method: req.method, path: req.rawPath, sourceIp: req.sourceIp, signer: signed ? `client:${signed.client}` : undefined, everyFailure: true });
    throw e;
  }
  const answer = await withClientRequest(signed, () => updateMembership({ client: b.client, audit: b.audit, timeoutMs: b.cfg.REQUEST_BUDGET_MS }, b.membership, current, req.body, `client:${signed.client}`));
  // A membership change can retire witnesses: checkpoint the coordinator's chains again with the new ones.
  await b.audit.rewitness(REWITNESS_BUDGET_MS);
  return answer;
}

async function buildBase(env: NodeJS.ProcessEnv, telemetry?: Telemetry) {
  const cfg = coordinatorSettings(env);
  const secrets = secretFields(await loadSecrets({ AWS_REGION: cfg.AWS_REGION, secretId: cfg.COORDINATOR_SECRET_ID, file: cfg.COORDINATOR_SECRETS_FILE }), { signingPrivate: 32 });
  const observe = telemetry ? (nodeId: string, outcome: Parameters<typeof recordNodeCall>[2], ms: number) => recordNodeCall(telemetry.metrics, nodeId, outcome, ms) : undefined;
  const client = new NodeClient(secrets.signingPrivate, fetch, observe ? { observe } : {});
  const sign = (statement: unknown) => signStatement(secrets.signingPrivate, statement);
  const publicKey = toB64(ed25519PublicFromPrivate(secrets.signingPrivate));
  // Its records are signed with its key, and its chains checkpointed with the nodes as witnesses.
  const auditStore = new DynamoAuditLog(dynamoClient(cfg), cfg.AUDIT_TABLE, undefined, (hash) => sign(recordSigStatement(hash)));
  const audit = new CheckpointingAuditLog(auditStore, {
    origin: 'coordinator',
    policy: { releases: cfg.AUDIT_CHECKPOINT_RELEASES, maxAgeMs: cfg.AUDIT_CHECKPOINT_MAX_AGE_S * 1000 },
    sign,
    onDegraded: logDegraded,
    publish: publisher(
      async () => (await membership.current()).signed.document.nodes.map(endpointOf),
      (n, cp, signal) => client.call(n, { method: 'POST', path: '/audit/witness', body: cp }, signal),
      cfg.AUDIT_WITNESS_TIMEOUT_MS,
    ),
  });
  const pool = cfg.POOL_TABLE ? new DynamoCommitmentPool(dynamoClient(cfg), cfg.POOL_TABLE) : undefined;
  const replay = new DynamoReplayGuard(dynamoClient(cfg), cfg.REPLAY_TABLE);
  const approvals = cfg.APPROVALS_TABLE ? new DynamoApprovalStore(dynamoClient(cfg), cfg.APPROVALS_TABLE) : undefined;
  const membership = new MembershipView({ seeds: cfg.FEDKMS_SEEDS, client, cacheMs: cfg.MEMBERSHIP_CACHE_S * 1000 });
  return { cfg, client, audit, auditStore, publicKey, pool, replay, approvals, membership };
}

function buildRuntime(b: Base, learned: LearnedMembership) {
  const { cfg, audit, replay } = b;
  const members = learned.signed.document.nodes;
  const deps = {
    nodes: members.map(endpointOf),
    threshold: learned.signed.document.threshold,
    timeoutMs: cfg.REQUEST_BUDGET_MS,
    client: b.client,
    audit,
    ...(b.pool ? { pool: b.pool } : {}),
    poolMaxPerNode: cfg.POOL_MAX_PER_NODE,
  };
  const coordinator = new Coordinator(deps);
  const admin = new Administration(deps, b.approvals);
  const federation = new Federation(deps, () => b.membership.current(), { records: b.auditStore, publicKey: b.publicKey });
  /**
   * Check the client's signed request, then run `fn` with it attached to every node call
   * `fn` makes, so each node checks it again. Refusals are audited (best effort) and rethrown.
   */
  const asClient = async <T>(req: HttpRequest, fn: (call: ClientCall) => Promise<T>, decidedBy: 'coordinator' | 'nodes' = 'coordinator'): Promise<T> => {
    let signed;
    let who: Principal;
    try {
      signed = clientRequestFromHttp({ method: req.method, path: req.rawPath, query: req.query, body: req.rawBody, headers: req.headers });
      who = decidedBy === 'nodes' ? checkFreshness(signed, cfg.MAX_CLOCK_SKEW_S) : await authenticateClient(signed, { directory: new ClientDirectory(deps), replay, maxSkewS: cfg.MAX_CLOCK_SKEW_S });
    } catch (e) {
      await recordRefusal(audit, AUDIT_STREAM, e, { method: req.method, path: req.rawPath, sourceIp: req.sourceIp, signer: signed ? `client:${signed.client}` : undefined, everyFailure: true });
      throw e;
    }
    return withClientRequest(signed, () => fn({ who, actor: `client:${who.name}` }));
  };
  const federatedAudit = new FederatedAuditReader(b.auditStore, deps.nodes, b.client, 5000, b.publicKey);
  const dashboard = new DashboardFeed({
    federation: coordinator,
    // Appends go to the coordinator's own chains; reads gather every member's too.
    audit: { append: (stream, entry) => audit.append(stream, entry), readAll: () => audit.readAll(), readBounded: (max) => federatedAudit.readBounded(max), checkpoints: () => federatedAudit.checkpoints() },
    replay,
    dashboardPublicKey: cfg.DASHBOARD_PUBLIC_KEY,
    threshold: deps.threshold,
    nodeIds: members.map((n) => n.id),
    maxKeys: cfg.DASHBOARD_MAX_KEYS,
    maxAuditItems: cfg.DASHBOARD_AUDIT_SCAN_MAX,
    maxSkewS: cfg.MAX_CLOCK_SKEW_S,
    ownStream: AUDIT_STREAM,
  });
  return { cfg, coordinator, admin, federation, asClient, dashboard, learned };
}
