/**
 * `npm run bench:load` (issue #11): the default federation (fedkms.config.json) under load,
 * through `sls offline`, for three kinds of operation:
 *   - server-side reconstruction of `example` (`POST /keys/example/reconstruct`, empty body);
 *   - end-to-end reconstruction of `example` (lib/client/reconstruct.ts reconstructEndToEnd);
 *   - signing with a DKG key (`POST /keys/{keyId}/sign`, two rounds: no preprocessing).
 * Per kind: closed-loop load at each concurrency level (each worker sends its next operation
 * when the previous one answered), one open-loop run at a fixed arrival rate above capacity,
 * then a wave of concurrent operations with the SDK's retries. Per run: outcomes, goodput,
 * latency, CPU per operation by process (/proc), storage requests (the S3/DynamoDB servers'
 * counters), Lambda invocations and durations (offline.log), and a cost model at AWS list prices.
 * Env:
 *   BENCH_LEVELS       closed-loop concurrencies, default 1,4,16,64,200
 *   BENCH_OPS          minimum operations per level, default 36; a level runs max(BENCH_OPS, 2 x concurrency)
 *                      operations and at least BENCH_LEVEL_S seconds (default 8), after an uncounted warm-up of
 *                      4 x min(concurrency, 12) operations at min(concurrency, 12)
 *   BENCH_KINDS        default server,e2e,sign
 *   BENCH_OPEN_OPS     operations of the open-loop run, default 100 (0: no open-loop run)
 *   BENCH_OPEN_RATE    its arrivals per second, default 2 x the goodput of the lowest level
 *   BENCH_WAVE         operations of the retry wave, default 200 (0: no wave)
 *   BENCH_DEADLINE_MS  each operation's deadline without retries, default 30000
 *   BENCH_WAVE_DEADLINE_MS  each wave operation's deadline, retries included, default 120000
 *   BENCH_WARMUP       uncounted sequential operations before each kind, default 10
 *   BENCH_HONOR_RETRY_AFTER  1 (default): a closed-loop worker whose operation was refused waits its
 *                      Retry-After (plus up to half again, jitter) before sending the next one (the refused
 *                      operation itself is not retried); 0: it sends the next one at once
 *   BENCH_QUIET_WAIT_S on a shared machine: before each run, wait up to this long for other processes
 *                      to use under 10% of it, and run again once a run they used over 15% of; default 0 (off)
 *   BENCH_BASELINE     a previous run's JSON to compare CPU per operation with, default artifacts/bench-load-baseline.json
 * Writes the report to stdout and to artifacts/bench-load.md, and JSON to artifacts/bench-load.json.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { FedkmsClient, type ApiAnswer } from '../lib/client/api.js';
import { reconstructEndToEnd } from '../lib/client/reconstruct.js';
import { fromHex, toB64, toHex, utf8 } from '../lib/encoding.js';
import { ROOT, type LocalStack } from '../tools/local-stack.js';
import { commandLine, cpuPerOperation, cpuSnapshot, type CpuSnapshot, elapsed, fmt, gitRevision, inTempDir, interrupted, latencyStats, loadAverage1m, machine, markdownTable, reportHeader, round1, round2, runBench, withFederationStack, writeArtifact, writeJsonArtifact, type LatencyStats, type Outcome } from './common.js';

const EXAMPLE = { keyId: 'example', secretHex: 'A94F3D82C1B7E6F9' } as const;
const SIGN_KEY_ID = 'bench-load-sign';
/** DKG attempts for the signing key, each with a new keyId. */
const SIGN_KEY_ATTEMPTS = 3;
/** Setup calls (import, DKG) are not measured: a generous deadline. */
const SETUP_TIMEOUT_MS = 60_000;
/** Other processes' share of the machine: below QUIET a run may start, above SKEWED it is run again (BENCH_QUIET_WAIT_S). */
const QUIET = 0.1;
const SKEWED = 0.15;
/** After each run: stragglers (node calls the coordinator no longer waits for) finish and log. */
const SETTLE_MS = 1000;

/**
 * AWS list prices, us-east-1, as known on 2026-12-01; not fetched live. Dollars per request
 * (or per GB-second). Lambda: arm64, as serverless.yml deploys it, at provider.memorySize.
 */
const PRICES = {
  apiGatewayHttpRequest: 1.0 / 1e6,
  lambdaRequest: 0.2 / 1e6,
  lambdaArm64GbSecond: 0.0000133334,
  lambdaMemoryGb: 512 / 1024,
  s3GetHead: 0.0004 / 1000,
  s3PutCopyPostList: 0.005 / 1000,
  s3Delete: 0,
  dynamoReadUnit: 0.125 / 1e6,
  dynamoWriteUnit: 0.625 / 1e6,
  kmsSymmetric: 0.03 / 10_000,
  kmsAsymmetricSign: 0.15 / 10_000,
} as const;

/** DynamoDB operations by what on-demand bills them as; anything else (DescribeTable...) is control plane. */
const DYNAMO_READS = new Set(['GetItem', 'BatchGetItem', 'Query', 'Scan', 'TransactGetItems']);
const DYNAMO_WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);

// ---------------------------------------------------------------- settings

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

