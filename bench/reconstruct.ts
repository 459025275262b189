/**
 * `npm run bench`: client-observed reconstruction latency through `sls offline`, for
 * 2-of-3, 3-of-5 and 6-of-10 federations, healthy and degraded (one node down, one
 * node 2 s slow). Against the same stack it also times a sequential baseline, the
 * original naive flow: ask every node in turn, wait for each, then combine.
 * Env: BENCH_ITERATIONS (measured requests per row, default 30).
 * Writes the table to stdout and, as JSON, to artifacts/bench-reconstruct.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { NodeClient } from '../lib/coordinator/node-client.js';
import { generateX25519, open } from '../lib/crypto/seal.js';
import { combineShares, identifierFor, isValidShare, unwrapSecret, type Share } from '../lib/crypto/shares.js';
import { fromB64, toB64, toHex, wipe } from '../lib/encoding.js';
import { deliveryAad, descriptorSchema, type KeyDescriptor } from '../lib/node/fragment.js';
import type { NodeEndpoint } from '../lib/runtime-config.js';
import { ROOT, startLocalStack, type LocalStack } from '../tools/local-stack.js';

const KEY_ID = 'bench';
const SECRET_HEX = 'A94F3D82C1B7E6F9';
const FEDERATIONS = [
  { n: 3, t: 2 },
  { n: 5, t: 3 },
  { n: 10, t: 6 },
];
const NODE_TIMEOUT_MS = 1000;
const SLOW_DELAY_MS = 2000;
/** Per-node abort of the baseline: long enough that it really waits for the slow node. */
const BASELINE_CALL_TIMEOUT_MS = 5000;
/** Above the coordinator Lambda's own 29 s timeout, so a hang shows up as that Lambda's error. */
const CLIENT_TIMEOUT_MS = 35_000;
// Cold starts under sls offline take ~0.3 s per function, and sls offline starts another
// instance whenever a function is still busy (e.g. with a call the coordinator cancelled),
// so the concurrent path needs a few rounds before its instance pool is stable. A baseline
// pass touches every node once.
const WARMUP = { concurrent: 5, sequential: 1 } as const;

type MethodKey = keyof typeof WARMUP;
const METHOD_LABEL: Record<MethodKey, string> = { concurrent: 'concurrent coordinator', sequential: 'sequential baseline' };

interface Outcome {
  ok: boolean;
  ms: number;
  failure?: string;
}

interface Row {
  n: number;
  t: number;
  scenario: string;
  method: string;
  p50Ms: number | null;
  p99Ms: number | null;
  meanMs: number | null;
  successes: number;
  iterations: number;
  /** Failure reason -> count and median latency; the p50/p99/mean columns cover successes only. */
  failures: Record<string, { count: number; p50Ms: number | null }>;
  samplesMs: number[];
}

interface Scenario {
  key: string;
  label: string;
  apply(stack: LocalStack, ids: string[]): Promise<void>;
}

const SCENARIOS: Scenario[] = [
  { key: 'healthy', label: 'healthy', apply: async () => undefined },
  {
    key: 'degraded',
    label: `1 down + 1 slow (${SLOW_DELAY_MS / 1000} s)`,
    apply: async (stack, ids) => {
      await stack.setNode(ids[0]!, { kind: 'down' });
      await stack.setNode(ids[1]!, { kind: 'slow', delayMs: SLOW_DELAY_MS });
    },
  },
];

