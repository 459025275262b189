/**
 * Per-invocation configuration, read from the function's environment. Node functions
 * share one handler file, so nothing node-specific may be cached at module scope.
 */
import { z } from 'zod';
import { fromB64 } from './encoding.js';

const b64Key = (bytes: number) =>
  z.string().transform((s, ctx) => {
    const raw = fromB64(s);
    if (raw.length !== bytes) ctx.addIssue({ code: 'custom', message: `expected ${bytes} bytes` });
    return raw;
  });

const common = {
  FEDKMS_STAGE: z.string().default('dev'),
  FEDKMS_VERSION: z.string().default('0.1.0'),
  AUDIT_TABLE: z.string().min(1),
  AWS_REGION: z.string().default('us-east-1'),
  FEDKMS_S3_ENDPOINT: z.string().url().optional(),
  FEDKMS_DYNAMODB_ENDPOINT: z.string().url().optional(),
};

const peerEntry = z.object({
  id: z.string().regex(/^[a-z0-9-]{1,32}$/),
  index: z.number().int().min(1).max(255),
  x25519Public: z.string(),
  signingPublic: z.string(),
});

const nodeSchema = z.object({
  ...common,
  NODE_ID: z.string().regex(/^[a-z0-9-]{1,32}$/),
  NODE_INDEX: z.coerce.number().int().min(1).max(255),
  FRAGMENT_BUCKET: z.string().min(3),
  REPLAY_TABLE: z.string().min(1),
  NODE_WRAP_KEY: b64Key(32),
  NODE_X25519_PRIVATE: b64Key(32),
  COORDINATOR_PUBLIC_KEY: b64Key(32),
  /** The first administrator client's Ed25519 key (lib/node/access.ts); others are registered by an administrator. */
  FEDKMS_ADMIN_PUBLIC_KEY: b64Key(32).optional(),
  /** The node's own Ed25519 identity key: signs its DKG messages. */
  NODE_SIGNING_KEY: b64Key(32),
  /** Every node of the federation (this one included): ids, identifiers and public identity keys. */
  NODE_PEERS: z.string().transform((s, ctx) => {
    const parsed = z.array(peerEntry).min(1).safeParse(JSON.parse(s));
    if (!parsed.success) ctx.addIssue({ code: 'custom', message: 'NODE_PEERS is not a valid peer list' });
    return parsed.success ? parsed.data : [];
  }),
  SESSION_TTL_S: z.coerce.number().int().positive().default(300),
  MAX_CLOCK_SKEW_S: z.coerce.number().int().positive().default(60),
});

export const nodeEntry = peerEntry.extend({ url: z.string().url() });

const coordinatorSchema = z.object({
  ...common,
  FEDKMS_THRESHOLD: z.coerce.number().int().min(1),
  FEDKMS_NODES: z.string().transform((s, ctx) => {
    const parsed = z.array(nodeEntry).min(1).safeParse(JSON.parse(s));
    if (!parsed.success) ctx.addIssue({ code: 'custom', message: 'FEDKMS_NODES is not a valid node list' });
    return parsed.success ? parsed.data : [];
  }),
  COORDINATOR_SIGNING_KEY: b64Key(32),
  /** DynamoDB table of pre-published nonce commitments (one-round signing); optional. */
  POOL_TABLE: z.string().min(1).optional(),
  /** Request ids of client requests the coordinator has seen (its own `coordinator#` rows). */
  REPLAY_TABLE: z.string().min(1),
  /** Approvals of reconstruction requests (collected here, re-checked by every node). */
  APPROVALS_TABLE: z.string().min(1).optional(),
  MAX_CLOCK_SKEW_S: z.coerce.number().int().positive().default(60),
  /** The budget of a request whose client names none (ms); the function timeout caps every budget (lib/deadline.ts). */
  REQUEST_BUDGET_MS: z.coerce.number().int().positive().default(20000),
  /** The dashboard function's Ed25519 key: it may read the dashboard state here, nothing else (lib/coordinator/dashboard-feed.ts). */
  DASHBOARD_PUBLIC_KEY: b64Key(32).optional(),
  DASHBOARD_MAX_KEYS: z.coerce.number().int().min(1).max(500).default(25),
  DASHBOARD_AUDIT_SCAN_MAX: z.coerce.number().int().min(100).max(1_000_000).default(20_000),
});

export type NodeConfig = z.infer<typeof nodeSchema>;
export type CoordinatorConfig = z.infer<typeof coordinatorSchema>;
export type NodeEndpoint = z.infer<typeof nodeEntry>;
export type PeerEntry = z.infer<typeof peerEntry>;

/** Misconfiguration is an operator error: fail loudly with the variable names, never the values. */
function parse<T extends z.ZodTypeAny>(schema: T, env: NodeJS.ProcessEnv): z.infer<T> {
  const r = schema.safeParse(env);
  if (!r.success) {
    const names = r.error.issues.map((i) => i.path.join('.')).join(', ');
    throw new Error(`invalid function configuration: ${names}`);
  }
  return r.data;
}

export const nodeConfig = (env: NodeJS.ProcessEnv = process.env): NodeConfig => parse(nodeSchema, env);
export const coordinatorConfig = (env: NodeJS.ProcessEnv = process.env): CoordinatorConfig => parse(coordinatorSchema, env);

/**
 * The values a function's configuration is read from, as one string: a runtime built from
 * them can be kept for the next request of the same warm instance (parsing, key decoding and
 * client construction then happen once per cold start). Keyed by value, not cached blindly,
 * because node functions share one handler file and a local runner may serve several nodes.
 */
export function configKey(kind: 'node' | 'coordinator', env: NodeJS.ProcessEnv = process.env): string {
  const schema = kind === 'node' ? nodeSchema : coordinatorSchema;
  return JSON.stringify(Object.keys(schema.shape).map((k) => env[k] ?? null));
}