function listFromEnv(name: string, fallback: string): string[] {
  return (process.env[name] || fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

const KIND_KEYS = ['server', 'e2e', 'sign'] as const;
type KindKey = (typeof KIND_KEYS)[number];

function settings() {
  // Ascending: the first level is the one every other is compared with.
  const levels = listFromEnv('BENCH_LEVELS', '1,4,16,64,200').map(Number).sort((a, b) => a - b);
  if (levels.some((c) => !Number.isInteger(c) || c < 1)) throw new Error('BENCH_LEVELS must be positive integers, e.g. 1,4,16');
  const kinds = listFromEnv('BENCH_KINDS', KIND_KEYS.join(','));
  const unknown = kinds.filter((k) => !(KIND_KEYS as readonly string[]).includes(k));
  if (unknown.length) throw new Error(`BENCH_KINDS: unknown ${unknown.join(', ')} (known: ${KIND_KEYS.join(', ')})`);
  const openRate = process.env['BENCH_OPEN_RATE'] ? Number(process.env['BENCH_OPEN_RATE']) : undefined;
  if (openRate !== undefined && !(openRate > 0)) throw new Error('BENCH_OPEN_RATE must be a positive number of operations per second');
  return {
    levels,
    minOps: intFromEnv('BENCH_OPS', 36),
    levelMs: intFromEnv('BENCH_LEVEL_S', 8) * 1000,
    kinds: kinds as KindKey[],
    openOps: intFromEnv('BENCH_OPEN_OPS', 100),
    openRate,
    waveOps: intFromEnv('BENCH_WAVE', 200),
    deadlineMs: intFromEnv('BENCH_DEADLINE_MS', 30_000),
    waveDeadlineMs: intFromEnv('BENCH_WAVE_DEADLINE_MS', 120_000),
    warmup: intFromEnv('BENCH_WARMUP', 10),
    quietWaitS: intFromEnv('BENCH_QUIET_WAIT_S', 0),
    honorRetryAfter: intFromEnv('BENCH_HONOR_RETRY_AFTER', 1) > 0,
    baselineFile: process.env['BENCH_BASELINE'] || path.join(ROOT, 'artifacts/bench-load-baseline.json'),
  };
}

type Settings = ReturnType<typeof settings>;

const opsAtLevel = (s: Settings, concurrency: number) => Math.max(s.minOps, 2 * concurrency);

// ---------------------------------------------------------------- one operation

/** What the client saw of the HTTP requests of one operation (the SDK's retries each go through fetch). */
interface Trace {
  requests: number;
  lastStatus?: number;
  lastRetryAfter?: string;
  /** Name or code of the last request's network error (TimeoutError: the deadline passed). */
  lastError?: string;
}

function tracedFetch(trace: Trace): typeof fetch {
  return async (input, init) => {
    trace.requests++;
    trace.lastError = undefined;
    try {
      const res = await fetch(input, init);
      trace.lastStatus = res.status;
      trace.lastRetryAfter = res.headers.get('retry-after') ?? undefined;
      return res;
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      trace.lastError = err.cause?.code ?? err.name;
      throw e;
    }
  };
}

type CallOpts = NonNullable<Parameters<FedkmsClient['call']>[3]>;

/**
 * The SDK with one deadline for the whole operation: every call (reconstructEndToEnd may
 * make several) gets what is left of it, and retries are on or off explicitly.
 */
class DeadlineClient extends FedkmsClient {
  constructor(stack: LocalStack, trace: Trace, private readonly deadlineAt: number, private readonly retry: boolean, private readonly idempotent: boolean) {
    super(stack.url, stack.admin, tracedFetch(trace));
  }

  override call<T = any>(method: string, p: string, body?: unknown, opts: CallOpts = {}): Promise<ApiAnswer<T>> {
    const timeoutMs = Math.max(1, Math.round(this.deadlineAt - performance.now()));
    // `retry` and `idempotent` are ignored by an SDK without retries (before issue #11).
    return super.call<T>(method, p, body, { ...opts, timeoutMs, retry: this.retry, idempotent: this.idempotent } as CallOpts);
  }
}

type Verdict = 'ok' | 'refused' | 'failed' | 'unanswered';

interface LoadOutcome extends Outcome {
  verdict: Verdict;
  /** HTTP requests the operation sent (retries included). */
  requests: number;
  /** The SDK's own `attempts` of the last call, when it reports one. */
  sdkAttempts?: number;
  /** A refusal's Retry-After, seconds (an HTTP date is read as 1 s). */
  retryAfterS?: number;
  /** A signature to check after the run (outside the CPU window). */
  signed?: { message: Uint8Array; signatureHex: string };
}

/** What one kind's operation returned: the last answer, and whether it carried the right result. */
interface Attempt {
  answer: ApiAnswer;
  ok: boolean;
  /** Why a 200 is not a success. */
  wrong?: string;
  signed?: LoadOutcome['signed'];
}

interface Kind {
  key: KindKey;
  label: string;
  /** AWS KMS's closest operation, for the cost model. */
  kms: { name: string; price: number };
  /** Reconstruction changes nothing: the wave may retry it after a lost connection too. */
  idempotent: boolean;
  once(client: FedkmsClient, seq: number): Promise<Attempt>;
}

function errorCode(body: unknown): string {
  const b = body as { error?: { code?: string }; errorMessage?: string } | undefined;
  // sls offline answers a timed-out function with 200 {"errorMessage":"[504] - Lambda timeout."}.
  return b?.error?.code ?? (b?.errorMessage ? `errorMessage ${JSON.stringify(b.errorMessage)}` : 'no error code');
}

function retryAfterOf(answer: ApiAnswer, trace: Trace): string | undefined {
  return (answer as { retryAfter?: string }).retryAfter ?? (trace.lastStatus === answer.status ? trace.lastRetryAfter : undefined);
}

function judgeAnswer(a: Attempt, trace: Trace, ms: number): LoadOutcome {
  const sdkAttempts = (a.answer as { attempts?: number }).attempts;
  const base = { ms, requests: trace.requests, ...(sdkAttempts !== undefined ? { sdkAttempts } : {}) };
  if (a.ok) return { ...base, ok: true, verdict: 'ok', ...(a.signed ? { signed: a.signed } : {}) };
  const { status } = a.answer;
  const what = a.wrong ?? errorCode(a.answer.body);
  const retryAfter = retryAfterOf(a.answer, trace);
  if ((status === 429 || status === 503) && retryAfter !== undefined) {
    const retryAfterS = /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) : 1;
    return { ...base, ok: false, verdict: 'refused', failure: `refused ${status} ${what}`, retryAfterS };
  }
  const noRetryAfter = status === 429 || status === 503 ? ' (no Retry-After)' : '';
  return { ...base, ok: false, verdict: 'failed', failure: `${status} ${what}${noRetryAfter}` };
}

function judgeThrown(e: unknown, trace: Trace, ms: number): LoadOutcome {
  const err = e as Error & { reason?: string };
  const cause = trace.lastError ?? err.name;
  const base = { ok: false, ms, requests: trace.requests };
  // The client aborted at its deadline: the federation never answered.
  if (cause === 'TimeoutError' || cause === 'AbortError' || err.reason === 'deadline') return { ...base, verdict: 'unanswered', failure: 'unanswered at the deadline' };
  return { ...base, verdict: 'failed', failure: `client ${cause}${trace.lastError ? '' : `: ${err.message}`}` };
}

async function runOp(stack: LocalStack, kind: Kind, seq: number, deadlineMs: number, retry: boolean): Promise<LoadOutcome> {
  const trace: Trace = { requests: 0 };
  const started = performance.now();
  const client = new DeadlineClient(stack, trace, started + deadlineMs, retry, kind.idempotent);
  try {
    const a = await kind.once(client, seq);
    return judgeAnswer(a, trace, elapsed(started));
  } catch (e) {
    return judgeThrown(e, trace, elapsed(started));
  }
}

// ---------------------------------------------------------------- the three kinds

function serverSide(): Kind {
  return {
    key: 'server',
    label: 'server-side reconstruction',
    kms: { name: 'Decrypt (symmetric)', price: PRICES.kmsSymmetric },
    idempotent: true,
    once: async (client) => {
      const answer = await client.call('POST', `/keys/${EXAMPLE.keyId}/reconstruct`);
      const hex = (answer.body as { secret?: { hex?: string } } | undefined)?.secret?.hex;
      const ok = answer.status === 200 && hex?.toLowerCase() === EXAMPLE.secretHex.toLowerCase();
      return { answer, ok, ...(answer.status === 200 && !ok ? { wrong: hex ? 'wrong secret' : errorCode(answer.body) } : {}) };
    },
  };
}

function endToEnd(): Kind {
  return {
    key: 'e2e',
    label: 'end-to-end reconstruction',
    kms: { name: 'Decrypt (symmetric)', price: PRICES.kmsSymmetric },
    idempotent: true,
    once: async (client) => {
      const r = await reconstructEndToEnd(client, EXAMPLE.keyId);
      if (!r.ok) return { answer: r.answer, ok: false, ...(r.answer.status === 200 ? { wrong: r.rejected.length ? `rejected ${r.rejected.map((x) => x.nodeId).join(',')}` : errorCode(r.answer.body) } : {}) };
      const ok = toHex(r.secret) === EXAMPLE.secretHex.toLowerCase();
      r.secret.fill(0);
      return { answer: r.answer, ok, ...(ok ? {} : { wrong: 'wrong secret' }) };
    },
  };
}

function signing(keyId: string): Kind {
  return {
    key: 'sign',
    label: 'signing (DKG key, two rounds)',
    kms: { name: 'Sign (asymmetric)', price: PRICES.kmsAsymmetricSign },
    idempotent: false,
    once: async (client, seq) => {
      const message = utf8(`fedkms load bench #${seq}`);
      const answer = await client.call('POST', `/keys/${keyId}/sign`, { message: toB64(message) });
      const signatureHex = (answer.body as { signature?: { hex?: string } } | undefined)?.signature?.hex;
      if (answer.status === 200 && signatureHex) return { answer, ok: true, signed: { message, signatureHex } };
      return { answer, ok: false, ...(answer.status === 200 ? { wrong: errorCode(answer.body) } : {}) };
    },
  };
}

/** Signatures are checked after the run, so the check's CPU is not charged to the operation. */
function checkSignatures(outcomes: LoadOutcome[], groupKey: Uint8Array | undefined): LoadOutcome[] {
  return outcomes.map((o) => {
    if (!o.signed || !groupKey) return o;
    const { signed, ...rest } = o;
    return ed25519.verify(fromHex(signed.signatureHex), signed.message, groupKey) ? rest : { ...rest, ok: false, verdict: 'failed', failure: '200 invalid signature' };
  });
}

// ---------------------------------------------------------------- setup

async function setupCall(stack: LocalStack, method: string, p: string, body: unknown): Promise<ApiAnswer> {
  return new FedkmsClient(stack.url, stack.admin).call(method, p, body, { timeoutMs: SETUP_TIMEOUT_MS });
}

async function importExample(stack: LocalStack): Promise<void> {
  const res = await setupCall(stack, 'POST', '/keys', { keyId: EXAMPLE.keyId, secretHex: EXAMPLE.secretHex, policy: { serverSideCombine: true } });
  if (res.status !== 201) throw new Error(`importing ${EXAMPLE.keyId} failed: ${res.status} ${JSON.stringify(res.body)}`);
}

/** A DKG key; a new keyId per attempt, so a failed DKG cannot block the next. */
async function createSignKey(stack: LocalStack): Promise<{ keyId: string; groupKey: Uint8Array }> {
  const failures: string[] = [];
  for (let attempt = 1; attempt <= SIGN_KEY_ATTEMPTS; attempt++) {
    const keyId = attempt === 1 ? SIGN_KEY_ID : `${SIGN_KEY_ID}-${attempt}`;
    const res = await setupCall(stack, 'POST', '/keys', { keyId, type: 'ed25519' });
    const hex = (res.body as { key?: { groupPublicKey?: string } } | undefined)?.key?.groupPublicKey;
    if (res.status === 201 && hex) return { keyId, groupKey: fromHex(hex) };
    failures.push(`${keyId}: ${res.status} ${errorCode(res.body)}`);
  }
  throw new Error(`DKG of the signing key failed: ${failures.join('; ')}`);
}

// ---------------------------------------------------------------- load shapes

/** Concurrency of a level's uncounted warm-up: enough to start every worker the concurrency limits allow. */
const WARM_LEVEL_MAX = 12;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `concurrency` workers, each sending its next operation when the previous one answered;
 * with `honorRetryAfter`, after a refusal only once its Retry-After has passed.
 */
async function closedLoop(ops: number, concurrency: number, honorRetryAfter: boolean, op: () => Promise<LoadOutcome>, forMs = 0): Promise<LoadOutcome[]> {
  const out: LoadOutcome[] = [];
  let sent = 0;
  // With `forMs`, workers keep sending until that much time has passed, however many operations that takes.
  const until = performance.now() + forMs;
  const more = () => sent < ops || performance.now() < until;
  const worker = async () => {
    while (more()) {
      sent++;
      const o = await op();
      out.push(o);
      // A well-behaved client: waits at least Retry-After, with jitter so refused clients do not all return at once.
      if (honorRetryAfter && o.retryAfterS !== undefined && more()) await sleep(o.retryAfterS * 1000 * (1 + Math.random() / 2));
    }
  };
  await Promise.all(Array.from({ length: forMs > 0 ? concurrency : Math.min(concurrency, ops) }, worker));
  return out;
}

/** Operations sent at a fixed rate whatever the answers; latency counts from each actual send. */
async function openLoop(ops: number, ratePerS: number, op: () => Promise<LoadOutcome>): Promise<LoadOutcome[]> {
  const t0 = performance.now();
  const pending: Promise<LoadOutcome>[] = [];
  for (let i = 0; i < ops; i++) {
    const wait = t0 + (i * 1000) / ratePerS - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(op());
  }
  return Promise.all(pending);
}

// ---------------------------------------------------------------- what a run cost

/** Lambda invocations in a window of offline.log, by function. */
interface LambdaUsage {
  byFunction: Record<string, { invocations: number; durationMs: number; billedMs: number }>;
  /** Invocations sls offline stopped at the function timeout (they log no duration). */
  timeouts: number;
}

const ANSI = /\u001b\[[0-9;]*m/g;
const INVOCATION = /\(λ: ([^)]+)\) RequestId: \S+\s+Duration: ([\d.]+) ms\s+Billed Duration: (\d+) ms/g;

function readLogSince(file: string, offset: number): string {
  const size = statSync(file).size;
  const buf = Buffer.alloc(Math.max(0, size - offset));
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, buf.length, offset);
  } finally {
    closeSync(fd);
  }
  return buf.toString('utf8').replace(ANSI, '');
}

