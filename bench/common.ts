/**
 * What the benchmarks in bench/ share: settings from the environment, statistics, the
 * local-stack lifecycle (stopped on SIGINT/SIGTERM and on errors), and the report's
 * run metadata and markdown. Not a benchmark itself.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, startLocalStack, type LocalStack } from '../tools/local-stack.js';

/** Above the coordinator Lambda's own 29 s timeout, so a hang shows up as that Lambda's error. */
export const CLIENT_TIMEOUT_MS = 35_000;

/** Measured requests per row: BENCH_ITERATIONS, default `fallback` (30). */
export function iterationsFromEnv(fallback = 30): number {
  const raw = process.env['BENCH_ITERATIONS'];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_ITERATIONS must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

// ---------------------------------------------------------------- numbers

export const elapsed = (started: number) => performance.now() - started;
export const round1 = (x: number) => Math.round(x * 10) / 10;
export const round2 = (x: number) => Math.round(x * 100) / 100;

/** Nearest-rank percentile of ascending samples. */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** One timed request. */
export interface Outcome {
  ok: boolean;
  ms: number;
  failure?: string;
}

/** A row's latency columns, in the order the JSON artifacts list them. */
export interface LatencyStats {
  p50Ms: number | null;
  p99Ms: number | null;
  meanMs: number | null;
  successes: number;
  iterations: number;
  /** Failure reason -> count and median latency; the p50/p99/mean columns cover successes only. */
  failures: Record<string, { count: number; p50Ms: number | null }>;
  samplesMs: number[];
}

export function latencyStats(outcomes: Outcome[]): LatencyStats {
  const sortedMs = (xs: Outcome[]) => xs.map((o) => o.ms).sort((a, b) => a - b);
  const round = (x: number | null) => (x === null ? null : round1(x));
  const okMs = sortedMs(outcomes.filter((o) => o.ok));
  const byReason = new Map<string, Outcome[]>();
  for (const o of outcomes) if (!o.ok) byReason.set(o.failure ?? 'unknown', [...(byReason.get(o.failure ?? 'unknown') ?? []), o]);
  // How fast a failure comes back matters too (a quorum failure should take ~ the node timeout).
  const failures = Object.fromEntries([...byReason].map(([why, xs]) => [why, { count: xs.length, p50Ms: round(percentile(sortedMs(xs), 50)) }]));
  return {
    p50Ms: round(percentile(okMs, 50)),
    p99Ms: round(percentile(okMs, 99)),
    meanMs: round(okMs.length ? okMs.reduce((a, b) => a + b, 0) / okMs.length : null),
    successes: okMs.length,
    iterations: outcomes.length,
    failures,
    samplesMs: outcomes.map((o) => round1(o.ms)),
  };
}

/**
 * Uncounted warm-ups, then `iterations` measured calls with progress lines. `once` gets a
 * sequence number running on across both; `afterWarmup` marks where measuring starts.
 */
export async function measure<O extends Outcome>(label: string, warmup: number, iterations: number, once: (seq: number) => Promise<O>, afterWarmup?: () => void): Promise<O[]> {
  let seq = 0;
  for (let i = 0; i < warmup; i++) await once(seq++);
  afterWarmup?.();
  const out: O[] = [];
  for (let i = 1; i <= iterations; i++) {
    out.push(await once(seq++));
    if (i === 1 || i % 5 === 0 || i === iterations) console.log(`  ${label}: ${i}/${iterations} (${out.filter((o) => o.ok).length} ok)`);
  }
  return out;
}

// ---------------------------------------------------------------- stack lifecycle

export interface Federation {
  n: number;
  t: number;
}

export interface Scenario {
  key: string;
  label: string;
  apply(stack: LocalStack, ids: string[]): Promise<void>;
}

/** Every benchmark's first scenario: the stack as started, all nodes up. */
export const HEALTHY: Scenario = { key: 'healthy', label: 'healthy', apply: async () => undefined };

/** The stack being started or used, so SIGINT and errors can stop it. */
let live: Promise<LocalStack> | undefined;
let wasInterrupted = false;

/** True once SIGINT/SIGTERM arrived: stop measuring, write no artifact. */
export const interrupted = () => wasInterrupted;

export async function stopLive(): Promise<void> {
  const pending = live;
  live = undefined;
  const stack = await pending?.catch(() => undefined);
  await stack?.stop();
}

function onSignal(signal: NodeJS.Signals): void {
  wasInterrupted = true;
  console.error(`\nbench: ${signal}, stopping the local stack...`);
  void stopLive().finally(() => process.exit(130));
}

/** Runs a benchmark's main: a signal or an error stops the live stack before the process exits. */
export function runBench(main: () => Promise<void>): void {
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  main().catch(async (e) => {
    console.error(`bench: ${(e as Error).stack ?? e}`);
    await stopLive();
    process.exit(1);
  });
}

/**
 * Runs the stack part of a benchmark in a fresh temp folder and removes it after; a
 * failure keeps it for the stack logs. False if a signal stopped the run: then the
 * caller writes nothing, so a partial run cannot overwrite the last complete artifact.
 */
export async function inTempDir(fn: (tmp: string) => Promise<void>): Promise<boolean> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'fedkms-bench-'));
  try {
    await fn(tmp);
  } catch (e) {
    if (wasInterrupted) return false;
    console.error(`bench failed; stack logs kept in ${tmp}`);
    throw e;
  }
  rmSync(tmp, { recursive: true, force: true });
  return !wasInterrupted;
}

