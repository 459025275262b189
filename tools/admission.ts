/**
 * The local stack's stand-in for Lambda's reserved concurrency. sls offline starts a new
 * worker (a cold start) for every request that finds each instance of a function busy,
 * with no upper bound; on a small machine that turns a burst into a collapse. Each
 * function gets the limit the template reserves for it (deploy/federation.cjs), and a
 * request beyond it is refused at once, before it reaches sls offline: 429, Retry-After,
 * a stable error code, as Lambda throttles a function at its reserved concurrency.
 *
 * The helpers here also keep sls offline's quirks from reaching a caller: a function it
 * killed at its timeout answers HTTP 200 `{"errorMessage":"[504] - Lambda timeout."}`,
 * which becomes a 504; a crash's message and stack trace become a bare 502.
 * Development and test tooling only; never deployed.
 */
import http from 'node:http';
import { BUDGET_HEADER } from '../lib/deadline.js';

export const THROTTLE_RETRY_AFTER_S = 1;

export class Admission {
  inFlight = 0;
  admitted = 0;
  refused = 0;
  /** Most requests ever waiting at once, and how many were admitted after waiting. */
  peakQueue = 0;
  queuedAdmitted = 0;
  private readonly waiting: { admit: () => void; timer: ReturnType<typeof setTimeout> }[] = [];

  /**
   * `limit`: requests served at once. `queue`: how many more may wait for a slot, each at most
   * `maxWaitMs` (and never past its own budget). A short wait keeps the slots busy between
   * a burst's arrivals; it is a local smoothing API Gateway does not do, and it never raises
   * the number served at once. 0 disables it: pure refusal, as Lambda throttling is.
   */
  constructor(readonly name: string, readonly limit: number, readonly queue = limit * 2, readonly maxWaitMs = 2000) {}

  /** A release function once a slot is held; undefined when the function is at its limit and the wait is full or too long. */
  async enter(budgetMs = Infinity): Promise<(() => void) | undefined> {
    if (this.inFlight < this.limit) return this.take();
    const waitMs = Math.min(this.maxWaitMs, budgetMs / 2);
    if (this.waiting.length >= this.queue || waitMs <= 0) {
      this.refused += 1;
      return undefined;
    }
    return new Promise((resolve) => {
      const entry = {
        admit: () => {
          clearTimeout(entry.timer);
          this.queuedAdmitted += 1;
          resolve(this.take());
        },
        timer: setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          this.refused += 1;
          resolve(undefined);
        }, waitMs),
      };
      this.waiting.push(entry);
      this.peakQueue = Math.max(this.peakQueue, this.waiting.length);
    });
  }

  private take(): () => void {
    this.inFlight += 1;
    this.admitted += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      // First come, first served: the oldest waiting request gets the slot.
      this.waiting.shift()?.admit();
    };
  }
}

/** The remaining budget a request names (ms), else Infinity. */
export function budgetOf(req: http.IncomingMessage): number {
  const v = req.headers[BUDGET_HEADER];
  return typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : Infinity;
}

/** Time spent waiting at the door is taken off the budget the function is told about. */
export function spendBudget(req: http.IncomingMessage, waitedMs: number): void {
  const b = budgetOf(req);
  if (b !== Infinity && waitedMs > 0) req.headers[BUDGET_HEADER] = String(Math.max(1, Math.floor(b - waitedMs)));
}

/** Admit `req` through `a` (waiting if allowed) or refuse it with 429; then `go(release)`. */
export function admit(a: Admission | undefined, req: http.IncomingMessage, res: http.ServerResponse, go: (release: () => void) => void): void {
  if (!a) return go(() => undefined);
  const t0 = performance.now();
  void a.enter(budgetOf(req)).then((release) => {
    if (!release) return refuseThrottled(req, res, a);
    // The caller gave up while it waited: nothing to do, free the slot at once.
    if (req.socket.destroyed || res.writableEnded) return release();
    spendBudget(req, performance.now() - t0);
    go(release);
  });
}