function lambdaUsage(log: string): LambdaUsage {
  const byFunction: LambdaUsage['byFunction'] = {};
  for (const m of log.matchAll(INVOCATION)) {
    const f = (byFunction[m[1]!] ??= { invocations: 0, durationMs: 0, billedMs: 0 });
    f.invocations++;
    f.durationMs += Number(m[2]);
    f.billedMs += Number(m[3]);
  }
  return { byFunction, timeouts: log.split('Lambda timeout').length - 1 };
}

/** Storage requests per operation, by operation name ("s3:GET", "dynamodb:PutItem"...). */
function storageDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([op, n]) => [op, n - (before[op] ?? 0)]).filter(([, n]) => (n as number) > 0));
}

/** CPU ms the whole machine has been busy (all cores), from /proc/stat; undefined off Linux. */
function machineBusyMs(): number | undefined {
  try {
    // cpu  user nice system idle iowait irq softirq steal ... in USER_HZ (100/s)
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) * 10;
  } catch {
    return undefined;
  }
}

/** Admitted/refused counters of the local front door (tools/admission.ts), by function; absent before issue #11. */
type AdmissionCounts = Record<string, { admitted: number; refused: number }>;

function admissionCounts(stack: LocalStack): AdmissionCounts | undefined {
  type Counter = { admitted: number; refused: number };
  const a = (stack as unknown as { admissions?: { coordinator: Counter; dashboard: Counter; nodes: Map<string, Counter> } }).admissions;
  if (!a) return undefined;
  const all: [string, Counter][] = [['reconstruct', a.coordinator], ['dashboard', a.dashboard], ...a.nodes];
  return Object.fromEntries(all.map(([fn, c]) => [fn, { admitted: c.admitted, refused: c.refused }]));
}

