/**
 * `npm run bench`: client-observed reconstruction latency through `sls offline`, for
 * 2-of-3, 3-of-5 and 6-of-10 federations, healthy and degraded (one node down, one
 * node 2 s slow). Against the same stack it also times a sequential baseline, the
 * original naive flow: ask every node in turn, wait for each, then combine.
 * Env: BENCH_ITERATIONS (measured requests per row, default 30).
 * Writes the table to stdout and, as JSON, to artifacts/bench-reconstruct.json.
 */
import { randomUUID } from 'node:crypto';
import { signedHeaders } from '../lib/client/signer.js';
import { checkFragment } from '../lib/reconstruction.js';
import { signClientRequest, withImportScalar, type ClientEnvelope } from '../lib/crypto/client-auth.js';
import { withClientRequest } from '../lib/coordinator/client-context.js';
import { NodeClient } from '../lib/coordinator/node-client.js';
import { generateX25519 } from '../lib/crypto/seal.js';
import { combineShares, identifierFor, unwrapSecret, type Share } from '../lib/crypto/shares.js';
import { fromB64, toB64, toHex, wipe } from '../lib/encoding.js';
import type { KeyDescriptor } from '../lib/node/fragment.js';
import type { NodeEndpoint } from '../lib/runtime-config.js';
import type { LocalStack } from '../tools/local-stack.js';
import { CLIENT_TIMEOUT_MS, commandLine, describeFailures, elapsed, fmt, gitRevision, HEALTHY, inTempDir, interrupted, iterationsFromEnv, latencyStats, loadAverage1m, machine, markdownTable, measure, reportHeader, round2, runBench, withFederationStack, writeJsonArtifact, type LatencyStats, type Outcome, type Scenario } from './common.js';

const KEY_ID = 'bench';
const SECRET_HEX = 'A94F3D82C1B7E6F9';
const FEDERATIONS = [
  { n: 3, t: 2 },
  { n: 5, t: 3 },
  { n: 10, t: 6 },
];
const REQUEST_BUDGET_MS = 1000;
const SLOW_DELAY_MS = 2000;
/** Per-node abort of the baseline: long enough that it really waits for the slow node. */
const BASELINE_CALL_TIMEOUT_MS = 5000;
// Cold starts under sls offline take ~0.3 s per function, and sls offline starts another
// instance whenever a function is still busy (e.g. with a call the coordinator cancelled),
// so the concurrent path needs a few rounds before its instance pool is stable. A baseline
// pass touches every node once.
const WARMUP = { concurrent: 5, sequential: 1 } as const;

type MethodKey = keyof typeof WARMUP;
const METHOD_LABEL: Record<MethodKey, string> = { concurrent: 'concurrent coordinator', sequential: 'sequential baseline' };

interface Row extends LatencyStats {
  n: number;
  t: number;
  scenario: string;
  method: string;
}

const SCENARIOS: Scenario[] = [
  HEALTHY,
  {
    key: 'degraded',
    label: `1 down + 1 slow (${SLOW_DELAY_MS / 1000} s)`,
    apply: async (stack, ids) => {
      await stack.setNode(ids[0]!, { kind: 'down' });
      await stack.setNode(ids[1]!, { kind: 'slow', delayMs: SLOW_DELAY_MS });
    },
  },
];

// ---------------------------------------------------------------- the two methods

/** One `POST /keys/{keyId}/reconstruct`, timed from send to last body byte. */
async function viaCoordinator(stack: LocalStack): Promise<Outcome> {
  const started = performance.now();
  try {
    const res = await fetch(`${stack.url}/keys/${KEY_ID}/reconstruct`, {
      method: 'POST',
      // Server-side mode (the bench key's policy allows it): the coordinator's own fan-out is what is measured.
      headers: signedHeaders(stack.admin, 'POST', `/keys/${KEY_ID}/reconstruct`),
      signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
    });
    const text = await res.text();
    const ms = elapsed(started);
    if (res.status !== 200) return { ok: false, ms, failure: `${res.status} ${errorCode(text)}` };
    const hex = (JSON.parse(text) as { secret?: { hex?: string } }).secret?.hex;
    return hex?.toLowerCase() === SECRET_HEX.toLowerCase() ? { ok: true, ms } : { ok: false, ms, failure: '200 wrong secret' };
  } catch (e) {
    return { ok: false, ms: elapsed(started), failure: `client ${(e as Error).name}` };
  }
}

