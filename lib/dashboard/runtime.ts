/**
 * Wires the dashboard from its function's environment. The dashboard holds no AWS
 * permission and reaches no node: it checks the viewer token, renders the page, and
 * asks the coordinator for the state document over one signed call
 * (lib/coordinator/dashboard-feed.ts). Configuration is checked by hand, not with zod,
 * because this function's cold start is measured against a budget (bench/cold-start.ts).
 */
import { fromB64 } from '../encoding.js';
import { loadSecrets } from '../aws/runtime-settings.js';
import type { HttpRequest } from '../http/api.js';
import { requireViewer } from './auth.js';
import { CoordinatorLink } from './coordinator-link.js';
import type { DashboardState } from './state.js';

export interface DashboardConfig {
  COORDINATOR_URL: string;
  /** The dashboard's own Ed25519 key: the coordinator lets it read the dashboard state, nothing else. */
  DASHBOARD_SIGNING_KEY: Uint8Array;
  DASHBOARD_TOKEN: string;
  DASHBOARD_REFRESH_S: number;
  COORDINATOR_TIMEOUT_MS: number;
}

const REPORT_TIMEOUT_MS = 2000;

const bad = (name: string) => new Error(`invalid function configuration: ${name}`);

function int(env: NodeJS.ProcessEnv, name: string, min: number, max: number, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw bad(name);
  return n;
}

function httpUrl(env: NodeJS.ProcessEnv, name: string): string {
  const raw = env[name] ?? '';
  try {
    const u = new URL(raw);
    if (u.protocol === 'https:' || u.protocol === 'http:') return raw;
  } catch {
    // fall through
  }
  throw bad(name);
}

/**
 * `secret`: the dashboard's own secret ({signingPrivate, viewerToken}), read at run time from
 * DASHBOARD_SECRET_ID (Secrets Manager) or DASHBOARD_SECRETS_FILE (local), never from the environment.
 */
export function dashboardConfig(env: NodeJS.ProcessEnv, secret: Record<string, string>): DashboardConfig {
  let key: Uint8Array;
  try {
    key = fromB64(secret['signingPrivate'] ?? '');
  } catch {
    throw bad('signingPrivate (dashboard secret)');
  }
  if (key.length !== 32) throw bad('signingPrivate (dashboard secret)');
  const token = secret['viewerToken'] ?? '';
  if (token.length < 16) throw bad('viewerToken (dashboard secret)');
  return {
    COORDINATOR_URL: httpUrl(env, 'COORDINATOR_URL'),
    DASHBOARD_SIGNING_KEY: key,
    DASHBOARD_TOKEN: token,
    DASHBOARD_REFRESH_S: int(env, 'DASHBOARD_REFRESH_S', 2, 300, 5),
    COORDINATOR_TIMEOUT_MS: int(env, 'COORDINATOR_TIMEOUT_MS', 100, 60_000, 20_000),
  };
}

let built: { key: string; runtime: Promise<ReturnType<typeof buildDashboard>> } | undefined;

/** The dashboard for this environment: its secret is read once per warm instance. */
export function dashboardRuntime(env: NodeJS.ProcessEnv = process.env, fetchImpl: typeof fetch = fetch): Promise<ReturnType<typeof buildDashboard>> {
  const key = [env['DASHBOARD_SECRET_ID'], env['DASHBOARD_SECRETS_FILE'], env['COORDINATOR_URL'], env['DASHBOARD_REFRESH_S'], env['COORDINATOR_TIMEOUT_MS']].join('|');
  if (built?.key !== key || fetchImpl !== fetch) {
    const runtime = loadSecrets({ AWS_REGION: env['AWS_REGION'] ?? 'us-east-1', secretId: env['DASHBOARD_SECRET_ID'], file: env['DASHBOARD_SECRETS_FILE'] }).then((s) => buildDashboard(dashboardConfig(env, s), fetchImpl));
    if (fetchImpl !== fetch) return runtime;
    built = { key, runtime };
    runtime.catch(() => { if (built?.runtime === runtime) built = undefined; });
  }
  return built.runtime;
}

function buildDashboard(cfg: DashboardConfig, fetchImpl: typeof fetch) {
  const coordinator = new CoordinatorLink(cfg.COORDINATOR_URL, cfg.DASHBOARD_SIGNING_KEY, cfg.COORDINATOR_TIMEOUT_MS, fetchImpl);
  /**
   * Wrong credentials are reported to the coordinator, which audits them (best effort: the
   * refusal stands either way). A missing one is the browser's normal first request, so it is not.
   */
  const authenticate = async (req: HttpRequest): Promise<string> => {
    try {
      return requireViewer(req.headers, cfg.DASHBOARD_TOKEN);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code && code !== 'auth_missing') {
        const report = { code, method: req.method, path: req.rawPath.slice(0, 200), ...(req.sourceIp ? { sourceIp: req.sourceIp.slice(0, 64) } : {}) };
        // Briefly: a wrong password must not wait on a slow coordinator for its 401.
        await coordinator.call('POST', '/federation/refusals', report, Math.min(cfg.COORDINATOR_TIMEOUT_MS, REPORT_TIMEOUT_MS)).catch(() => undefined);
      }
      throw e;
    }
  };
  const state = async () => (await coordinator.call('GET', '/federation/state')) as DashboardState;
  return { cfg, authenticate, state };
}