function admissionDelta(before: AdmissionCounts | undefined, after: AdmissionCounts | undefined): AdmissionCounts | undefined {
  if (!before || !after) return undefined;
  return Object.fromEntries(Object.entries(after).map(([fn, c]) => [fn, { admitted: c.admitted - (before[fn]?.admitted ?? 0), refused: c.refused - (before[fn]?.refused ?? 0) }]));
}

interface Window {
  admissions0: AdmissionCounts | undefined;
  cpu0: CpuSnapshot | undefined;
  machine0: number | undefined;
  at: number;
  storage0: Record<string, number>;
  logOffset: number;
}

async function openWindow(stack: LocalStack): Promise<Window> {
  return { admissions0: admissionCounts(stack), cpu0: cpuSnapshot(stack), machine0: machineBusyMs(), at: performance.now(), storage0: await stack.storageStats(), logOffset: statSync(stack.logFile).size };
}

/** Share of the machine (all cores) that processes other than the stack and this one used: the run's skew. */
function otherShare(w: Window, cpu1: CpuSnapshot | undefined, machine1: number | undefined, cores: number): number | null {
  if (!w.cpu0 || !cpu1 || w.machine0 === undefined || machine1 === undefined) return null;
  const ours = cpu1.offline - w.cpu0.offline + (cpu1.storage - w.cpu0.storage) + (cpu1.bench - w.cpu0.bench);
  const capacity = elapsed(w.at) * cores;
  return round2(Math.max(0, machine1 - w.machine0 - ours) / capacity);
}

interface Costs {
  /** CPU ms per successful operation by process, and their sum. */
  cpuMsPerOp: (CpuSnapshot & { total: number }) | undefined;
  /** Storage requests per successful operation. */
  storagePerOp: Record<string, number>;
  /** Lambda invocations and billed ms per successful operation, by function. */
  lambdaPerOp: Record<string, { invocations: number; meanDurationMs: number; billedMs: number }>;
  lambdaTimeouts: number;
  /** The local front door's admitted and refused requests by function, run totals (where the stack has one). */
  admissions?: AdmissionCounts;
  /** Share of the machine used by other processes during the run (0.5: one of two cores). */
  otherCpuShare: number | null;
  totals: { storage: Record<string, number>; lambda: LambdaUsage };
}

/** What a run cost, per successful operation (so the waste of refused and failed ones counts too). */
async function closeWindow(stack: LocalStack, w: Window, succeeded: number): Promise<Costs> {
  await sleep(SETTLE_MS);
  const cpu1 = cpuSnapshot(stack);
  const cpu = cpuPerOperation(w.cpu0, cpu1, succeeded);
  const otherCpuShare = otherShare(w, cpu1, machineBusyMs(), os.cpus().length);
  const storage = storageDelta(w.storage0, await stack.storageStats());
  const lambda = lambdaUsage(readLogSince(stack.logFile, w.logOffset));
  const admissions = admissionDelta(w.admissions0, admissionCounts(stack));
  const per = (x: number) => round2(x / succeeded);
  return {
    cpuMsPerOp: cpu ? { ...cpu, total: round1(cpu.offline + cpu.storage + cpu.bench) } : undefined,
    // No successes: nothing to divide by; the run's totals stay in `totals`.
    storagePerOp: !succeeded ? {} : Object.fromEntries(Object.entries(storage).map(([op, n]) => [op, per(n)])),
    lambdaPerOp: !succeeded ? {} : Object.fromEntries(
      Object.entries(lambda.byFunction).map(([fn, u]) => [fn, { invocations: per(u.invocations), meanDurationMs: round1(u.durationMs / u.invocations), billedMs: per(u.billedMs) }]),
    ),
    lambdaTimeouts: lambda.timeouts,
    ...(admissions ? { admissions } : {}),
    otherCpuShare,
    totals: { storage, lambda },
  };
}

/** Other processes' share of the machine over the next `ms`, the stack idle. */
async function otherShareOver(stack: LocalStack, ms: number): Promise<number | null> {
  const w = { cpu0: cpuSnapshot(stack), machine0: machineBusyMs(), at: performance.now() };
  await sleep(ms);
  return otherShare({ ...w, admissions0: undefined, storage0: {}, logOffset: 0 }, cpuSnapshot(stack), machineBusyMs(), os.cpus().length);
}

/** On a shared machine, wait (at most BENCH_QUIET_WAIT_S) until other processes leave it nearly idle. */
async function awaitQuiet(stack: LocalStack, s: Settings): Promise<void> {
  const since = performance.now();
  let told = -Infinity;
  while (elapsed(since) < s.quietWaitS * 1000) {
    const share = await otherShareOver(stack, 2000);
    if (share === null || share < QUIET) return;
    if (elapsed(told) < 30_000) continue;
    told = performance.now();
    console.log(`  other processes use ${share} of the machine: waiting for quiet (${Math.round(elapsed(since) / 1000)} s so far) ...`);
  }
}

// ---------------------------------------------------------------- runs

type Mode = 'closed' | 'open' | 'wave';

interface Run extends Omit<LatencyStats, 'iterations' | 'successes'>, Costs {
  kind: KindKey;
  mode: Mode;
  concurrency: number;
  /** Open loop: arrivals per second. */
  ratePerS?: number;
  offered: number;
  succeeded: number;
  refused: number;
  failed: number;
  unanswered: number;
  /** 429/503 without Retry-After (counted in `failed`): the goal is none. */
  refusalsWithoutRetryAfter: number;
  wallS: number;
  goodputPerS: number;
  /** Operations by HTTP requests sent (1: no retry). */
  requestsPerOp: Record<string, number>;
  /** Operations whose answer carried the SDK's `attempts`. */
  withSdkAttempts: number;
  /** Other processes' share of the machine during a first try that was discarded for it (BENCH_QUIET_WAIT_S). */
  rerunAfterSkew?: number;
}

function histogram(xs: number[]): Record<string, number> {
  const h: Record<string, number> = {};
  for (const x of [...xs].sort((a, b) => a - b)) h[String(x)] = (h[String(x)] ?? 0) + 1;
  return h;
}

