/** Wires a NodeService and its authenticator from the function's environment. */
import { dynamoClient, s3Client } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { S3FragmentStore } from '../aws/fragment-store.js';
import { DynamoReplayGuard } from '../aws/replay-guard.js';
import { identifierFor } from '../crypto/shares.js';
import type { HttpRequest } from '../http/api.js';
import { nodeConfig } from '../runtime-config.js';
import { recordRefusal } from '../audit/refusal.js';
import { authenticateServiceRequest, authorizeSigner } from './auth.js';
import { NodeDkg } from './dkg.js';
import { NodeService, auditStream } from './service.js';
import { SessionVault } from './sessions.js';
import { NodeSigning } from './signing.js';
import { NodeReshare } from './reshare.js';

export function nodeRuntime(env: NodeJS.ProcessEnv = process.env) {
  const cfg = nodeConfig(env);
  const ddb = dynamoClient(cfg);
  const audit = new DynamoAuditLog(ddb, cfg.AUDIT_TABLE);
  const identity = { nodeId: cfg.NODE_ID, identifier: identifierFor(cfg.NODE_INDEX), wrapKey: cfg.NODE_WRAP_KEY, x25519Private: cfg.NODE_X25519_PRIVATE, version: cfg.FEDKMS_VERSION };
  const store = new S3FragmentStore(s3Client(cfg), cfg.FRAGMENT_BUCKET);
  const service = new NodeService(identity, { store, audit });
  const replay = new DynamoReplayGuard(ddb, cfg.REPLAY_TABLE);
  const vault = new SessionVault(store, cfg.NODE_ID, cfg.NODE_WRAP_KEY, cfg.SESSION_TTL_S);
  const dkg = new NodeDkg({ ...identity, signingKey: cfg.NODE_SIGNING_KEY }, cfg.NODE_PEERS, service, vault, audit);
  const signing = new NodeSigning(identity, service, vault, audit, replay);
  const reshare = new NodeReshare(identity, cfg.NODE_PEERS, service, vault, audit);
  const prefix = `/nodes/${cfg.NODE_ID}`;
  /** The node-relative path: the same whether the node sits under a shared API or its own. */
  const logicalPath = (req: HttpRequest) => (req.rawPath.startsWith(prefix) ? req.rawPath.slice(prefix.length) || '/' : req.rawPath);
  /** Authenticate and authorize the signer for this route; refusals are audited (best effort) and rethrown. */
  const authenticate = async (req: HttpRequest) => {
    const path = logicalPath(req);
    let signer: string | undefined;
    try {
      const r = await authenticateServiceRequest(
        { method: req.method, path, query: req.query, body: req.rawBody, headers: req.headers },
        { nodeId: cfg.NODE_ID, coordinatorPublicKey: cfg.COORDINATOR_PUBLIC_KEY, otherSigners: { dashboard: cfg.DASHBOARD_PUBLIC_KEY }, maxSkewS: cfg.MAX_CLOCK_SKEW_S, replay },
      );
      signer = r.signer;
      authorizeSigner(r.signer, req.method, path);
      return r;
    } catch (e) {
      await recordRefusal(audit, auditStream(cfg.NODE_ID), e, { method: req.method, path, sourceIp: req.sourceIp, signer });
      throw e;
    }
  };
  return { cfg, service, dkg, signing, reshare, authenticate, logicalPath };
}
