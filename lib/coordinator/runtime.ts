/** Wires the Coordinator from the function's environment. */
import { dynamoClient } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { recordRefusal } from '../audit/refusal.js';
import type { HttpRequest } from '../http/api.js';
import { recordNodeCall, type Telemetry } from '../observability.js';
import { coordinatorConfig } from '../runtime-config.js';
import { requireBearer } from './auth.js';
import { NodeClient } from './node-client.js';
import { AUDIT_STREAM, Coordinator } from './service.js';

export function coordinatorRuntime(env: NodeJS.ProcessEnv = process.env, telemetry?: Telemetry) {
  const cfg = coordinatorConfig(env);
  const audit = new DynamoAuditLog(dynamoClient(cfg), cfg.AUDIT_TABLE);
  const observe = telemetry ? (nodeId: string, outcome: Parameters<typeof recordNodeCall>[2], ms: number) => recordNodeCall(telemetry.metrics, nodeId, outcome, ms) : undefined;
  const coordinator = new Coordinator({
    nodes: cfg.FEDKMS_NODES,
    threshold: cfg.FEDKMS_THRESHOLD,
    timeoutMs: cfg.NODE_TIMEOUT_MS,
    client: new NodeClient(cfg.COORDINATOR_SIGNING_KEY, fetch, observe ? { observe } : {}),
    audit,
  });
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