function summarizeRun(base: Pick<Run, 'kind' | 'mode' | 'concurrency' | 'ratePerS'>, outcomes: LoadOutcome[], wallMs: number, costs: Costs): Run {
  const { iterations, successes, ...latency } = latencyStats(outcomes);
  const count = (v: Verdict) => outcomes.filter((o) => o.verdict === v).length;
  return {
    ...base,
    offered: iterations,
    succeeded: successes,
    refused: count('refused'),
    failed: count('failed'),
    unanswered: count('unanswered'),
    refusalsWithoutRetryAfter: outcomes.filter((o) => o.failure?.endsWith('(no Retry-After)')).length,
    wallS: round2(wallMs / 1000),
    goodputPerS: round2(successes / (wallMs / 1000)),
    requestsPerOp: histogram(outcomes.map((o) => o.requests)),
    withSdkAttempts: outcomes.filter((o) => o.sdkAttempts !== undefined).length,
    ...latency,
    ...costs,
  };
}

const describeRun = (r: Run) => `${r.succeeded}/${r.offered} ok, ${r.refused} refused, ${r.failed} failed, ${r.unanswered} unanswered, ${r.goodputPerS}/s, p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms, CPU ${r.cpuMsPerOp ? `${r.cpuMsPerOp.total} ms/op` : 'n/a'}`;

/** One run to measure: which kind, what load (`drive` sends it), and the key its signatures verify under. */
interface RunSpec {
  kind: Kind;
  base: Pick<Run, 'mode' | 'concurrency' | 'ratePerS'>;
  groupKey: Uint8Array | undefined;
  drive: () => Promise<LoadOutcome[]>;
}

/** One measured run: its outcomes (signatures checked after the window), what it cost, a progress line. */
async function measureRun(stack: LocalStack, { kind, base, groupKey, drive }: RunSpec): Promise<Run> {
  const w = await openWindow(stack);
  const started = performance.now();
  const raw = await drive();
  const wallMs = elapsed(started);
  const outcomes = checkSignatures(raw, groupKey);
  const costs = await closeWindow(stack, w, outcomes.filter((o) => o.ok).length);
  const run = summarizeRun({ kind: kind.key, ...base }, outcomes, wallMs, costs);
  console.log(`  ${kind.key} ${base.mode} ${base.mode === 'open' ? `${base.ratePerS}/s` : `c=${base.concurrency}`}: ${describeRun(run)}`);
  return run;
}

/** measureRun after waiting for a quiet machine; once more if others used it heavily meanwhile (BENCH_QUIET_WAIT_S). */
async function measureQuietly(stack: LocalStack, s: Settings, spec: RunSpec): Promise<Run> {
  await awaitQuiet(stack, s);
  const run = await measureRun(stack, spec);
  const skew = run.otherCpuShare ?? 0;
  if (s.quietWaitS === 0 || skew <= SKEWED) return run;
  console.log(`  other processes used ${skew} of the machine during that run: running it again`);
  await awaitQuiet(stack, s);
  return { ...(await measureRun(stack, spec)), rerunAfterSkew: skew };
}

/** Every run of one kind: warm-ups, the closed-loop levels, the open-loop run, the retry wave. */
async function benchKind(stack: LocalStack, s: Settings, kind: Kind, groupKey: Uint8Array | undefined, seq: { next: number }): Promise<Run[]> {
  const op = (retry: boolean, deadlineMs: number) => () => runOp(stack, kind, seq.next++, deadlineMs, retry);
  const noRetry = op(false, s.deadlineMs);
  console.log(`${kind.label}: ${s.warmup} warm-up(s) ...`);
  for (let i = 0; i < s.warmup; i++) await noRetry();
  const runs: Run[] = [];
  for (const c of s.levels) {
    if (interrupted()) return runs;
    // Uncounted: start the extra workers this level needs (at most each function's concurrency
    // limit), so a level measures steady load, not sls offline's one-time cold starts.
    const w = Math.min(c, WARM_LEVEL_MAX);
    if (w > 1) await closedLoop(4 * w, w, true, noRetry);
    runs.push(await measureQuietly(stack, s, { kind, groupKey, base: { mode: 'closed', concurrency: c }, drive: () => closedLoop(opsAtLevel(s, c), c, s.honorRetryAfter, noRetry, s.levelMs) }));
  }
  const lowest = runs[0];
  const rate = s.openRate ?? (lowest && lowest.goodputPerS > 0 ? round2(2 * lowest.goodputPerS) : undefined);
  if (s.openOps > 0 && rate !== undefined && !interrupted()) {
    runs.push(await measureQuietly(stack, s, { kind, groupKey, base: { mode: 'open', concurrency: s.openOps, ratePerS: rate }, drive: () => openLoop(s.openOps, rate, noRetry) }));
  }
  if (s.waveOps > 0 && !interrupted()) {
    const retrying = op(true, s.waveDeadlineMs);
    runs.push(await measureQuietly(stack, s, { kind, groupKey, base: { mode: 'wave', concurrency: s.waveOps }, drive: () => Promise.all(Array.from({ length: s.waveOps }, retrying)) }));
  }
  return runs;
}

// ---------------------------------------------------------------- derived figures

interface Capacity {
  kind: KindKey;
  /** CPU ms per operation at the lowest level, summed over the processes. */
  cpuMsPerOp: number | null;
  /** Cores / CPU-seconds per operation: the most this machine could do. */
  machineLimitPerS: number | null;
  lowestGoodputPerS: number;
  best: { concurrency: number; goodputPerS: number } | null;
  bestOfLimit: number | null;
  bestOverLowest: number | null;
  /** Closed levels whose goodput is below the lowest level's. */
  collapsedAt: number[];
}

function capacity(kind: KindKey, runs: Run[], cores: number): Capacity {
  const closed = runs.filter((r) => r.kind === kind && r.mode === 'closed');
  const lowest = closed[0];
  const best = closed.reduce<Run | undefined>((b, r) => (!b || r.goodputPerS > b.goodputPerS ? r : b), undefined);
  const cpu = lowest?.cpuMsPerOp?.total ?? null;
  const limit = cpu ? round2(cores / (cpu / 1000)) : null;
  const g1 = lowest?.goodputPerS ?? 0;
  return {
    kind,
    cpuMsPerOp: cpu,
    machineLimitPerS: limit,
    lowestGoodputPerS: g1,
    best: best ? { concurrency: best.concurrency, goodputPerS: best.goodputPerS } : null,
    bestOfLimit: best && limit ? round2(best.goodputPerS / limit) : null,
    bestOverLowest: best && g1 > 0 ? round2(best.goodputPerS / g1) : null,
    collapsedAt: closed.filter((r) => r.goodputPerS < g1).map((r) => r.concurrency),
  };
}

