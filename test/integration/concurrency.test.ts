/**
 * The audit chain under a burst of concurrent Lambdas, and fail-closed behaviour when
 * DynamoDB goes away, on a stack of its own: under sls offline every concurrent
 * request is a fresh worker (a cold start, as in Lambda), so on a 2-core machine a
 * 50-request burst queues for seconds. The per-node timeout is raised accordingly;
 * that is configuration, not a code path.
 */
import type { LocalStack } from '../../tools/local-stack';
import { call, testStack } from '../support/stack';

const EXAMPLE = 'A94F3D82C1B7E6F9';
let stack: LocalStack;

beforeAll(async () => {
  stack = await testStack({ requestBudgetMs: 100_000, functionTimeoutS: 120 });
  const r = await call(stack, 'POST', '/keys', { body: { keyId: 'example', secretHex: EXAMPLE, policy: { serverSideCombine: true } } });
  expect(r.status).toBe(201);
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

const reconstruct = (keyId = 'example') => call(stack, 'POST', `/keys/${keyId}/reconstruct`);

describe('audit under concurrency, then fail closed', () => {
  it('50 concurrent reconstructions all succeed and the chain holds exactly one record each', async () => {
    const before = await call(stack, 'GET', '/audit/verify');
    const count = (b: any) => b.components.find((c: { component: string }) => c.component === 'reconstruct')?.records ?? 0;
    const results = await Promise.all(Array.from({ length: 50 }, () => reconstruct()));
    const failed = results.filter((r) => r.status !== 200);
    if (failed.length) console.log(JSON.stringify(failed.slice(0, 3).map((f) => f.body)));
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(new Set(results.map((r) => r.body.secret.hex.toUpperCase()))).toEqual(new Set([EXAMPLE]));
    const after = await call(stack, 'GET', '/audit/verify');
    expect(after.body.ok).toBe(true);
    expect(count(after.body)).toBe(count(before.body) + 50);
  }, 240_000);

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
