/**
 * The coordinator operator's public endpoint, in front of its sls offline: what API Gateway and
 * Lambda's reserved concurrency are in AWS. Each request is counted against the limit
 * of the function its route belongs to (the coordinator, the dashboard, or a node when
 * called through the shared API) and refused with 429 beyond it (tools/admission.ts).
 * Development and test tooling only; never deployed.
 */
import type http from 'node:http';
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

export class FrontDoor {
  private server?: http.Server;

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

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    admit(admissionFor(this.admissions, url), req, res, (release) => forward(req, res, `${this.target}${url}`, { onDone: release }));
  }
}
