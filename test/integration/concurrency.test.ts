/**
 * Load on the real local stack: bursts larger than the functions' concurrency limits,
 * request deadlines, slow (cold) nodes, truthful listings, then fail-closed behaviour
 * when DynamoDB goes away. Every assertion is about behaviour (who got which answer,
 * what the audit chain holds), never about how long something took.
 */
import type { LocalStack } from '../../tools/local-stack';
import { FedkmsClient } from '../../lib/client/api';
import { BUDGET_HEADER } from '../../lib/deadline';
import { call, statusOf, testStack } from '../support/stack';

const EXAMPLE = 'A94F3D82C1B7E6F9';
let stack: LocalStack;

beforeAll(async () => {
  stack = await testStack({ functionTimeoutS: 120 });
  const r = await call(stack, 'POST', '/keys', { body: { keyId: 'example', secretHex: EXAMPLE, policy: { serverSideCombine: true } } });
  expect(r.status).toBe(201);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

/** Records of the coordinator's audit component, as `GET /audit/verify` counts them. */
async function coordinatorRecords(): Promise<{ ok: boolean; count: number }> {
  const v = await call(stack, 'GET', '/audit/verify');
  return { ok: v.body.ok, count: v.body.components.find((c: { component: string }) => c.component === 'reconstruct')?.records ?? 0 };
}

const reconstruct = (opts: { retry?: boolean; headers?: Record<string, string> } = {}) => call(stack, 'POST', '/keys/example/reconstruct', opts);

describe('a burst larger than the bound', () => {
  it('gets an answer for every request: success, or a refusal with Retry-After; the audit chain counts exactly the work done', async () => {
    const limit = stack.admissions.coordinator.limit;
    const burst = 6 * limit + 10;
    const before = await coordinatorRecords();
    const refusedBefore = stack.admissions.coordinator.refused;
    // Each caller gives up on its own at 60 s: an unanswered request would show as an abort.
    const results = await Promise.all(
      Array.from({ length: burst }, () =>
        reconstruct({ retry: false, headers: { [BUDGET_HEADER]: '20000' } }).catch((e: Error) => ({ status: 0, body: { error: { code: e.name } }, text: '', retryAfter: undefined })),
      ),
    );
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429 || r.status === 503);
    const other = results.filter((r) => r.status !== 200 && r.status !== 429 && r.status !== 503);
    expect(other.map((r) => `${r.status} ${r.body?.error?.code}`)).toEqual([]);
    expect(ok.length + refused.length).toBe(burst);
    for (const r of refused) expect((r as { retryAfter?: string }).retryAfter).toMatch(/^\d+$/);
    // The bound held: some were refused at the door, and the door refused them (not a function).
    expect(refused.filter((r) => r.status === 429 && r.body.error.code === 'throttled').length).toBeGreaterThan(0);
    expect(stack.admissions.coordinator.refused - refusedBefore).toBeGreaterThan(0);
    for (const r of ok) expect(r.body.secret.hex.toUpperCase()).toBe(EXAMPLE);
    // One coordinator record per request that reached the coordinator (a 200 or a 503); none for a 429 at the door.
    const after = await coordinatorRecords();
    expect(after.ok).toBe(true);
    expect(after.count).toBe(before.count + ok.length + refused.filter((r) => r.status === 503).length);
  }, 240_000);

  it('with the SDK retrying, every request of a 50-request burst succeeds and each is audited once', async () => {
    const before = await coordinatorRecords();
    const client = new FedkmsClient(stack.url, stack.admin);
    const results = await Promise.all(Array.from({ length: 50 }, () => client.call('POST', '/keys/example/reconstruct', undefined, { timeoutMs: 200_000 })));
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(new Set(results.map((r) => r.body.secret.hex.toUpperCase()))).toEqual(new Set([EXAMPLE]));
    // Retried attempts were refused at the door, before any work: nothing extra in the chain.
    const after = await coordinatorRecords();
    expect(after.ok).toBe(true);
    expect(after.count).toBe(before.count + 50);
  }, 240_000);
});

describe('deadlines', () => {
  it('a node slower than the old fixed timeout (a cold start) is waited for within the deadline, not reported down', async () => {
    // Two of three nodes slow: the quorum needs one of them.
    await stack.setNode('node2', { kind: 'slow', delayMs: 2500 });
    await stack.setNode('node3', { kind: 'slow', delayMs: 2500 });
    const r = await reconstruct({ headers: { [BUDGET_HEADER]: '20000' } });
    expect(r.status).toBe(200);
    expect(r.body.nodes.filter((n: { status: string }) => n.status === 'valid')).toHaveLength(2);
    expect(r.body.nodes.map((n: { status: string }) => n.status)).not.toContain('timeout');
    const s = await call(stack, 'GET', '/status', { headers: { [BUDGET_HEADER]: '20000' } });
    expect(s.body.nodesUp).toBe(3);
  }, 60_000);

  it('when the deadline passes first, the caller gets a failure that names the silent nodes, and nothing is released', async () => {
    await stack.setNode('node2', { kind: 'slow', delayMs: 8000 });
    await stack.setNode('node3', { kind: 'slow', delayMs: 8000 });
    const r = await reconstruct({ headers: { [BUDGET_HEADER]: '1500' } });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('quorum_not_reached');
    expect(statusOf(r.body, 'node2')).toBe('timeout');
    expect(statusOf(r.body, 'node3')).toBe('timeout');
    expect(r.body.secret).toBeUndefined();
    // Slow nodes are load, not a verdict: the caller may try again.
    expect((r as { retryAfter?: string }).retryAfter).toMatch(/^\d+$/);
  }, 60_000);

  it('a request whose budget is too short to start is refused at once with 504 deadline_exceeded', async () => {
    const r = await reconstruct({ headers: { [BUDGET_HEADER]: '5' } });
    expect(r.status).toBe(504);
    expect(r.body.error.code).toBe('deadline_exceeded');
  });

  it('a listing under node timeouts says it is incomplete and names the nodes that did not answer', async () => {
    await stack.setNode('node3', { kind: 'slow', delayMs: 8000 });
    const r = await call(stack, 'GET', '/keys', { headers: { [BUDGET_HEADER]: '1500' } });
    expect(r.status).toBe(200);
    expect(r.body.complete).toBe(false);
    expect(r.body.missing).toEqual(['node3']);
    expect(r.body.keys.map((k: { keyId: string }) => k.keyId)).toContain('example');
    await stack.setNode('node3', { kind: 'up' });
    const full = await call(stack, 'GET', '/keys');
    expect(full.body.complete).toBe(true);
  }, 60_000);
});

describe('fail closed', () => {
  it('with the audit table unavailable, nothing is released', async () => {
    await stack.stopDynamo();
    const r = await reconstruct();
    expect(r.status).toBe(503);
    expect(['audit_unavailable', 'quorum_not_reached']).toContain(r.body.error.code);
    expect(r.body.secret).toBeUndefined();
    expect(r.text).not.toMatch(/a94f3d82c1b7e6f9/i);
    const created = await call(stack, 'POST', '/keys', { body: { keyId: 'during-outage', secretHex: 'aa', policy: { serverSideCombine: true } } });
    expect(created.status).toBeGreaterThanOrEqual(500);
  });
});
