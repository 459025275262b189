/** Wires the Coordinator from the function's environment. */
import { dynamoClient } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { DynamoCommitmentPool } from '../aws/commitment-pool.js';
import { DynamoReplayGuard } from '../aws/replay-guard.js';
import { DynamoApprovalStore } from '../aws/approval-store.js';
import { recordRefusal } from '../audit/refusal.js';
import { clientRequestFromHttp } from '../crypto/client-auth.js';
import type { Principal } from '../access/policy.js';
import type { HttpRequest } from '../http/api.js';
import { recordNodeCall, type Telemetry } from '../observability.js';
import { configKey, coordinatorConfig, type NodeEndpoint } from '../runtime-config.js';
import { Administration } from './admin.js';
import { withClientRequest } from './client-context.js';
import { authenticateClient, checkFreshness, ClientDirectory } from './clients.js';
import { DashboardFeed } from './dashboard-feed.js';
import { NodeClient } from './node-client.js';
import { AUDIT_STREAM, Coordinator } from './service.js';

export interface FederationView {
  AWS_REGION: string;
  FEDKMS_DYNAMODB_ENDPOINT?: string | undefined;
  AUDIT_TABLE: string;
  FEDKMS_NODES: NodeEndpoint[];
  FEDKMS_THRESHOLD: number;
  REQUEST_BUDGET_MS: number;
}

/** A Coordinator over the configured nodes, with per-node metrics when telemetry is on. */
export function federationCoordinator(cfg: FederationView & { POOL_TABLE?: string | undefined }, signingKey: Uint8Array, telemetry?: Telemetry) {
  const audit = new DynamoAuditLog(dynamoClient(cfg), cfg.AUDIT_TABLE);
  const pool = cfg.POOL_TABLE ? new DynamoCommitmentPool(dynamoClient(cfg), cfg.POOL_TABLE) : undefined;
  const observe = telemetry ? (nodeId: string, outcome: Parameters<typeof recordNodeCall>[2], ms: number) => recordNodeCall(telemetry.metrics, nodeId, outcome, ms) : undefined;
  const deps = {
    nodes: cfg.FEDKMS_NODES,
    threshold: cfg.FEDKMS_THRESHOLD,
    timeoutMs: cfg.REQUEST_BUDGET_MS,
    client: new NodeClient(signingKey, fetch, observe ? { observe } : {}),
    audit,
    ...(pool ? { pool } : {}),
  };
  return { coordinator: new Coordinator(deps), audit, deps };
}

export interface ClientCall {
  who: Principal;
  /** The audit actor: `client:<name>` (on node-decided routes, as claimed: the nodes verify it). */
  actor: string;
}

type CoordinatorRuntime = ReturnType<typeof buildCoordinatorRuntime>;
let built: { key: string; telemetry: Telemetry | undefined; runtime: CoordinatorRuntime } | undefined;

/** The coordinator's runtime for this configuration: built on the first request of an instance, reused after. */
export function coordinatorRuntime(env: NodeJS.ProcessEnv = process.env, telemetry?: Telemetry): CoordinatorRuntime {
  const key = configKey('coordinator', env);
  if (built?.key !== key || built.telemetry !== telemetry) built = { key, telemetry, runtime: buildCoordinatorRuntime(env, telemetry) };
  return built.runtime;
}

function buildCoordinatorRuntime(env: NodeJS.ProcessEnv, telemetry?: Telemetry) {
  const cfg = coordinatorConfig(env);
  const { coordinator, audit, deps } = federationCoordinator(cfg, cfg.COORDINATOR_SIGNING_KEY, telemetry);
  const replay = new DynamoReplayGuard(dynamoClient(cfg), cfg.REPLAY_TABLE);
  const approvals = cfg.APPROVALS_TABLE ? new DynamoApprovalStore(dynamoClient(cfg), cfg.APPROVALS_TABLE) : undefined;
  const admin = new Administration(deps, approvals);
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
  const dashboard = new DashboardFeed({
    federation: coordinator,
    audit,
    replay,
    dashboardPublicKey: cfg.DASHBOARD_PUBLIC_KEY,
    threshold: cfg.FEDKMS_THRESHOLD,
    nodeIds: cfg.FEDKMS_NODES.map((n) => n.id),
    maxKeys: cfg.DASHBOARD_MAX_KEYS,
    maxAuditItems: cfg.DASHBOARD_AUDIT_SCAN_MAX,
    maxSkewS: cfg.MAX_CLOCK_SKEW_S,
    ownStream: AUDIT_STREAM,
  });
  return { cfg, coordinator, admin, asClient, dashboard };
}