/** Dollars per million operations, by component, from one run's per-operation figures. */
function costPerMillion(r: Run): Record<string, number> {
  const lambda = Object.values(r.lambdaPerOp);
  const invocations = lambda.reduce((a, f) => a + f.invocations, 0);
  const gbSeconds = (lambda.reduce((a, f) => a + f.billedMs, 0) / 1000) * PRICES.lambdaMemoryGb;
  const s3 = (op: string) => r.storagePerOp[`s3:${op}`] ?? 0;
  const s3Other = Object.entries(r.storagePerOp).filter(([op]) => op.startsWith('s3:') && !['s3:GET', 's3:HEAD', 's3:DELETE'].includes(op)).reduce((a, [, n]) => a + n, 0);
  const dynamo = (set: Set<string>) => Object.entries(r.storagePerOp).filter(([op]) => op.startsWith('dynamodb:') && set.has(op.slice(9))).reduce((a, [, n]) => a + n, 0);
  const c = {
    apiGateway: invocations * PRICES.apiGatewayHttpRequest,
    lambdaRequests: invocations * PRICES.lambdaRequest,
    lambdaGbSeconds: gbSeconds * PRICES.lambdaArm64GbSecond,
    s3: (s3('GET') + s3('HEAD')) * PRICES.s3GetHead + s3Other * PRICES.s3PutCopyPostList + s3('DELETE') * PRICES.s3Delete,
    dynamoDb: dynamo(DYNAMO_READS) * PRICES.dynamoReadUnit + dynamo(DYNAMO_WRITES) * PRICES.dynamoWriteUnit,
  };
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  return Object.fromEntries(Object.entries({ ...c, total }).map(([k, v]) => [k, round2(v * 1e6)]));
}

interface Baseline {
  revision?: string;
  capacity?: Capacity[];
}

function loadBaseline(file: string): Baseline | undefined {
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as Baseline;
}

// ---------------------------------------------------------------- report

const fmtRate = (r: Run) => (r.mode === 'open' ? `open ${r.ratePerS}/s` : r.mode === 'wave' ? `wave ${r.concurrency} (retries)` : `closed c=${r.concurrency}`);
const num = (x: number | null | undefined) => (x === null || x === undefined || Number.isNaN(x) ? '-' : String(x));
const failureCodes = (r: Run) =>
  Object.entries(r.failures)
    .map(([why, f]) => `${f.count}x ${why} (p50 ${fmt(f.p50Ms)} ms)`)
    .join('; ') || '-';

function outcomeTable(runs: Run[]): string {
  return markdownTable(
    [['kind', 'l'], ['run', 'l'], ['offered', 'r'], ['succeeded', 'r'], ['refused (Retry-After)', 'r'], ['failed', 'r'], ['unanswered', 'r'], ['goodput/s', 'r'], ['p50 ms', 'r'], ['p99 ms', 'r'], ['wall s', 'r'], ['refusals and failures', 'l']],
    runs.map((r) => [r.kind, fmtRate(r), r.offered, r.succeeded, r.refused, r.failed, r.unanswered, r.goodputPerS, fmt(r.p50Ms), fmt(r.p99Ms), r.wallS, failureCodes(r)]),
  );
}

function cpuTable(runs: Run[]): string {
  const c = (r: Run, k: keyof CpuSnapshot | 'total') => (r.cpuMsPerOp ? fmt(r.cpuMsPerOp[k]) : 'n/a');
  return markdownTable(
    [['kind', 'l'], ['run', 'l'], ['sls offline CPU ms', 'r'], ['S3+DynamoDB servers CPU ms', 'r'], ['bench/client CPU ms', 'r'], ['total CPU ms', 'r'], ['other processes (share of the machine)', 'r']],
    runs.map((r) => [r.kind, fmtRate(r), c(r, 'offline'), c(r, 'storage'), c(r, 'bench'), c(r, 'total'), `${num(r.otherCpuShare)}${r.rerunAfterSkew !== undefined ? ` (rerun: first try ${r.rerunAfterSkew})` : ''}`]),
  );
}

/** Cells of a per-operation table for a run without successes: nothing to divide by. */
const noSuccesses = (cells: number) => Array.from({ length: cells }, () => '-');

function storageTable(runs: Run[]): string {
  const s = (r: Run, op: string) => num(r.storagePerOp[op] ?? 0);
  const s3Other = (r: Run) => round2(Object.entries(r.storagePerOp).filter(([op]) => op.startsWith('s3:') && !['s3:GET', 's3:HEAD', 's3:PUT', 's3:DELETE', 's3:LIST'].includes(op)).reduce((a, [, n]) => a + n, 0));
  const dynamo = (r: Run) =>
    Object.entries(r.storagePerOp)
      .filter(([op]) => op.startsWith('dynamodb:'))
      .map(([op, n]) => `${op.slice(9)} ${n}`)
      .join(', ') || '-';
  return markdownTable(
    [['kind', 'l'], ['run', 'l'], ['S3 GET', 'r'], ['S3 HEAD', 'r'], ['S3 PUT', 'r'], ['S3 DELETE', 'r'], ['S3 LIST', 'r'], ['S3 other', 'r'], ['DynamoDB requests by operation', 'l']],
    runs.map((r) => [r.kind, fmtRate(r), ...(r.succeeded ? [s(r, 's3:GET'), s(r, 's3:HEAD'), s(r, 's3:PUT'), s(r, 's3:DELETE'), s(r, 's3:LIST'), s3Other(r), dynamo(r)] : noSuccesses(7))]),
  );
}

/** e.g. "reconstruct 12, node2 3"; "n/a" for a stack without a front door. */
function frontDoorRefusals(r: Run): string {
  if (!r.admissions) return 'n/a';
  return Object.entries(r.admissions).filter(([, c]) => c.refused > 0).map(([fn, c]) => `${fn} ${c.refused}`).join(', ') || '0';
}

function lambdaTable(runs: Run[]): string {
  const group = (r: Run, pick: (fn: string) => boolean) => Object.entries(r.lambdaPerOp).filter(([fn]) => pick(fn));
  const inv = (xs: [string, { invocations: number }][]) => round2(xs.reduce((a, [, f]) => a + f.invocations, 0));
  const isNode = (fn: string) => /^node\d+$/.test(fn);
  const mean = (xs: [string, { invocations: number; meanDurationMs: number }][]) => {
    const n = xs.reduce((a, [, f]) => a + f.invocations, 0);
    return n ? fmt(xs.reduce((a, [, f]) => a + f.invocations * f.meanDurationMs, 0) / n) : '-';
  };
  const gbS = (r: Run) => ((Object.values(r.lambdaPerOp).reduce((a, f) => a + f.billedMs, 0) / 1000) * PRICES.lambdaMemoryGb).toFixed(4);
  return markdownTable(
    [['kind', 'l'], ['run', 'l'], ['coordinator invocations', 'r'], ['node invocations', 'r'], ['other', 'r'], ['coordinator mean ms', 'r'], ['node mean ms', 'r'], ['billed GB-s', 'r'], ['"Lambda timeout"s (run total)', 'r'], ['front door refused (run total)', 'l']],
    runs.map((r) => {
      const coord = group(r, (fn) => fn === 'reconstruct');
      const nodes = group(r, isNode);
      const other = group(r, (fn) => fn !== 'reconstruct' && !isNode(fn));
      return [r.kind, fmtRate(r), ...(r.succeeded ? [inv(coord), inv(nodes), inv(other), mean(coord), mean(nodes), gbS(r)] : noSuccesses(6)), r.lambdaTimeouts, frontDoorRefusals(r)];
    }),
  );
}

