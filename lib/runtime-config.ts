/**
 * Per-invocation configuration, read from the function's environment. Node functions
 * share one handler file, so nothing node-specific may be cached at module scope.
 */
import * as z from './zod.js';
import { fromB64 } from './encoding.js';

const b64Key = (bytes: number) =>
  z.pipe(z.string(), z.transform((s, ctx) => {
    const raw = fromB64(s);
    // zod/mini's transform context has no addIssue: push the issue as classic zod's addIssue did.
    if (raw.length !== bytes) ctx.issues.push({ code: 'custom', message: `expected ${bytes} bytes`, input: s });
    return raw;
  }));

const common = {
  FEDKMS_STAGE: z._default(z.string(), 'dev'),
  FEDKMS_VERSION: z._default(z.string(), '0.1.0'),
  AUDIT_TABLE: z.string().check(z.minLength(1)),
  AWS_REGION: z._default(z.string(), 'us-east-1'),
  FEDKMS_S3_ENDPOINT: z.optional(z.url()),
  FEDKMS_DYNAMODB_ENDPOINT: z.optional(z.url()),
  /** Audit checkpoints (docs/design.md §5): after this many releasing records in a chain's unwitnessed tail... */
  AUDIT_CHECKPOINT_RELEASES: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(1000)), 4),
  /** ...or when the last witnessed checkpoint is this old (checked on append); and each witness gets this long. */
  AUDIT_CHECKPOINT_MAX_AGE_S: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(3600)), 30),
  AUDIT_WITNESS_TIMEOUT_MS: z._default(z.coerce.number().check(z.int(), z.gte(100), z.lte(10_000)), 2500),
};

const peerEntry = z.object({
  id: z.string().check(z.regex(/^[a-z0-9-]{1,32}$/)),
  index: z.number().check(z.int(), z.gte(1), z.lte(255)),
  x25519Public: z.string(),
  signingPublic: z.string(),
});

const nodeSchema = z.object({
  ...common,
  NODE_ID: z.string().check(z.regex(/^[a-z0-9-]{1,32}$/)),
  /** This node's public base URL, as its identity document announces it. */
  NODE_ENDPOINT: z.url(),
  FRAGMENT_BUCKET: z.string().check(z.minLength(3)),
  REPLAY_TABLE: z.string().check(z.minLength(1)),
  /**
   * Where the node's own secrets are (wrapping key, X25519 and Ed25519 identity keys), read at
   * run time under its own role (lib/aws/runtime-settings.ts): a Secrets Manager secret, or locally a file.
   */
  NODE_SECRET_ID: z.optional(z.string().check(z.minLength(1))),
  NODE_SECRETS_FILE: z.optional(z.string().check(z.minLength(1))),
  COORDINATOR_PUBLIC_KEY: b64Key(32),
  /** The first administrator client's Ed25519 key (lib/node/access.ts); others are registered by an administrator. */
  FEDKMS_ADMIN_PUBLIC_KEY: z.optional(b64Key(32)),
  SESSION_TTL_S: z._default(z.coerce.number().check(z.int(), z.positive()), 300),
  MAX_CLOCK_SKEW_S: z._default(z.coerce.number().check(z.int(), z.positive()), 60),
  /**
   * The federation-wide floor of every key (issue 13), enforced by this node on create, import,
   * generate and reshare, whoever asks: at least this threshold, on at least this many nodes.
   * Defaults 2 and 3 (2-of-3). Each operator sets it in its own config (minThreshold, minNodes).
   */
  FEDKMS_MIN_THRESHOLD: z._default(z.coerce.number().check(z.int(), z.gte(2), z.lte(255)), 2),
  FEDKMS_MIN_NODES: z._default(z.coerce.number().check(z.int(), z.gte(2), z.lte(255)), 3),
});

export const nodeEntry = z.extend(peerEntry, { url: z.url() });
const seedEntry = z.object({ id: z.string().check(z.regex(/^[a-z0-9-]{1,32}$/)), url: z.url() });

