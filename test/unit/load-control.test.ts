/**
 * Load control without a stack: the SDK's retry policy, request budgets, the local
 * admission limit and the mapping of a runtime's timeout object to a failure.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FedkmsClient, backoffMs, parseRetryAfter } from '../../lib/client/api';
import { BUDGET_HEADER, MAX_BUDGET_MS, parseBudget, requestDeadline } from '../../lib/deadline';
import { Admission, forward } from '../../tools/admission';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { CLIENT_HEADERS } from '../../lib/crypto/client-auth';

const identity = { name: 'tester', privateKey: generateSigningKey().privateKey };
const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => new Response(JSON.stringify(body), { status, headers });

/** A fetch that plays back `script` and records each request's headers. */
function scripted(script: (() => Response | Promise<Response>)[]) {
  const seen: Record<string, string>[] = [];
  const impl = (async (_url: string, init: RequestInit) => {
    seen.push(init.headers as Record<string, string>);
    const next = script.shift();
    if (!next) throw new Error('unexpected call');
    return next();
  }) as unknown as typeof fetch;
  return { impl, seen };
}

describe('SDK retries', () => {
  it('retries a 429 with a fresh signature and request id, and tells the server what is left of its deadline', async () => {
    const f = scripted([() => answer(429, { error: { code: 'throttled' } }, { 'retry-after': '0' }), () => answer(200, { ok: true })]);
    const r = await new FedkmsClient('http://x', identity, f.impl).call('POST', '/keys/k/sign', { digest: 'aa' }, { timeoutMs: 10_000 });
    expect(r.status).toBe(200);
    expect(r.attempts).toBe(2);
    expect(f.seen[0]![CLIENT_HEADERS.requestId]).not.toBe(f.seen[1]![CLIENT_HEADERS.requestId]);
    expect(Number(f.seen[0]![BUDGET_HEADER])).toBeLessThanOrEqual(10_000);
    expect(Number(f.seen[1]![BUDGET_HEADER])).toBeLessThan(Number(f.seen[0]![BUDGET_HEADER]) + 1);
  });

  it('retries a 503 only when it carries Retry-After (refused before any effect)', async () => {
    const f = scripted([() => answer(503, { error: { code: 'quorum_not_reached' } })]);
    const r = await new FedkmsClient('http://x', identity, f.impl).call('POST', '/keys/k/reconstruct', {});
    expect(r.status).toBe(503);
    expect(r.attempts).toBe(1);
  });

  it('never resends a non-idempotent call after a lost connection: it may have taken effect', async () => {
    const f = scripted([() => Promise.reject(new TypeError('socket hang up'))]);
    await expect(new FedkmsClient('http://x', identity, f.impl).call('POST', '/keys', { keyId: 'k' })).rejects.toThrow('cannot reach');
  });

  it('resends an idempotent call after a lost connection', async () => {
    const f = scripted([() => Promise.reject(new TypeError('socket hang up')), () => answer(200, { keys: [] })]);
    const r = await new FedkmsClient('http://x', identity, f.impl).call('GET', '/keys');
    expect(r.status).toBe(200);
    expect(r.attempts).toBe(2);
  });

  it('stops retrying when the next wait would pass its deadline, and returns the refusal', async () => {
    const f = scripted([() => answer(429, { error: { code: 'throttled' } }, { 'retry-after': '5' })]);
    const r = await new FedkmsClient('http://x', identity, f.impl).call('GET', '/keys', undefined, { timeoutMs: 1000 });
    expect(r.status).toBe(429);
    expect(r.retryAfter).toBe('5');
  });

  it('backs off exponentially with full jitter, capped, never below Retry-After', () => {
    expect(backoffMs(0, undefined, () => 1)).toBe(100);
    expect(backoffMs(3, undefined, () => 1)).toBe(800);
    expect(backoffMs(20, undefined, () => 1)).toBe(5000);
    expect(backoffMs(0, 2, () => 0.5)).toBe(2000);
    expect(parseRetryAfter('3')).toBe(3);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('request budgets', () => {
  it('takes the caller budget, capped by the function timeout less a reserve; malformed ones fall back to the default', () => {
    expect(parseBudget('1500')).toBe(1500);
    expect(parseBudget('-1')).toBeUndefined();
    expect(parseBudget('1e9')).toBeUndefined();
    expect(parseBudget('999999999')).toBe(MAX_BUDGET_MS);
    expect(requestDeadline('60000', 10_000, 8000).remaining()).toBeLessThanOrEqual(9500);
    expect(requestDeadline(undefined, 29_000, 8000).remaining()).toBeLessThanOrEqual(8000);
    expect(requestDeadline('nonsense', 29_000, 8000).remaining()).toBeGreaterThan(7000);
  });
});

describe('local admission (the stand-in for reserved concurrency)', () => {
  it('serves `limit` at once, lets a few wait for a slot, refuses the rest at once', async () => {
    const a = new Admission('fn', 2, 1, 10_000);
    const r1 = await a.enter();
    const r2 = await a.enter();
    const waiting = a.enter();
    expect(await a.enter()).toBeUndefined();
    expect(a.inFlight).toBe(2);
    r1!();
    const r3 = await waiting;
    expect(r3).toBeDefined();
    expect(a.inFlight).toBe(2);
    r2!();
    r3!();
    r3!();
    expect(a.inFlight).toBe(0);
    expect(a.refused).toBe(1);
  });

  it('a request that cannot get a slot within half its budget is refused', async () => {
    const a = new Admission('fn', 1, 5, 10_000);
    const r = await a.enter();
    expect(await a.enter(20)).toBeUndefined();
    r!();
  });

  it("maps a runtime's timeout object (HTTP 200 {errorMessage}) to a 504, and a crash to a bare 502 with no stack trace", async () => {
    const upstream = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url === '/timeout' ? '{"errorMessage":"[504] - Lambda timeout."}' : req.url === '/crash' ? '{"errorMessage":"boom","errorType":"Error","stackTrace":["at x (/var/task/a.js:1:1)"]}' : '{"ok":true}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const door = http.createServer((req, res) => forward(req, res, `${target}${req.url}`));
    await new Promise<void>((r) => door.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(door.address() as AddressInfo).port}`;
    try {
      const t = await fetch(`${base}/timeout`);
      expect(t.status).toBe(504);
      expect(((await t.json()) as any).error.code).toBe('function_timeout');
      const c = await fetch(`${base}/crash`);
      expect(c.status).toBe(502);
      expect(await c.text()).not.toMatch(/stack|a\.js|boom/);
      const ok = await fetch(`${base}/fine`);
      expect(await ok.json()).toEqual({ ok: true });
    } finally {
      door.closeAllConnections();
      upstream.closeAllConnections();
      door.close();
      upstream.close();
    }
  });
});

describe('local ports', () => {
  it('a port another process holds is a clear error, never a silent start against someone else', async () => {
    const { listen, closeServer } = await import('../../tools/node-proxy');
    const first = await listen((_req, res) => res.end(), 0);
    const port = (first.address() as AddressInfo).port;
    try {
      await expect(listen((_req, res) => res.end(), port)).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use by another process`);
    } finally {
      await closeServer(first);
    }
  });

  it("answers with its own keep-alive policy, never sls offline's longer one", async () => {
    const upstream = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive', 'keep-alive': 'timeout=5' });
      res.end('{}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const { listen, closeServer } = await import('../../tools/node-proxy');
    const target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const door = await listen((req, res) => forward(req, res, `${target}${req.url}`), 0);
    try {
      const r = await fetch(`http://127.0.0.1:${(door.address() as AddressInfo).port}/x`);
      await r.text();
      // Node states the server's own idle timeout; the proxy closes idle sockets no sooner than it says.
      expect(r.headers.get('keep-alive')).toBe(`timeout=${door.keepAliveTimeout / 1000}`);
    } finally {
      upstream.closeAllConnections();
      upstream.close();
      await closeServer(door);
    }
  });
});