function waveTable(runs: Run[]): string {
  const waves = runs.filter((r) => r.mode === 'wave');
  return markdownTable(
    [['kind', 'l'], ['operations', 'r'], ['succeeded', 'r'], ['all succeeded', 'l'], ['HTTP requests per operation: operations', 'l'], ['SDK reported attempts', 'r'], ['p50 ms', 'r'], ['p99 ms', 'r'], ['wall s', 'r'], ['failures', 'l']],
    waves.map((r) => [r.kind, r.offered, r.succeeded, r.succeeded === r.offered ? 'yes' : '**no**', Object.entries(r.requestsPerOp).map(([k, n]) => `${k}: ${n}`).join(', '), `${r.withSdkAttempts}/${r.offered}`, fmt(r.p50Ms), fmt(r.p99Ms), r.wallS, failureCodes(r)]),
  );
}

function capacityTable(caps: Capacity[], cores: number, baseline: Baseline | undefined): string {
  const before = (k: KindKey) => baseline?.capacity?.find((c) => c.kind === k)?.cpuMsPerOp ?? null;
  return markdownTable(
    [['kind', 'l'], ['CPU ms/op at lowest level (all processes)', 'r'], [`machine limit/s (${cores} cores)`, 'r'], ['goodput/s at lowest level', 'r'], ['best goodput/s (level)', 'r'], ['best / limit', 'r'], ['best / lowest', 'r'], ['levels below the lowest', 'l'], ['baseline CPU ms/op', 'r'], ['CPU change', 'r']],
    caps.map((c) => {
      const b = before(c.kind);
      const change = b && c.cpuMsPerOp ? `${round1(((c.cpuMsPerOp - b) / b) * 100)}%` : '-';
      return [c.kind, num(c.cpuMsPerOp), num(c.machineLimitPerS), c.lowestGoodputPerS, c.best ? `${c.best.goodputPerS} (c=${c.best.concurrency})` : '-', num(c.bestOfLimit), num(c.bestOverLowest), c.collapsedAt.join(', ') || 'none', num(b), change];
    }),
  );
}

function costTable(kinds: Kind[], runs: Run[]): string {
  const rows = kinds.flatMap((k) => {
    const r = runs.find((x) => x.kind === k.key && x.mode === 'closed' && x.succeeded > 0);
    if (!r) return [];
    const c = costPerMillion(r);
    const kms = round2(k.kms.price * 1e6);
    return [[k.key, fmtRate(r), num(c['apiGateway']), num(c['lambdaRequests']), num(c['lambdaGbSeconds']), num(c['s3']), num(c['dynamoDb']), `**${num(c['total'])}**`, `${k.kms.name} ${kms}`, c['total'] ? round2(c['total'] / kms) : '-']];
  });
  return markdownTable(
    [['kind', 'l'], ['from run', 'l'], ['API Gateway $', 'r'], ['Lambda requests $', 'r'], ['Lambda GB-s $', 'r'], ['S3 $', 'r'], ['DynamoDB $', 'r'], ['total $ per million', 'r'], ['AWS KMS $ per million', 'l'], ['fedkms / KMS', 'r']],
    rows,
  );
}

function goalLines(caps: Capacity[], runs: Run[], baseline: Baseline | undefined): string[] {
  const mark = (ok: boolean) => (ok ? 'met' : '**not met**');
  return caps.flatMap((c) => {
    const mine = runs.filter((r) => r.kind === c.kind);
    const closed = mine.filter((r) => r.mode === 'closed');
    const wave = mine.find((r) => r.mode === 'wave');
    const unanswered = closed.reduce((a, r) => a + r.unanswered, 0);
    const noRetryAfter = closed.reduce((a, r) => a + r.refusalsWithoutRetryAfter, 0);
    const b = baseline?.capacity?.find((x) => x.kind === c.kind)?.cpuMsPerOp;
    const lines = [
      `${c.kind}: no collapse (every closed level's goodput >= the lowest level's): ${mark(c.collapsedAt.length === 0)}${c.collapsedAt.length ? ` (below at c=${c.collapsedAt.join(', ')})` : ''}; 0 unanswered: ${mark(unanswered === 0)} (${unanswered}); Retry-After on every 429/503: ${mark(noRetryAfter === 0)} (${noRetryAfter} without)`,
      `${c.kind}: machine used (best >= 1.5x lowest): ${mark((c.bestOverLowest ?? 0) >= 1.5)} (${num(c.bestOverLowest)}x, ${num(c.bestOfLimit)} of the machine limit)`,
    ];
    if (b && c.cpuMsPerOp) lines.push(`${c.kind}: CPU per operation >= 30% lower than the baseline (${b} ms): ${mark(c.cpuMsPerOp <= 0.7 * b)} (${c.cpuMsPerOp} ms, ${round1(((c.cpuMsPerOp - b) / b) * 100)}%)`);
    if (wave) lines.push(`${c.kind}: wave of ${wave.offered} with the SDK's retries all succeed: ${mark(wave.succeeded === wave.offered)} (${wave.succeeded}/${wave.offered})`);
    return lines;
  });
}

// ---------------------------------------------------------------- main

/**
 * The default federation's size, and the timing setting withFederationStack takes: the
 * request budget since issue #11, the per-node timeout before (so one file runs on both).
 */
function federationFromConfig(): { n: number; t: number; timing: { name: string; ms: number } } {
  const cfg = JSON.parse(readFileSync(path.join(ROOT, 'fedkms.config.json'), 'utf8')) as { threshold: number; nodes: unknown[]; requestBudgetMs?: number; nodeTimeoutMs?: number };
  const timing = cfg.requestBudgetMs !== undefined ? { name: 'request budget', ms: cfg.requestBudgetMs } : { name: 'node timeout', ms: cfg.nodeTimeoutMs ?? 1500 };
  return { n: cfg.nodes.length, t: cfg.threshold, timing };
}

/** The exact command: every BENCH_* setting given, then the npm script or the file. */
function exactCommand(): string {
  const env = Object.entries(process.env)
    .filter(([k, v]) => k.startsWith('BENCH_') && k !== 'BENCH_ITERATIONS' && v)
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  return env + commandLine(['bench:load'], 'bench/load.ts');
}