const coordinatorSchema = z.object({
  ...common,
  /**
   * Where the coordinator first asks for the membership (lib/coordinator/membership.ts): node ids
   * and endpoints. The members themselves, their keys and the threshold come from the signed
   * membership document the nodes hold, at run time.
   */
  FEDKMS_SEEDS: z.pipe(z.string(), z.transform((s, ctx) => {
    const parsed = z.array(seedEntry).check(z.minLength(1)).safeParse(JSON.parse(s));
    if (!parsed.success) ctx.issues.push({ code: 'custom', message: 'FEDKMS_SEEDS is not a valid seed list', input: s });
    return parsed.success ? parsed.data : [];
  })),
  /** The coordinator's own secrets (its Ed25519 signing key), read at run time like a node's. */
  COORDINATOR_SECRET_ID: z.optional(z.string().check(z.minLength(1))),
  COORDINATOR_SECRETS_FILE: z.optional(z.string().check(z.minLength(1))),
  /** Seconds the coordinator reuses a membership it learned before asking the nodes again. */
  MEMBERSHIP_CACHE_S: z._default(z.coerce.number().check(z.int(), z.gte(0), z.lte(300)), 10),
  /** DynamoDB table of pre-published nonce commitments (one-round signing); optional. */
  POOL_TABLE: z.optional(z.string().check(z.minLength(1))),
  /** Pre-published commitments kept per node and key at most; a fill beyond it is trimmed, a full pool refuses (409 pool_full). */
  POOL_MAX_PER_NODE: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(10_000)), 100),
  /** Request ids of client requests the coordinator has seen (its own `coordinator#` rows). */
  REPLAY_TABLE: z.string().check(z.minLength(1)),
  /** Approvals of reconstruction requests (collected here, re-checked by every node). */
  APPROVALS_TABLE: z.optional(z.string().check(z.minLength(1))),
  MAX_CLOCK_SKEW_S: z._default(z.coerce.number().check(z.int(), z.positive()), 60),
  /** The budget of a request whose client names none (ms); the function timeout caps every budget (lib/deadline.ts). */
  REQUEST_BUDGET_MS: z._default(z.coerce.number().check(z.int(), z.positive()), 20000),
  /** The dashboard function's Ed25519 key: it may read the dashboard state here, nothing else (lib/coordinator/dashboard-feed.ts). */
  DASHBOARD_PUBLIC_KEY: z.optional(b64Key(32)),
  DASHBOARD_MAX_KEYS: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(500)), 25),
  DASHBOARD_AUDIT_SCAN_MAX: z._default(z.coerce.number().check(z.int(), z.gte(100), z.lte(1_000_000)), 20_000),
});

export type NodeConfig = z.infer<typeof nodeSchema>;
export type CoordinatorConfig = z.infer<typeof coordinatorSchema>;
export type NodeEndpoint = z.infer<typeof nodeEntry>;
export type PeerEntry = z.infer<typeof peerEntry>;
export type SeedEntry = z.infer<typeof seedEntry>;

/** Misconfiguration is an operator error: fail loudly with the variable names, never the values. */
function parse<T extends z.ZodMiniType>(schema: T, env: NodeJS.ProcessEnv): z.infer<T> {
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

/** Decode the named base64 fields of a loaded secret, each of the given length; names only in errors. */
export function secretFields<K extends string>(secret: Record<string, string>, fields: Record<K, number>): Record<K, Uint8Array> {
  const out = {} as Record<K, Uint8Array>;
  const bad: string[] = [];
  for (const [name, bytes] of Object.entries(fields) as [K, number][]) {
    try {
      const raw = fromB64(secret[name] ?? '');
      if (raw.length !== bytes) bad.push(name);
      out[name] = raw;
    } catch {
      bad.push(name);
    }
  }
  if (bad.length) throw new Error(`invalid function secret: ${bad.join(', ')}`);
  return out;
}