function errorCode(body: string): string {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? 'no error code';
  } catch {
    return 'non-JSON body';
  }
}

interface Baseline {
  client: NodeClient;
  nodes: NodeEndpoint[];
}

/** The baseline calls the nodes itself, signing as the coordinator, through each node's proxy. */
function baselineFor(stack: LocalStack): Baseline {
  const coordinatorKey = stack.secrets['coordinator']?.['privateKey'];
  if (!coordinatorKey) throw new Error('stack secrets hold no coordinator signing key');
  const nodes = stack.config.nodes.map((n, i) => {
    const proxy = stack.proxies.get(n.id);
    const x25519Public = stack.secrets[n.id]?.['x25519Public'];
    if (!proxy || !x25519Public) throw new Error(`stack has no proxy or X25519 key for ${n.id}`);
    return { id: n.id, index: i + 1, url: proxy.url, x25519Public, signingPublic: stack.secrets[n.id]?.['signingPublic'] ?? '' };
  });
  return { client: new NodeClient(fromB64(coordinatorKey, 'coordinator privateKey')), nodes };
}

/** Open and Feldman-check one node's answer, as the coordinator does; undefined if it fails. */
function openFragment(node: NodeEndpoint, answer: unknown, ephPrivate: Uint8Array): { d: KeyDescriptor; share: Share } | undefined {
  const c = checkFragment(answer, node.id, identifierFor(node.index), KEY_ID, ephPrivate);
  return c.ok ? { d: c.descriptor, share: c.share } : undefined;
}

/** The administrator's own signed request for a server-side reconstruction: each node checks it. */
function clientRequest(stack: LocalStack): ClientEnvelope {
  const r = { client: stack.admin.name, method: 'POST', path: `/keys/${KEY_ID}/reconstruct`, query: {}, body: '', timestamp: String(Date.now()), requestId: randomUUID() };
  return { ...r, signature: signClientRequest(stack.admin.privateKey, r) };
}

/** The naive flow: every node, one after another, no early stop; then combine and unwrap. */
async function sequentialBaseline(b: Baseline, stack: LocalStack): Promise<Outcome> {
  const started = performance.now();
  const eph = generateX25519();
  const recipient = toB64(eph.publicKey);
  const got: { d: KeyDescriptor; share: Share }[] = [];
  const env = clientRequest(stack);
  for (const node of b.nodes) {
    try {
      const answer = await withClientRequest(env, () => b.client.call(node, { method: 'GET', path: '/fragment', query: { keyId: KEY_ID, recipient } }, AbortSignal.timeout(BASELINE_CALL_TIMEOUT_MS)));
      const v = openFragment(node, answer, eph.privateKey);
      if (v) got.push(v);
    } catch {
      // Down (connection refused), timed out or erroring: the naive loop just moves on.
    }
  }
  wipe(eph.privateKey);
  try {
    const first = got[0];
    if (!first || got.length < first.d.publicPackage.threshold) return { ok: false, ms: elapsed(started), failure: `only ${got.length} valid shares` };
    const s = combineShares(first.d.publicPackage, got.map((g) => g.share));
    if (!first.d.wrapped) throw new Error(`${KEY_ID} holds no wrapped secret`);
    const secret = unwrapSecret(KEY_ID, s, first.d.wrapped);
    wipe(s);
    const ms = elapsed(started);
    const ok = toHex(secret) === SECRET_HEX.toLowerCase();
    wipe(secret);
    return ok ? { ok, ms } : { ok, ms, failure: 'wrong secret' };
  } catch (e) {
    return { ok: false, ms: elapsed(started), failure: `combine failed: ${(e as Error).message}` };
  } finally {
    got.forEach((g) => wipe(g.share.signingShare));
  }
}

// ---------------------------------------------------------------- measuring