function iterationsFromEnv(): number {
  const raw = process.env['BENCH_ITERATIONS'];
  if (raw === undefined || raw === '') return 30;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_ITERATIONS must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

const elapsed = (started: number) => performance.now() - started;
const round2 = (x: number) => Math.round(x * 100) / 100;

// ---------------------------------------------------------------- the two methods

/** One `POST /keys/{keyId}/reconstruct`, timed from send to last body byte. */
async function viaCoordinator(stack: LocalStack): Promise<Outcome> {
  const started = performance.now();
  try {
    const res = await fetch(`${stack.url}/keys/${KEY_ID}/reconstruct`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.token}` },
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

const fragmentAnswerSchema = z.object({
  nodeId: z.string(),
  descriptor: descriptorSchema,
  sealedShare: z.object({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() }),
});

/** Open and Feldman-check one node's answer, as the coordinator does; undefined if it fails. */
function openFragment(node: NodeEndpoint, answer: unknown, ephPrivate: Uint8Array): { d: KeyDescriptor; share: Share } | undefined {
  const p = fragmentAnswerSchema.safeParse(answer);
  if (!p.success || p.data.nodeId !== node.id) return undefined;
  const d = p.data.descriptor;
  const identifier = identifierFor(node.index);
  let signingShare: Uint8Array;
  try {
    signingShare = open(ephPrivate, p.data.sealedShare, deliveryAad(KEY_ID, d.version, node.id, identifier));
  } catch {
    return undefined;
  }
  const share = { identifier, signingShare };
  if (isValidShare(d.publicPackage, share)) return { d, share };
  wipe(signingShare);
  return undefined;
}

/** The naive flow: every node, one after another, no early stop; then combine and unwrap. */
async function sequentialBaseline(b: Baseline): Promise<Outcome> {
  const started = performance.now();
  const eph = generateX25519();
  const recipient = toB64(eph.publicKey);
  const got: { d: KeyDescriptor; share: Share }[] = [];
  for (const node of b.nodes) {
    try {
      const answer = await b.client.call(node, { method: 'GET', path: '/fragment', query: { keyId: KEY_ID, recipient } }, AbortSignal.timeout(BASELINE_CALL_TIMEOUT_MS));
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

/** Nearest-rank percentile of ascending samples. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summarize(base: Pick<Row, 'n' | 't' | 'scenario' | 'method'>, outcomes: Outcome[]): Row {
  const sortedMs = (xs: Outcome[]) => xs.map((o) => o.ms).sort((a, b) => a - b);
  const round = (x: number | null) => (x === null ? null : Math.round(x * 10) / 10);
  const okMs = sortedMs(outcomes.filter((o) => o.ok));
  const byReason = new Map<string, Outcome[]>();
  for (const o of outcomes) if (!o.ok) byReason.set(o.failure ?? 'unknown', [...(byReason.get(o.failure ?? 'unknown') ?? []), o]);
  // How fast a failure comes back matters too (a quorum failure should take ~ the node timeout).
  const failures = Object.fromEntries([...byReason].map(([why, xs]) => [why, { count: xs.length, p50Ms: round(percentile(sortedMs(xs), 50)) }]));
  return {
    ...base,
    p50Ms: round(percentile(okMs, 50)),
    p99Ms: round(percentile(okMs, 99)),
    meanMs: round(okMs.length ? okMs.reduce((a, b) => a + b, 0) / okMs.length : null),
    successes: okMs.length,
    iterations: outcomes.length,
    failures,
    samplesMs: outcomes.map((o) => Math.round(o.ms * 10) / 10),
  };
}

async function measure(label: string, warmup: number, iterations: number, once: () => Promise<Outcome>): Promise<Outcome[]> {
  for (let i = 0; i < warmup; i++) await once();
  const out: Outcome[] = [];
  for (let i = 1; i <= iterations; i++) {
    out.push(await once());
    if (i === 1 || i % 5 === 0 || i === iterations) console.log(`  ${label}: ${i}/${iterations} (${out.filter((o) => o.ok).length} ok)`);
  }
  return out;
}

/**
 * Cold-start every node Lambda one at a time before the import: cold on 2 cores, n
 * concurrent PUTs overrun the coordinator's 2x node timeout and the import fails.
 */
async function warmNodes(stack: LocalStack): Promise<void> {
  for (const p of stack.proxies.values()) await fetch(`${p.url}/status`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) }).then((r) => r.text());
  await fetch(`${stack.url}/status`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) }).then((r) => r.text());
}

async function importKey(stack: LocalStack): Promise<void> {
  const res = await fetch(`${stack.url}/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ keyId: KEY_ID, secretHex: SECRET_HEX }),
  });
  if (res.status !== 201) throw new Error(`importing the bench key failed: ${res.status} ${await res.text()}`);
}

// ---------------------------------------------------------------- stack lifecycle

/** The stack being started or used, so SIGINT and errors can stop it. */
let live: Promise<LocalStack> | undefined;
let interrupted = false;

async function stopLive(): Promise<void> {
  const pending = live;
  live = undefined;
  const stack = await pending?.catch(() => undefined);
  await stack?.stop();
}

function onSignal(signal: NodeJS.Signals): void {
  interrupted = true;
  console.error(`\nbench: ${signal}, stopping the local stack...`);
  void stopLive().finally(() => process.exit(130));
}

function writeFederationConfig(tmp: string, n: number, t: number): { configFile: string; ids: string[] } {
  const ids = Array.from({ length: n }, (_, i) => `node${i + 1}`);
  const configFile = path.join(tmp, `federation-${t}-of-${n}.json`);
  writeFileSync(configFile, JSON.stringify({ threshold: t, nodes: ids.map((id) => ({ id })), nodeTimeoutMs: NODE_TIMEOUT_MS }, null, 2));
  return { configFile, ids };
}

