/**
 * The coordinator operator's public endpoint, in front of its sls offline: what API Gateway and
 * Lambda's reserved concurrency are in AWS. Each request is counted against the limit
 * of the function its route belongs to (the coordinator, the dashboard, or a node when
 * called through the shared API) and refused with 429 beyond it (tools/admission.ts).
 * Unknown routes and methods get the project's error format here (404 route_not_found,
 * 405 method_not_allowed), not sls offline's page listing every route.
 * Development and test tooling only; never deployed.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { admit, forward, type Admission } from './admission.js';
import { closeServer, listen } from './node-proxy.js';

export interface Admissions {
  coordinator: Admission;
  dashboard: Admission;
  nodes: Map<string, Admission>;
}

/** Which function serves a path: the routes of deploy/federation.cjs. */
export function admissionFor(a: Admissions, url: string): Admission | undefined {
  if (url === '/dashboard' || url.startsWith('/dashboard/') || url.startsWith('/dashboard?')) return a.dashboard;
  const node = /^\/nodes\/([a-z0-9-]{1,32})\//.exec(url);
  if (node) return a.nodes.get(node[1]!);
  return a.coordinator;
}

/** One route of the gateway: a method (or `*`) and its path pattern. */
export interface GatewayRoute {
  method: string;
  pattern: RegExp;
}

/** sls offline's route list (`GET - /keys/{keyId}`, hapi path syntax) as patterns. */
export function routeTable(existingRoutes: string[]): GatewayRoute[] {
  return existingRoutes.flatMap((r) => {
    const m = /^(\S+) - (\/\S*)$/.exec(r);
    if (!m) return [];
    const source = m[2]!
      .split('/')
      .map((seg) => seg.replace(/\{[^}*?]+\*\d*\}/, '\u0000').replace(/\{[^}]+\}/, '\u0001').replace(/[.+^$()|[\]\\]/g, '\\$&').replace('\u0000', '.*').replace('\u0001', '[^/]+'))
      .join('/');
    return [{ method: m[1]!.toUpperCase(), pattern: new RegExp(`^${source}$`) }];
  });
}

/**
 * The project's answer for a request no route takes, or undefined when one does:
 * 404 route_not_found for an unknown path, 405 method_not_allowed (with Allow) for a known
 * path asked with another method.
 */
export function unmatchedRoute(routes: GatewayRoute[], method: string, url: string): { status: 404 | 405; headers: Record<string, string>; body: string } | undefined {
  let path = url.split('?')[0]!;
  try {
    path = decodeURI(path);
  } catch {
    // A malformed escape matches no route: it is answered as unknown below.
  }
  path = path.replace(/(.)\/+$/, '$1');
  const onPath = routes.filter((r) => r.pattern.test(path));
  if (onPath.some((r) => r.method === '*' || r.method === method.toUpperCase())) return undefined;
  const json = { 'content-type': 'application/json' };
  if (onPath.length === 0) {
    return { status: 404, headers: json, body: JSON.stringify({ error: { code: 'route_not_found', message: `no route ${method} ${path}` } }) };
  }
  const allow = [...new Set(onPath.map((r) => r.method))].sort();
  return { status: 405, headers: { ...json, allow: allow.join(', ') }, body: JSON.stringify({ error: { code: 'method_not_allowed', message: `${method} is not allowed on ${path}; allowed: ${allow.join(', ')}` } }) };
}

/** Ask sls offline for its route list: its answer to a path no route takes carries it. Undefined if it cannot say. */
function fetchRouteTable(target: string): Promise<GatewayRoute[] | undefined> {
  return new Promise((resolve) => {
    const req = http.get(`${target}/__fedkms_front_door_route_list__`, { headers: { 'accept-encoding': 'identity' } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('error', () => resolve(undefined));
      r.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { existingRoutes?: unknown };
          resolve(r.statusCode === 404 && Array.isArray(body.existingRoutes) ? routeTable(body.existingRoutes.map(String)) : undefined);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('error', () => resolve(undefined));
    req.setTimeout(5_000, () => req.destroy());
  });
}

export class FrontDoor {
  private server?: http.Server;
  /** sls offline's routes, learned on first use (it is not up yet when the door opens). */
  private routes?: Promise<GatewayRoute[] | undefined>;

  constructor(private target: string, private readonly admissions: Admissions) {}

  /** Point at a (re)started sls offline. */
  retarget(target: string): void {
    this.target = target;
  }

  async start(port: number): Promise<number> {
    this.server = await listen((req, res) => this.handle(req, res), port);
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await closeServer(s);
  }

  private async routeTable(): Promise<GatewayRoute[] | undefined> {
    this.routes ??= fetchRouteTable(this.target);
    const routes = await this.routes;
    if (!routes) this.routes = undefined; // not learned: ask again next time, forward meanwhile
    return routes;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    // Like API Gateway, no function is invoked for a route that does not exist.
    const known = method === 'OPTIONS' || method === 'HEAD' ? Promise.resolve(undefined) : this.routeTable().then((r) => (r ? unmatchedRoute(r, method, url) : undefined), () => undefined);
    void known.then((miss) => {
      if (!miss) return admit(admissionFor(this.admissions, url), req, res, (release) => forward(req, res, `${this.target}${url}`, { onDone: release }));
      req.resume();
      res.writeHead(miss.status, miss.headers);
      res.end(miss.body);
    });
  }
}
