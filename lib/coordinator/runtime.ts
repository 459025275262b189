/** Wires the Coordinator from the function's environment. */
import { dynamoClient } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { DynamoCommitmentPool } from '../aws/commitment-pool.js';
import { recordRefusal } from '../audit/refusal.js';
import type { HttpRequest } from '../http/api.js';
import { recordNodeCall, type Telemetry } from '../observability.js';
import { coordinatorConfig, type NodeEndpoint } from '../runtime-config.js';
import { requireBearer } from './auth.js';
import { NodeClient } from './node-client.js';
import { AUDIT_STREAM, Coordinator } from './service.js';

export interface FederationView {
  AWS_REGION: string;
  FEDKMS_DYNAMODB_ENDPOINT?: string | undefined;
  AUDIT_TABLE: string;
  FEDKMS_NODES: NodeEndpoint[];
  FEDKMS_THRESHOLD: number;
  NODE_TIMEOUT_MS: number;
}

/** A Coordinator over the configured nodes, signing as `signer`, with per-node metrics when telemetry is on. */
export function federationCoordinator(cfg: FederationView & { POOL_TABLE?: string | undefined }, signingKey: Uint8Array, telemetry?: Telemetry, signer?: string) {
  const audit = new DynamoAuditLog(dynamoClient(cfg), cfg.AUDIT_TABLE);
  const pool = cfg.POOL_TABLE ? new DynamoCommitmentPool(dynamoClient(cfg), cfg.POOL_TABLE) : undefined;
  const observe = telemetry ? (nodeId: string, outcome: Parameters<typeof recordNodeCall>[2], ms: number) => recordNodeCall(telemetry.metrics, nodeId, outcome, ms) : undefined;
  const coordinator = new Coordinator({
    nodes: cfg.FEDKMS_NODES,
    threshold: cfg.FEDKMS_THRESHOLD,
    timeoutMs: cfg.NODE_TIMEOUT_MS,
    client: new NodeClient(signingKey, fetch, { ...(signer ? { signer } : {}), ...(observe ? { observe } : {}) }),
    audit,
    ...(pool ? { pool } : {}),
  });
  return { coordinator, audit };
}

export function coordinatorRuntime(env: NodeJS.ProcessEnv = process.env, telemetry?: Telemetry) {
  const cfg = coordinatorConfig(env);
  const { coordinator, audit } = federationCoordinator(cfg, cfg.COORDINATOR_SIGNING_KEY, telemetry);
  /** The client's bearer token; a refusal is audited (best effort, never changing the 401) and rethrown. */
  const authenticate = async (req: HttpRequest): Promise<string> => {
    try {
      return requireBearer(req.headers, cfg.API_TOKEN);
    } catch (e) {
      await recordRefusal(audit, AUDIT_STREAM, e, { method: req.method, path: req.rawPath, sourceIp: req.sourceIp });
      throw e;
    }
  };
  return { cfg, coordinator, authenticate };
}
