/** Wires the Coordinator from the function's environment. */
import { dynamoClient } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { coordinatorConfig } from '../runtime-config.js';
import { NodeClient } from './node-client.js';
import { Coordinator } from './service.js';

export function coordinatorRuntime(env: NodeJS.ProcessEnv = process.env) {
  const cfg = coordinatorConfig(env);
  const coordinator = new Coordinator({
    nodes: cfg.FEDKMS_NODES,
    threshold: cfg.FEDKMS_THRESHOLD,
    timeoutMs: cfg.NODE_TIMEOUT_MS,
    client: new NodeClient(cfg.COORDINATOR_SIGNING_KEY),
    audit: new DynamoAuditLog(dynamoClient(cfg), cfg.AUDIT_TABLE),
  });
  return { cfg, coordinator };
}