async function main(): Promise<void> {
  const s = settings();
  const began = performance.now();
  const date = new Date().toISOString();
  const loadAtStart = loadAverage1m();
  const fed = federationFromConfig();
  const runs: Run[] = [];
  const kinds: Kind[] = [];
  const complete = await inTempDir((tmp) =>
    withFederationStack(tmp, fed, fed.timing.ms, async (stack) => {
      await importExample(stack);
      const signKey = s.kinds.includes('sign') ? await createSignKey(stack) : undefined;
      const seq = { next: 0 };
      for (const k of s.kinds) {
        if (interrupted()) return;
        const kind = k === 'server' ? serverSide() : k === 'e2e' ? endToEnd() : signing(signKey!.keyId);
        kinds.push(kind);
        runs.push(...(await benchKind(stack, s, kind, k === 'sign' ? signKey!.groupKey : undefined, seq)));
      }
    }),
  );
  if (!complete) return;

  const info = machine();
  const command = exactCommand();
  const load = { start: round2(loadAtStart), end: round2(loadAverage1m()) };
  const caps = s.kinds.map((k) => capacity(k, runs, info.cores));
  const baseline = loadBaseline(s.baselineFile);
  const notes = [
    `Federation: ${fed.t}-of-${fed.n} as in fedkms.config.json (${fed.timing.name} ${fed.timing.ms} ms), one stack for all runs; \`example\` imported with policy serverSideCombine; the signing key made by one DKG; ${s.warmup} uncounted sequential operations before each kind.`,
    `Closed loop: each level runs at least max(${s.minOps}, 2 x concurrency) operations, each worker sending its next one when the previous one answered${s.honorRetryAfter ? ", after a refusal only once its Retry-After has passed, with up to half again as jitter (BENCH_HONOR_RETRY_AFTER=1, the default; the refused operation itself is not retried); each level lasts at least ${s.levelMs / 1000} s; each level above 1 follows an uncounted warm-up of 4 x min(c, 12) operations at concurrency min(c, 12), which starts the workers the concurrency limits allow" : ', at once even after a refusal'}. ${s.openOps ? `Open loop: ${s.openOps} operations at a fixed rate (${s.openRate ? 'BENCH_OPEN_RATE' : "2 x the lowest level's goodput"}); latency counts from each actual send.` : 'No open-loop run (BENCH_OPEN_OPS=0).'} Every operation has a ${s.deadlineMs} ms deadline (sent by the SDK as its budget where it supports it); no retries.`,
    `Verdicts: succeeded = the right secret, or a signature that verifies under the group key (checked after the run, outside the CPU window); refused = 429/503 carrying Retry-After; unanswered = the client aborted at its deadline; everything else failed (its code is listed; a 429/503 without Retry-After is marked so). p50/p99: nearest rank over successes only. Goodput: successes / wall time of the run.`,
    s.waveOps === 0 ? 'No retry wave (BENCH_WAVE=0).' : `Wave: ${s.waveOps} operations at once, with the SDK's retries (retry: true), ${s.waveDeadlineMs} ms deadline each, retries included; reconstructions are passed as idempotent (they change nothing), signing is not. "HTTP requests per operation" counts every request the SDK sent (retries included, and reconstructEndToEnd's extra rounds).`,
    `Per operation = per successful operation: the run's total divided by its successes, so work wasted on refused, failed or abandoned operations counts too. Each run's window ends ${SETTLE_MS} ms after its last answer, so stragglers still running are included.`,
    `CPU: user + system from /proc of sls offline (every function's workers), the S3+DynamoDB server process, and this process (client, SDK, end-to-end combine, and the local stack's in-process parts: the per-node loopback proxies and, where present, the front door). Machine limit: ${info.cores} cores / the CPU-seconds of one operation summed over these processes at the lowest level. "Other processes": the machine's busy time (/proc/stat) minus these processes', as a share of all cores during the run; above ~0.05 someone else competed for the CPU and the run is skewed.`,
    `Storage: requests counted by the local S3 and DynamoDB servers (tools/local-servers.cjs "stats"), by S3 method (a bucket-level GET is a LIST) and by DynamoDB operation (x-amz-target).`,
    `Lambda: invocations and durations from sls offline's "(λ: fn) RequestId ... Duration ... Billed Duration" lines in offline.log; invocations stopped at their timeout log no duration and are counted apart.`,
    `Cost model, from the lowest closed level: AWS us-east-1 list prices as known on 2026-12-01, not fetched live (API Gateway HTTP API $1.00/million requests, each coordinator and each node invocation counted as one since nodes sit behind their own APIs; Lambda $0.20/million requests and $0.0000133334 per GB-s on arm64 at 512 MB, billed durations as measured here on x86 under sls offline; S3 GET/HEAD $0.0004 and PUT/COPY/POST/LIST $0.005 per 1,000, DELETE free; DynamoDB on-demand $0.125 per million read and $0.625 per million write request units, counting 1 unit per request, which undercounts items over 1 KB (writes) / 4 KB (reads) and batch/transactional requests). AWS KMS: symmetric Decrypt $0.03 and asymmetric Sign $0.15 per 10,000 requests. Not included: data transfer, CloudWatch logs, Secrets Manager, KMS keys of the buckets, storage at rest.`,
    ...(s.quietWaitS ? [`Shared machine (BENCH_QUIET_WAIT_S=${s.quietWaitS}): each run waited up to ${s.quietWaitS} s for other processes to use under ${QUIET} of the machine, and a run during which they used over ${SKEWED} was run once more (marked "rerun" in the CPU table).`] : []),
    baseline ? `Baseline for the CPU comparison: ${path.relative(ROOT, s.baselineFile)} (revision ${baseline.revision ?? 'unknown'}).` : `No baseline file (${path.relative(ROOT, s.baselineFile)}): no CPU comparison.`,
  ];
  const header = reportHeader('fedkms load benchmark (sls offline)', { date, began, command, machine: info, loadPoints: 'start / end', loads: [load.start, load.end] }, notes);
  const report = `${header}

### Outcomes per run

${outcomeTable(runs)}

### CPU per successful operation by process

${cpuTable(runs)}

### Capacity

${capacityTable(caps, info.cores, baseline)}

### Retry waves (SDK retries)

${waveTable(runs)}

### Storage requests per successful operation

${storageTable(runs)}

### Lambda invocations per successful operation

${lambdaTable(runs)}

### Cost per million operations (AWS list prices, us-east-1, as of 2026-12-01)

${costTable(kinds, runs)}

### Goals (issue #11)

${goalLines(caps, runs, baseline)
  .map((l) => `- ${l}`)
  .join('\n')}
`;
  console.log(`\n${report}`);
  const mdFile = writeArtifact('bench-load.md', report);
  const costs = Object.fromEntries(kinds.map((k) => [k.key, runs.find((r) => r.kind === k.key && r.mode === 'closed' && r.succeeded > 0)]).filter(([, r]) => r).map(([k, r]) => [k, costPerMillion(r as Run)]));
  const jsonFile = writeJsonArtifact('bench-load.json', { date, command, machine: info, loadAverage1m: load, revision: gitRevision(), settings: s, prices: PRICES, notes, runs, capacity: caps, costPerMillion: costs });
  console.log(`markdown: ${mdFile}\nJSON: ${jsonFile}`);
}

runBench(main);
