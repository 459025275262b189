/** Wires the dashboard from its function's environment: a read-only Coordinator and the audit table. */
import { z } from 'zod';
import { recordRefusal } from '../audit/refusal.js';
import { federationCoordinator } from '../coordinator/runtime.js';
import { fromB64 } from '../encoding.js';
import type { HttpRequest } from '../http/api.js';
import type { Telemetry } from '../observability.js';
import { nodeEntry } from '../runtime-config.js';
import { requireViewer } from './auth.js';
import { dashboardState } from './state.js';

export const DASHBOARD_STREAM = 'dashboard';

const schema = z.object({
  AUDIT_TABLE: z.string().min(1),
  AWS_REGION: z.string().default('us-east-1'),
  FEDKMS_DYNAMODB_ENDPOINT: z.string().url().optional(),
  FEDKMS_THRESHOLD: z.coerce.number().int().min(1),
  FEDKMS_NODES: z.string().transform((s, ctx) => {
    const parsed = z.array(nodeEntry).min(1).safeParse(JSON.parse(s));
    if (!parsed.success) ctx.addIssue({ code: 'custom', message: 'FEDKMS_NODES is not a valid node list' });
    return parsed.success ? parsed.data : [];
  }),
  NODE_TIMEOUT_MS: z.coerce.number().int().positive().default(1500),
  /** The dashboard's own Ed25519 key: nodes let it read key descriptions only. */
  DASHBOARD_SIGNING_KEY: z.string().transform((s, ctx) => {
    const raw = fromB64(s);
    if (raw.length !== 32) ctx.addIssue({ code: 'custom', message: 'expected 32 bytes' });
    return raw;
  }),
  DASHBOARD_TOKEN: z.string().min(16),
  DASHBOARD_REFRESH_S: z.coerce.number().int().min(2).max(300).default(5),
  DASHBOARD_MAX_KEYS: z.coerce.number().int().min(1).max(500).default(25),
  DASHBOARD_AUDIT_SCAN_MAX: z.coerce.number().int().min(100).max(1_000_000).default(20_000),
});

export type DashboardConfig = z.infer<typeof schema>;

export function dashboardConfig(env: NodeJS.ProcessEnv = process.env): DashboardConfig {
  const r = schema.safeParse(env);
  if (!r.success) throw new Error(`invalid function configuration: ${r.error.issues.map((i) => i.path.join('.')).join(', ')}`);
  return r.data;
}

export function dashboardRuntime(env: NodeJS.ProcessEnv = process.env, telemetry?: Telemetry) {
  const cfg = dashboardConfig(env);
  const { coordinator: federation, audit } = federationCoordinator(cfg, cfg.DASHBOARD_SIGNING_KEY, telemetry, 'dashboard');
  /** Wrong credentials are audited (best effort); a missing one is the browser's normal first request, so it is not. */
  const authenticate = async (req: HttpRequest): Promise<string> => {
    try {
      return requireViewer(req.headers, cfg.DASHBOARD_TOKEN);
    } catch (e) {
      if ((e as { code?: string }).code !== 'auth_missing') {
        await recordRefusal(audit, DASHBOARD_STREAM, e, { method: req.method, path: req.rawPath, sourceIp: req.sourceIp });
      }
      throw e;
    }
  };
  const state = () =>
    dashboardState({
      federation,
      audit,
      threshold: cfg.FEDKMS_THRESHOLD,
      nodeIds: cfg.FEDKMS_NODES.map((n) => n.id),
      maxKeys: cfg.DASHBOARD_MAX_KEYS,
      maxAuditItems: cfg.DASHBOARD_AUDIT_SCAN_MAX,
    });
  return { cfg, authenticate, state };
}