/** 429 with Retry-After, answered before any work; the request body is drained, not read. */
export function refuseThrottled(req: http.IncomingMessage, res: http.ServerResponse, a: Admission): void {
  req.resume();
  const body = JSON.stringify({
    error: { code: 'throttled', message: `${a.name} is serving its limit of ${a.limit} requests at once; retry after ${THROTTLE_RETRY_AFTER_S} s`, details: { function: a.name, limit: a.limit } },
  });
  res.writeHead(429, { 'content-type': 'application/json; charset=utf-8', 'retry-after': String(THROTTLE_RETRY_AFTER_S), 'cache-control': 'no-store' });
  res.end(body);
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length']);

/** A Lambda runtime's own error object in place of the function's answer ({errorMessage, errorType, stackTrace}). */
function runtimeError(status: number, text: string): { status: number; code: string; message: string } | undefined {
  if (!text.startsWith('{"errorMessage"') && !text.startsWith('{"errorType"')) return undefined;
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!Object.keys(parsed).every((k) => ['errorMessage', 'errorType', 'stackTrace', 'trace'].includes(k))) return undefined;
  return /timeout/i.test(String(parsed['errorMessage']))
    ? { status: 504, code: 'function_timeout', message: 'the function ran out of time' }
    : { status: status >= 500 ? status : 502, code: 'function_error', message: 'the function failed' };
}

export type AnswerRewrite = (status: number, text: string) => string;

/**
 * Forward one request to `target` and relay the answer, buffered (answers are small JSON or
 * one HTML page), with the runtime's error objects mapped to failures. Our own keep-alive
 * policy applies, not sls offline's: its `keep-alive: timeout=5` would outlive our sockets.
 * `onDone` runs once the function has answered (or failed): only then is its slot free.
 */
export function forward(req: http.IncomingMessage, res: http.ServerResponse, target: string, opts: { body?: Buffer; rewrite?: AnswerRewrite; onDone?: () => void; dropOnRefused?: boolean } = {}): void {
  const done = once(opts.onDone);
  const headers: http.OutgoingHttpHeaders = { ...req.headers, host: new URL(target).host };
  if (opts.body) headers['content-length'] = String(opts.body.length);
  // API Gateway HTTP APIs do not compress; sls offline would, and every hop would pay gzip both ways.
  headers['accept-encoding'] = 'identity';
  const upstream = http.request(target, { method: req.method, headers }, (r) => {
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('error', (e: NodeJS.ErrnoException) => fail(e));
    r.on('end', () => {
      let status = r.statusCode ?? 502;
      let payload: Buffer | string = Buffer.concat(chunks);
      const out: http.OutgoingHttpHeaders = Object.fromEntries(Object.entries(r.headers).filter(([k]) => !HOP_BY_HOP.has(k)));
      // Compressed answers pass through as bytes; the runtime's own error objects are small and never compressed.
      const plain = !r.headers['content-encoding'] || r.headers['content-encoding'] === 'identity';
      const rt = plain ? runtimeError(status, payload.toString('utf8')) : undefined;
      if (rt) {
        status = rt.status;
        payload = JSON.stringify({ error: { code: rt.code, message: rt.message } });
        out['content-type'] = 'application/json; charset=utf-8';
      } else if (opts.rewrite && plain) {
        payload = opts.rewrite(status, payload.toString('utf8'));
        out['content-type'] = 'application/json';
      }
      done();
      if (res.writableEnded) return;
      res.writeHead(status, out);
      res.end(payload);
    });
  });
  const fail = (e?: NodeJS.ErrnoException) => {
    done();
    if (res.writableEnded) return;
    // A function whose process is gone: the caller sees what it would see of a dead machine.
    if (opts.dropOnRefused && (e?.code === 'ECONNREFUSED' || e?.code === 'ECONNRESET')) {
      res.socket?.destroy();
      return;
    }
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
    res.end('{"error":{"code":"bad_gateway","message":"function unreachable"}}');
  };
  upstream.on('error', fail);
  // A caller that goes away does not free the slot: the function is still busy (sls offline
  // cannot cancel it) until it answers, which its own deadline bounds.
  if (opts.body) upstream.end(opts.body);
  else req.pipe(upstream);
}

function once(fn: (() => void) | undefined): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn?.();
  };
}