async function benchFederation(tmp: string, fed: { n: number; t: number }, iterations: number): Promise<Row[]> {
  if (interrupted) return [];
  const { configFile, ids } = writeFederationConfig(tmp, fed.n, fed.t);
  const dir = mkdtempSync(path.join(tmp, `stack-${fed.n}-`));
  console.log(`n=${fed.n} (${fed.t}-of-${fed.n}): starting the local stack in ${dir} ...`);
  const startedAt = performance.now();
  live = startLocalStack({ dir, configFile, log: (l) => console.log(`  ${l}`) });
  try {
    const stack = await live;
    console.log(`  stack up in ${(elapsed(startedAt) / 1000).toFixed(1)} s`);
    await warmNodes(stack);
    await importKey(stack);
    const baseline = baselineFor(stack);
    const rows: Row[] = [];
    for (const scenario of SCENARIOS) {
      await scenario.apply(stack, ids);
      const methods: Record<MethodKey, () => Promise<Outcome>> = { concurrent: () => viaCoordinator(stack), sequential: () => sequentialBaseline(baseline) };
      for (const m of Object.keys(methods) as MethodKey[]) {
        if (interrupted) return rows;
        const outcomes = await measure(`n=${fed.n} ${scenario.key} ${m}`, WARMUP[m], iterations, methods[m]);
        rows.push(summarize({ n: fed.n, t: fed.t, scenario: scenario.label, method: METHOD_LABEL[m] }, outcomes));
      }
    }
    return rows;
  } finally {
    await stopLive();
  }
}

// ---------------------------------------------------------------- report

function commandLine(): string {
  const env = process.env['BENCH_ITERATIONS'] ? `BENCH_ITERATIONS=${process.env['BENCH_ITERATIONS']} ` : '';
  const run = process.env['npm_lifecycle_event'] === 'bench' ? 'npm run bench' : `npx tsx ${path.relative(ROOT, process.argv[1] ?? 'bench/reconstruct.ts')}`;
  return env + run;
}

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${rev} (working tree modified)` : rev;
  } catch {
    return 'unknown';
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  };
}

function markdownTable(rows: Row[]): string {
  const fmt = (x: number | null) => (x === null ? '-' : x.toFixed(1));
  const failures = (f: Row['failures']) => Object.entries(f).map(([why, x]) => `${x.count}x ${why} (p50 ${fmt(x.p50Ms)} ms)`).join('; ') || '-';
  const lines = [
    '| n | t | scenario | method | p50 ms | p99 ms | mean ms | successes/iterations | failures |',
    '|---:|---:|---|---|---:|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.n} | ${r.t} | ${r.scenario} | ${r.method} | ${fmt(r.p50Ms)} | ${fmt(r.p99Ms)} | ${fmt(r.meanMs)} | ${r.successes}/${r.iterations} | ${failures(r.failures)} |`),
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const iterations = iterationsFromEnv();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const began = performance.now();
  const date = new Date().toISOString();
  const loadAtStart = os.loadavg()[0]!;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'fedkms-bench-'));
  const rows: Row[] = [];
  try {
    for (const fed of FEDERATIONS) rows.push(...(await benchFederation(tmp, fed, iterations)));
  } catch (e) {
    if (interrupted) return;
    console.error(`bench failed; stack logs kept in ${tmp}`);
    throw e;
  }
  rmSync(tmp, { recursive: true, force: true });
  // A partial run must not overwrite the last complete artifact; the signal handler exits.
  if (interrupted) return;

  const info = machine();
  const command = commandLine();
  // Other work on the machine (for example a concurrent test run) skews every number here.
  const load = { start: round2(loadAtStart), end: round2(os.loadavg()[0]!) };
  const busy = Math.max(load.start, load.end) > info.cores ? ' -- above the core count: other processes competed for the CPU, numbers are skewed' : '';
  const notes = [
    `${iterations} measured requests per row after ${WARMUP.concurrent} (coordinator) / ${WARMUP.sequential} (baseline) uncounted warm-ups.`,
    `Latency: client wall time; p50/p99 nearest-rank over successful requests only (with few samples p99 is the maximum).`,
    `Degraded: node1 down (connection refused), node2 delayed ${SLOW_DELAY_MS} ms by its proxy; coordinator node timeout ${NODE_TIMEOUT_MS} ms, baseline per-call abort ${BASELINE_CALL_TIMEOUT_MS} ms.`,
  ];
  const table = markdownTable(rows);
  console.log(`
## fedkms reconstruction benchmark (sls offline)

- date: ${date}
- machine: node ${info.node}, ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, ${info.os}
- revision: ${gitRevision()}
- command: \`${command}\`
- total run time: ${(elapsed(began) / 1000).toFixed(0)} s
- load average (1 min) at start / end: ${load.start} / ${load.end}${busy}
${notes.map((n) => `- ${n}`).join('\n')}

${table}
`);
  const artifacts = path.join(ROOT, 'artifacts');
  mkdirSync(artifacts, { recursive: true });
  const jsonFile = path.join(artifacts, 'bench-reconstruct.json');
  writeFileSync(jsonFile, `${JSON.stringify({ date, command, machine: info, loadAverage1m: load, revision: gitRevision(), iterations, notes, rows }, null, 2)}\n`);
  console.log(`JSON: ${path.relative(ROOT, jsonFile)}`);
}

main().catch(async (e) => {
  console.error(`bench: ${(e as Error).stack ?? e}`);
  await stopLive();
  process.exit(1);
});