function writeFederationConfig(tmp: string, { n, t }: Federation, requestBudgetMs: number): { configFile: string; ids: string[] } {
  const ids = Array.from({ length: n }, (_, i) => `node${i + 1}`);
  const configFile = path.join(tmp, `federation-${t}-of-${n}.json`);
  writeFileSync(configFile, JSON.stringify({ threshold: t, nodes: ids.map((id) => ({ id })), requestBudgetMs }, null, 2));
  return { configFile, ids };
}

/**
 * Cold-start every node Lambda one at a time, then the coordinator, before the first
 * fan-out: cold on 2 cores, n concurrent PUTs (a key import) overrun the coordinator's
 * 2x node timeout and fail.
 */
async function warmNodes(stack: LocalStack): Promise<void> {
  for (const p of stack.proxies.values()) await fetch(`${p.url}/status`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) }).then((r) => r.text());
  await fetch(`${stack.url}/status`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) }).then((r) => r.text());
}

/** Starts a warmed-up local stack for `fed` under tmp, runs fn against it, and always stops it. */
export async function withFederationStack<T>(tmp: string, fed: Federation, requestBudgetMs: number, fn: (stack: LocalStack, ids: string[]) => Promise<T>): Promise<T> {
  const { configFile, ids } = writeFederationConfig(tmp, fed, requestBudgetMs);
  const dir = mkdtempSync(path.join(tmp, `stack-${fed.n}-`));
  console.log(`n=${fed.n} (${fed.t}-of-${fed.n}): starting the local stack in ${dir} ...`);
  const startedAt = performance.now();
  live = startLocalStack({ dir, configFile, log: (l) => console.log(`  ${l}`) });
  try {
    const stack = await live;
    console.log(`  stack up in ${(elapsed(startedAt) / 1000).toFixed(1)} s`);
    await warmNodes(stack);
    return await fn(stack, ids);
  } finally {
    await stopLive();
  }
}

// ---------------------------------------------------------------- report

/** How to run this benchmark again: `npm run <script>` if it was started that way. */
export function commandLine(npmScripts: string[], file: string): string {
  const env = process.env['BENCH_ITERATIONS'] ? `BENCH_ITERATIONS=${process.env['BENCH_ITERATIONS']} ` : '';
  const event = process.env['npm_lifecycle_event'];
  const run = event !== undefined && npmScripts.includes(event) ? `npm run ${event}` : `npx tsx ${path.relative(ROOT, process.argv[1] ?? file)}`;
  return env + run;
}

