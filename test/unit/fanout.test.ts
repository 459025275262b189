/** The fan-out: stops at the first quorum, classifies failures, survives a judge that throws. */
import { gather } from '../../lib/coordinator/fanout';
import { NodeHttpError } from '../../lib/coordinator/node-client';
import type { NodeEndpoint } from '../../lib/runtime-config';

const nodes: NodeEndpoint[] = [1, 2, 3, 4].map((i) => ({ id: `node${i}`, index: i, url: `http://n${i}`, x25519Public: '', signingPublic: '' }));
const after = <T>(ms: number, v: T, signal: AbortSignal) =>
  new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => resolve(v), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    });
  });

it('stops at the first group with enough valid answers and cancels the rest', async () => {
  const r = await gather({
    nodes,
    timeoutMs: 1000,
    call: (n, signal) => after(n.index === 4 ? 500 : 5 * n.index, n.index, signal),
    judge: (_n, v) => ({ ok: true, group: 'g', need: 2, value: v }),
  });
  expect(r.winner?.members.map((m) => m.value)).toEqual([1, 2]);
  expect(r.reports.find((x) => x.nodeId === 'node4')?.status).toBe('cancelled');
});

it('names timeouts, refusals, corrupted fragments and answers that break the judge', async () => {
  const r = await gather({
    nodes,
    timeoutMs: 50,
    stopEarly: false,
    call: (n, signal) => {
      if (n.index === 1) return after(1000, 0, signal);
      if (n.index === 2) return Promise.reject(new TypeError('fetch failed'));
      if (n.index === 3) return Promise.reject(new NodeHttpError(500, 'fragment_corrupted'));
      return Promise.resolve(4);
    },
    judge: () => {
      throw new Error('bad point');
    },
  });
  expect(r.reports.map((x) => x.status)).toEqual(['timeout', 'unreachable', 'corrupted', 'error']);
  expect(r.winner).toBeUndefined();
});
