/**
 * The operator dashboard: `GET /dashboard` (the page) and `GET /dashboard/api/state`
 * (the JSON it polls). Sign in with the dashboard viewer token (HTTP Basic password,
 * any user name, or a bearer token). Read-only and without AWS permissions: the state
 * comes from the coordinator, over a call signed with the dashboard's own key, which the
 * coordinator accepts for that and for recording refused sign-ins, nothing else.
 */
import { DASHBOARD_REALM } from '../lib/dashboard/auth.js';
import { PAGE_HEADERS, renderPage } from '../lib/dashboard/page.js';
import { dashboardRuntime } from '../lib/dashboard/runtime.js';
import { httpApi, type HttpRequest } from '../lib/http/api.js';
import { telemetry } from '../lib/observability.js';

const obs = telemetry('fedkms-dashboard');

const authed = <T>(fn: (rt: Awaited<ReturnType<typeof dashboardRuntime>>, req: HttpRequest) => Promise<T>) =>
  async (req: HttpRequest) => {
    const rt = await dashboardRuntime(process.env);
    await rt.authenticate(req);
    return fn(rt, req);
  };

export const handler = httpApi({
  service: 'fedkms-dashboard',
  telemetry: obs,
  challenge: DASHBOARD_REALM,
  routeOf: (req) => `${req.method} ${req.rawPath.replace(/\/+$/, '') || '/'}`,
  routes: {
    'GET /dashboard': authed(async (rt) => ({ raw: true, headers: PAGE_HEADERS, body: renderPage({ refreshS: rt.cfg.DASHBOARD_REFRESH_S }) })),
    'GET /dashboard/api/state': authed((rt) => rt.state()),
  },
});
