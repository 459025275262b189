/**
 * A loopback front door for one node, so that each node has its own endpoint (as in
 * AWS, where each node can be its own API) and so that tests and the demo can take a
 * node down (port closed: connection refused) or make it slow, without touching the
 * node's code. Development and test tooling only; never deployed.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Rewrites a JSON answer in flight: a compromised node that still holds its keys. `http` is the request's URL and headers. */
export type Rewrite = (path: string, answer: any, request: any, http: { url: string; headers: http.IncomingHttpHeaders }) => any;

export type ProxyMode = { kind: 'up' } | { kind: 'down' } | { kind: 'slow'; delayMs: number } | { kind: 'tamper'; rewrite: Rewrite };

export class NodeProxy {
  private server?: http.Server;
  private mode: ProxyMode = { kind: 'up' };
  port = 0;

  constructor(readonly nodeId: string, private readonly target: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get state(): ProxyMode {
    return this.mode;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => this.forward(req, res));
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
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
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.mode.kind === 'tamper') return this.tamper(req, res, this.mode.rewrite);
    const go = () => {
      const upstream = http.request(
        `${this.target}${req.url ?? '/'}`,
        { method: req.method, headers: { ...req.headers, host: new URL(this.target).host } },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      upstream.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
        res.end('{"error":{"code":"bad_gateway","message":"node unreachable"}}');
      });
      req.pipe(upstream);
    };
    if (this.mode.kind !== 'slow') return go();
    // A caller that gives up (timeout, cancelled) must not still reach the node later.
    const timer = setTimeout(go, this.mode.delayMs);
    res.on('close', () => clearTimeout(timer));
  }

  /** Buffer the request and the answer, let `rewrite` change a successful JSON answer. */
  private tamper(req: http.IncomingMessage, res: http.ServerResponse, rewrite: Rewrite): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const upstream = http.request(
        `${this.target}${req.url ?? '/'}`,
        // Ask for identity encoding: the answer must be readable to be rewritten.
        { method: req.method, headers: { ...req.headers, host: new URL(this.target).host, 'content-length': String(body.length), 'accept-encoding': 'identity' } },
        (r) => {
          const out: Buffer[] = [];
          r.on('data', (c: Buffer) => out.push(c));
          r.on('end', () => {
            let text = Buffer.concat(out).toString('utf8');
            if ((r.statusCode ?? 500) < 300 && text) {
              try {
                const path = (req.url ?? '/').split('?')[0]!;
                const requestJson = body.length ? JSON.parse(body.toString('utf8')) : undefined;
                text = JSON.stringify(rewrite(path, JSON.parse(text), requestJson, { url: req.url ?? '/', headers: req.headers }));
              } catch {
                // Not JSON: pass it through unchanged.
              }
            }
            res.writeHead(r.statusCode ?? 502, { 'content-type': 'application/json' });
            res.end(text);
          });
        },
      );
      upstream.on('error', () => {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end('{"error":{"code":"bad_gateway","message":"node unreachable"}}');
      });
      upstream.end(body);
    });
  }
}
