/**
 * A node's public loopback endpoint, in front of its own sls offline: its API Gateway and
 * reserved concurrency (admission), plus fault injection for tests (port closed, slow,
 * answers rewritten) without touching the node's code. When the node's process is gone the
 * proxy drops the connection, as a dead machine would. Development and test tooling only.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { admit, forward, type Admission } from './admission.js';

/** Rewrites a JSON answer in flight: a compromised node that still holds its keys. `http` is the request's URL and headers. */
export type Rewrite = (path: string, answer: any, request: any, http: { url: string; headers: http.IncomingHttpHeaders }) => any;

export type ProxyMode = { kind: 'up' } | { kind: 'down' } | { kind: 'slow'; delayMs: number } | { kind: 'tamper'; rewrite: Rewrite };

export class NodeProxy {
  private server?: http.Server;
  private mode: ProxyMode = { kind: 'up' };
  port = 0;

  /** `admission`: the node function's concurrency limit (tools/admission.ts), checked before anything else. */
  constructor(readonly nodeId: string, private target: string, private readonly admission?: Admission) {}

  /** Point at a restarted node process. */
  retarget(target: string): void {
    this.target = target;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get state(): ProxyMode {
    return this.mode;
  }

  async start(): Promise<void> {
    this.server = await listen((req, res) => this.forward(req, res), this.port);
    this.port = (this.server.address() as AddressInfo).port;
  }

  async setMode(mode: ProxyMode): Promise<void> {
    const wasDown = this.mode.kind === 'down';
    this.mode = mode;
    if (mode.kind === 'down' && !wasDown) await this.close();
    if (mode.kind !== 'down' && wasDown) await this.start();
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await closeServer(s);
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    admit(this.admission, req, res, (release) => this.pass(req, res, release));
  }

  private pass(req: http.IncomingMessage, res: http.ServerResponse, release: () => void): void {
    const target = `${this.target}${req.url ?? '/'}`;
    if (this.mode.kind === 'tamper') return this.tamper(req, res, target, this.mode.rewrite, release);
    if (this.mode.kind !== 'slow') return forward(req, res, target, { onDone: release, dropOnRefused: true });
    // A caller that gives up (timeout, cancelled) must not still reach the node later.
    let forwarded = false;
    const timer = setTimeout(() => {
      forwarded = true;
      forward(req, res, target, { onDone: release, dropOnRefused: true });
    }, this.mode.delayMs);
    res.on('close', () => {
      if (forwarded) return;
      clearTimeout(timer);
      release();
    });
  }

  /** Buffer the request, let `rewrite` change a successful JSON answer. */
  private tamper(req: http.IncomingMessage, res: http.ServerResponse, target: string, rewrite: Rewrite, release: () => void): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      forward(req, res, target, {
        body,
        onDone: release,
        rewrite: (status, text) => {
          if (status >= 300 || !text) return text;
          try {
            const path = (req.url ?? '/').split('?')[0]!;
            const requestJson = body.length ? JSON.parse(body.toString('utf8')) : undefined;
            return JSON.stringify(rewrite(path, JSON.parse(text), requestJson, { url: req.url ?? '/', headers: req.headers }));
          } catch {
            // Not JSON: pass it through unchanged.
            return text;
          }
        },
      });
    });
  }
}

/** Sockets idle this long are closed; the keep-alive header we send says the same (never sls offline's). */
const KEEP_ALIVE_MS = 5000;

/** Listen on loopback; a port that is taken is an error that says so, never someone else's server. */
export async function listen(handler: http.RequestListener, port: number): Promise<http.Server> {
  const server = http.createServer(handler);
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? new Error(`port ${port} on 127.0.0.1 is already in use by another process; stop it or choose another port`) : e),
    );
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

export async function closeServer(s: http.Server): Promise<void> {
  await new Promise<void>((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}
