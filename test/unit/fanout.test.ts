/** The fan-out: stops at the first quorum, classifies failures, survives a judge that throws, hedges, keeps to the deadline. */
import { gather, quorumFailure } from '../../lib/coordinator/fanout';
import { Deadline, withDeadline } from '../../lib/deadline';
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

describe('hedging and deadlines', () => {
  const three = nodes.slice(0, 3);
  const judge = (_n: NodeEndpoint, v: number) => ({ ok: true as const, group: 'g', need: 2, value: v });

  it('asks only the expected quorum at first, and a spare as soon as one of them fails', async () => {
    const asked: string[] = [];
    const r = await gather({
      nodes: three,
      timeoutMs: 5000,
      initial: 2,
      call: (n, signal) => {
        asked.push(n.id);
        return asked.length === 1 ? Promise.reject(new TypeError('fetch failed')) : after(5, n.index, signal);
      },
      judge,
    });
    expect(asked).toHaveLength(3);
    expect(r.winner?.members).toHaveLength(2);
    expect(r.reports.filter((x) => x.status === 'unreachable')).toHaveLength(1);
  });

  it('never asks a spare when the first ones answer', async () => {
    const asked: string[] = [];
    const r = await gather({ nodes: three, timeoutMs: 5000, initial: 2, call: (n, signal) => (asked.push(n.id), after(5, n.index, signal)), judge });
    expect(asked).toHaveLength(2);
    expect(r.reports.filter((x) => x.status === 'cancelled')).toHaveLength(1);
  });

  it('asks a spare when the first ones stay quiet, and still takes a slow answer within the deadline', async () => {
    const r = await gather({ nodes: three, timeoutMs: 5000, initial: 2, call: (n, signal) => after(1500, n.index, signal), judge });
    // Everyone was slow (a cold start), nobody was down: the fan-out waited within its deadline.
    expect(r.winner?.members).toHaveLength(2);
    expect(r.reports.map((x) => x.status)).not.toContain('timeout');
  });

  it('retries a node that refused before doing any work (429), within the deadline', async () => {
    let refusals = 0;
    const r = await gather({
      nodes: nodes.slice(0, 2),
      timeoutMs: 5000,
      call: (n, signal) => (n.index === 1 && refusals++ === 0 ? Promise.reject(new NodeHttpError(429, 'throttled', undefined, '1')) : after(5, n.index, signal)),
      judge,
    });
    expect(refusals).toBe(2);
    expect(r.winner?.members).toHaveLength(2);
  });

  it('a quorum failure caused only by load carries Retry-After; one caused by bad answers does not', async () => {
    const slow = await gather({ nodes: three, timeoutMs: 50, call: (n, signal) => after(1000, n.index, signal), judge });
    expect(quorumFailure('x', { nodes: slow.reports }).retryAfterS).toBe(1);
    const bad = await gather({ nodes: three, timeoutMs: 1000, call: () => Promise.reject(new NodeHttpError(500, 'fragment_corrupted')), judge });
    expect(quorumFailure('x', { nodes: bad.reports }).retryAfterS).toBeUndefined();
  });

  it('every call, spares included, ends at the request deadline', async () => {
    const r = await withDeadline(Deadline.in(300), () =>
      gather({ nodes: three, timeoutMs: 60_000, initial: 2, call: (n, signal) => after(10_000, n.index, signal), judge }),
    );
    expect(r.winner).toBeUndefined();
    // Had any call outlived the deadline, its answer (valid, at 10 s) would have made a winner.
    expect(r.reports.filter((x) => x.status === 'timeout').length).toBeGreaterThanOrEqual(2);
  });
});