function summarize(base: Pick<Row, 'n' | 't' | 'scenario' | 'method'>, outcomes: Outcome[]): Row {
  return { ...base, ...latencyStats(outcomes) };
}

async function importKey(stack: LocalStack): Promise<void> {
  // An import carries the scalar the client's signature commits to (issue 13).
  const body = JSON.stringify(withImportScalar('POST', '/keys', { keyId: KEY_ID, secretHex: SECRET_HEX, policy: { serverSideCombine: true } }));
  const res = await fetch(`${stack.url}/keys`, {
    method: 'POST',
    headers: { ...signedHeaders(stack.admin, 'POST', '/keys', body), 'content-type': 'application/json' },
    body,
  });
  if (res.status !== 201) throw new Error(`importing the bench key failed: ${res.status} ${await res.text()}`);
}

// ---------------------------------------------------------------- per federation

async function benchFederation(tmp: string, fed: { n: number; t: number }, iterations: number): Promise<Row[]> {
  if (interrupted()) return [];
  return withFederationStack(tmp, fed, REQUEST_BUDGET_MS, async (stack, ids) => {
    await importKey(stack);
    const baseline = baselineFor(stack);
    const rows: Row[] = [];
    for (const scenario of SCENARIOS) {
      await scenario.apply(stack, ids);
      const methods: Record<MethodKey, () => Promise<Outcome>> = { concurrent: () => viaCoordinator(stack), sequential: () => sequentialBaseline(baseline, stack) };
      for (const m of Object.keys(methods) as MethodKey[]) {
        if (interrupted()) return rows;
        const outcomes = await measure(`n=${fed.n} ${scenario.key} ${m}`, WARMUP[m], iterations, methods[m]);
        rows.push(summarize({ n: fed.n, t: fed.t, scenario: scenario.label, method: METHOD_LABEL[m] }, outcomes));
      }
    }
    return rows;
  });
}

// ---------------------------------------------------------------- report

function resultTable(rows: Row[]): string {
  return markdownTable(
    [['n', 'r'], ['t', 'r'], ['scenario', 'l'], ['method', 'l'], ['p50 ms', 'r'], ['p99 ms', 'r'], ['mean ms', 'r'], ['successes/iterations', 'r'], ['failures', 'l']],
    rows.map((r) => [r.n, r.t, r.scenario, r.method, fmt(r.p50Ms), fmt(r.p99Ms), fmt(r.meanMs), `${r.successes}/${r.iterations}`, describeFailures(r.failures)]),
  );
}

async function main(): Promise<void> {
  const iterations = iterationsFromEnv();
  const began = performance.now();
  const date = new Date().toISOString();
  const loadAtStart = loadAverage1m();
  const rows: Row[] = [];
  const complete = await inTempDir(async (tmp) => {
    for (const fed of FEDERATIONS) rows.push(...(await benchFederation(tmp, fed, iterations)));
  });
  if (!complete) return;

  const info = machine();
  const command = commandLine(['bench'], 'bench/reconstruct.ts');
  const load = { start: round2(loadAtStart), end: round2(loadAverage1m()) };
  const notes = [
    `${iterations} measured requests per row after ${WARMUP.concurrent} (coordinator) / ${WARMUP.sequential} (baseline) uncounted warm-ups.`,
    `Latency: client wall time; p50/p99 nearest-rank over successful requests only (with few samples p99 is the maximum).`,
    `Degraded: node1 down (connection refused), node2 delayed ${SLOW_DELAY_MS} ms by its proxy; request budget ${REQUEST_BUDGET_MS} ms, baseline per-call abort ${BASELINE_CALL_TIMEOUT_MS} ms.`,
  ];
  const header = reportHeader('fedkms reconstruction benchmark (sls offline)', { date, began, command, machine: info, loadPoints: 'start / end', loads: [load.start, load.end] }, notes);
  console.log(`\n${header}\n\n${resultTable(rows)}\n`);
  const jsonFile = writeJsonArtifact('bench-reconstruct.json', { date, command, machine: info, loadAverage1m: load, revision: gitRevision(), iterations, notes, rows });
  console.log(`JSON: ${jsonFile}`);
}

runBench(main);