export function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${rev} (working tree modified)` : rev;
  } catch {
    return 'unknown';
  }
}

export type Machine = ReturnType<typeof machine>;

export function machine() {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  };
}

export const loadAverage1m = () => os.loadavg()[0]!;

/**
 * The report's title and run metadata, then the notes, as markdown list items.
 * `loads` are 1-minute load averages at the points `loadPoints` names.
 */
export function reportHeader(title: string, run: { date: string; began: number; command: string; machine: Machine; loadPoints: string; loads: number[] }, notes: string[]): string {
  const m = run.machine;
  // Other work on the machine (for example a concurrent test run) skews every number here.
  const busy = Math.max(...run.loads) > m.cores ? ' -- above the core count: other processes competed for the CPU, numbers are skewed' : '';
  return [
    `## ${title}`,
    '',
    `- date: ${run.date}`,
    `- machine: node ${m.node}, ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}`,
    `- revision: ${gitRevision()}`,
    `- command: \`${run.command}\``,
    `- total run time: ${(elapsed(run.began) / 1000).toFixed(0)} s`,
    `- load average (1 min) at ${run.loadPoints}: ${run.loads.join(' / ')}${busy}`,
    ...notes.map((n) => `- ${n}`),
  ].join('\n');
}

export const fmt = (x: number | null) => (x === null ? '-' : x.toFixed(1));

export const describeFailures = (f: LatencyStats['failures']) => Object.entries(f).map(([why, x]) => `${x.count}x ${why} (p50 ${fmt(x.p50Ms)} ms)`).join('; ') || '-';

/** A markdown table; 'r' columns (numbers) are right-aligned. */
export function markdownTable(columns: [title: string, align: 'l' | 'r'][], rows: (string | number)[][]): string {
  return [
    `| ${columns.map(([title]) => title).join(' | ')} |`,
    `|${columns.map(([, align]) => (align === 'r' ? '---:' : '---')).join('|')}|`,
    ...rows.map((cells) => `| ${cells.join(' | ')} |`),
  ].join('\n');
}

/** Writes a report to artifacts/ as indented JSON; returns its path relative to the repo. */
export function writeJsonArtifact(name: string, value: unknown): string {
  return writeArtifact(name, `${JSON.stringify(value, null, 2)}\n`);
}

export function writeArtifact(name: string, text: string): string {
  const artifacts = path.join(ROOT, 'artifacts');
  mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, name);
  writeFileSync(file, text);
  return path.relative(ROOT, file);
}

// ---------------------------------------------------------------- CPU by process

/** CPU time (user + system, ms) so far of the stack's processes and of this one; Linux /proc only. */
export interface CpuSnapshot {
  offline: number;
  storage: number;
  bench: number;
}

const CLOCK_TICKS = 100; // USER_HZ: what /proc counts in on Linux

function procCpuMs(pid: number): number {
  // Fields 14 and 15 of /proc/<pid>/stat (utime, stime) in clock ticks; the name field may hold spaces, so split after ')'.
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
}

export function cpuSnapshot(stack: LocalStack): CpuSnapshot | undefined {
  try {
    const own = process.cpuUsage();
    const sum = (pids: number[]) => pids.reduce((t, p) => t + procCpuMs(p), 0);
    return { offline: sum(stack.pids.offline), storage: sum(stack.pids.storage), bench: (own.user + own.system) / 1000 };
  } catch {
    return undefined; // not Linux, or a process is gone
  }
}

/** CPU per operation between two snapshots: where the wall time of a local run goes. */
export function cpuPerOperation(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined, operations: number): CpuSnapshot | undefined {
  if (!before || !after || operations <= 0) return undefined;
  const per = (k: keyof CpuSnapshot) => round1((after[k] - before[k]) / operations);
  return { offline: per('offline'), storage: per('storage'), bench: per('bench') };
}
