/** Wires a NodeService and its authenticator from the function's environment. */
import { dynamoClient, s3Client } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { S3FragmentStore } from '../aws/fragment-store.js';
import { DynamoReplayGuard } from '../aws/replay-guard.js';
import { identifierFor } from '../crypto/shares.js';
import type { HttpRequest } from '../http/api.js';
import { nodeConfig } from '../runtime-config.js';
import { authenticateServiceRequest } from './auth.js';
import { NodeService } from './service.js';

export function nodeRuntime(env: NodeJS.ProcessEnv = process.env) {
  const cfg = nodeConfig(env);
  const ddb = dynamoClient(cfg);
  const service = new NodeService(
    { nodeId: cfg.NODE_ID, identifier: identifierFor(cfg.NODE_INDEX), wrapKey: cfg.NODE_WRAP_KEY, x25519Private: cfg.NODE_X25519_PRIVATE, version: cfg.FEDKMS_VERSION },
    { store: new S3FragmentStore(s3Client(cfg), cfg.FRAGMENT_BUCKET), audit: new DynamoAuditLog(ddb, cfg.AUDIT_TABLE) },
  );
  const replay = new DynamoReplayGuard(ddb, cfg.REPLAY_TABLE);
  const prefix = `/nodes/${cfg.NODE_ID}`;
  /** The node-relative path: the same whether the node sits under a shared API or its own. */
  const logicalPath = (req: HttpRequest) => (req.rawPath.startsWith(prefix) ? req.rawPath.slice(prefix.length) || '/' : req.rawPath);
  const authenticate = (req: HttpRequest) =>
    authenticateServiceRequest(
      { method: req.method, path: logicalPath(req), query: req.query, body: req.rawBody, headers: req.headers },
      { nodeId: cfg.NODE_ID, coordinatorPublicKey: cfg.COORDINATOR_PUBLIC_KEY, maxSkewS: cfg.MAX_CLOCK_SKEW_S, replay },
    );
  return { cfg, service, authenticate, logicalPath };
}
