/** Wires a NodeService and its authenticator from the function's environment. */
import { dynamoClient, s3Client } from '../aws/clients.js';
import { DynamoAuditLog } from '../aws/audit-log.js';
import { S3FragmentStore } from '../aws/fragment-store.js';
import { DynamoReplayGuard } from '../aws/replay-guard.js';
import { identifierFor } from '../crypto/shares.js';
import type { HttpRequest } from '../http/api.js';
import { configKey, nodeConfig } from '../runtime-config.js';
import { recordRefusal } from '../audit/refusal.js';
import { authenticateServiceRequest } from '../access/service-auth.js';
import { NodeDkg } from './dkg.js';
import { NodeService, auditStream } from './service.js';
import { SessionVault } from './sessions.js';
import { NodeSigning } from './signing.js';
import { NodeReshare } from './reshare.js';
import { NodeAccess } from './access.js';
import { ClientGate } from './gate.js';
import { NodeLifecycle } from './lifecycle.js';
import { decodeEnvelope, ENVELOPE_HEADER, type ClientEnvelope } from '../crypto/client-auth.js';
import { signStatement } from '../crypto/identity.js';
import { fragmentStatement } from '../reconstruction.js';

type NodeRuntime = ReturnType<typeof buildNodeRuntime>;
let built: { key: string; runtime: NodeRuntime } | undefined;

/** This node's runtime: built on the first request of an instance, reused while its configuration is the same. */
export function nodeRuntime(env: NodeJS.ProcessEnv = process.env): NodeRuntime {
  const key = configKey('node', env);
  if (built?.key !== key) built = { key, runtime: buildNodeRuntime(env) };
  return built.runtime;
}

function buildNodeRuntime(env: NodeJS.ProcessEnv) {
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
  const reshare = new NodeReshare({ ...identity, signingKey: cfg.NODE_SIGNING_KEY }, cfg.NODE_PEERS, service, vault, audit);
  const access = new NodeAccess({ nodeId: cfg.NODE_ID, wrapKey: cfg.NODE_WRAP_KEY, store, replay, bootstrapAdmin: cfg.FEDKMS_ADMIN_PUBLIC_KEY, maxSkewS: cfg.MAX_CLOCK_SKEW_S });
  const gate = new ClientGate(access, async (keyId) => (await service.versionsOf(keyId)).at(-1), { claims: { scope: cfg.NODE_ID, guard: replay } });
  const lifecycle = new NodeLifecycle(cfg.NODE_ID, access, service, audit);
  const prefix = `/nodes/${cfg.NODE_ID}`;
  /** The node-relative path: the same whether the node sits under a shared API or its own. */
  const logicalPath = (req: HttpRequest) => (req.rawPath.startsWith(prefix) ? req.rawPath.slice(prefix.length) || '/' : req.rawPath);
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
  /** This node's signature over a released fragment, for clients that pin node identity keys. */
  const signFragment = (answer: Parameters<typeof fragmentStatement>[0], recipient: string, requestId: string) =>
    signStatement(cfg.NODE_SIGNING_KEY, fragmentStatement(answer, recipient, requestId));
  return { cfg, service, dkg, signing, reshare, access, gate, lifecycle, authenticate, logicalPath, envelope, recordClientRefusal, signFragment };
}
