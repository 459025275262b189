/**
 * `npm run bench:decrypt`: threshold decryption (issue #14), measured two ways in one run:
 *   1. client-observed latency of one decryption through the local stack (sls offline), the
 *      SDK's `decryptEndToEnd` (lib/client/decrypt.ts): `GET /keys/{id}/public`, then
 *      `POST /keys/{id}/decrypt` (coordinator -> t nodes, each checks the ciphertext, computes
 *      its partial and DLEQ proof, audits, seals it to the client), then the client opens the
 *      boxes, verifies every proof, combines and opens the AEAD. A 2-of-3 `encrypt` key born by
 *      DKG; each request unwraps a different 32-byte data key. Healthy, then with node1's
 *      functions killed (`crashNode`, SIGKILL: connection refused from then on).
 *   2. CPU per operation in-process, no network (bench/decrypt-cpu.ts): the client side of one
 *      decryption, one node's partial + proof, against a local AES-256-GCM unwrap of a 32-byte
 *      data key and one X25519 ECDH, in the same process and run. By default measured as an
 *      esbuild bundle (as the functions are deployed; noble runs slower under tsx), in a child
 *      process before the stack starts; `--in-process` measures under tsx instead.
 * Env: BENCH_ITERATIONS (measured decryptions per scenario, default 100).
 * Writes the report to stdout and, as JSON, to artifacts/bench-decrypt.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FedkmsClient } from '../lib/client/api.js';
import { decryptEndToEnd, DecryptRequestError, encryptionKey, encryptTo, type EncryptionPublicKeyInfo } from '../lib/client/decrypt.js';
import { ROOT, type LocalStack } from '../tools/local-stack.js';
import {
  CLIENT_TIMEOUT_MS,
  commandLine,
  cpuPerOperation,
  cpuSnapshot,
  describeFailures,
  elapsed,
  fmt,
  gitRevision,
  inTempDir,
  interrupted,
  iterationsFromEnv,
  latencyStats,
  loadAverage1m,
  machine,
  markdownTable,
  measure,
  percentile,
  reportHeader,
  round1,
  round2,
  runBench,
  withFederationStack,
  writeJsonArtifact,
  type CpuSnapshot,
  type Federation,
  type LatencyStats,
  type Outcome,
} from './common.js';
import { CPU_CHILD_ENV, CPU_RUNS, measureDecryptCpu, type CpuResult } from './decrypt-cpu.js';

const DEFAULT_ITERATIONS = 100;
const FEDERATION: Federation = { n: 3, t: 2 };
/** The coordinator's per-node timeout (the repo default in fedkms.config.json). */
const REQUEST_BUDGET_MS = 8000;
/** Uncounted decryptions before each block: Lambda workers warming up, and after the crash the coordinator learning node1 is gone. */
const WARMUP = 5;
const KEY_ID = 'bench-decrypt';
const KEY_ATTEMPTS = 3;
const CONTEXT = { app: 'bench', purpose: 'data-key' };
const CRASHED = 'node1';

interface DecryptOutcome extends Outcome {
  /** Of `ms`: the `POST /keys/{id}/decrypt` call alone. */
  postMs?: number;
  usedNodes?: string[];
  rejected?: number;
}

interface Row extends LatencyStats {
  scenario: string;
  /** `POST /keys/{id}/decrypt` alone, successes. */
  post: { p50Ms: number | null; p99Ms: number | null };
  /** The uncounted warm-ups, in order (after the crash, the first ones show the failover). */
  warmupMs: number[];
  /** Successful decryptions that combined a partial of each node. */
  usedNodes: Record<string, number>;
  /** Nodes whose partials the client rejected, summed. */
  rejected: number;
  /** CPU ms per measured decryption, by process: sls offline (all functions), the S3/DynamoDB servers, this client. */
  cpu?: CpuSnapshot | undefined;
}

function describeError(e: unknown): string {
  if (e instanceof DecryptRequestError) return `${e.answer.status} ${e.answer.body?.error?.code ?? e.message}`;
  return `client ${(e as Error)?.name ?? 'error'}: ${String((e as Error)?.message ?? e).slice(0, 80)}`;
}

/** One decryption of a fresh data key, timed from the first request to the plaintext in hand. */
async function decryptOnce(client: FedkmsClient, envelope: { dataKey: Uint8Array; ciphertext: Uint8Array }): Promise<DecryptOutcome> {
  const started = performance.now();
  try {
    const r = await decryptEndToEnd(client, envelope.ciphertext, CONTEXT);
    const ms = elapsed(started);
    if (Buffer.compare(Buffer.from(r.plaintext), Buffer.from(envelope.dataKey)) !== 0) return { ok: false, ms, failure: 'wrong plaintext' };
    return { ok: true, ms, postMs: r.answer.ms, usedNodes: r.usedNodes, rejected: r.rejected.length };
  } catch (e) {
    return { ok: false, ms: elapsed(started), failure: describeError(e) };
  }
}

/** Create the 2-of-3 encrypt key by DKG, retrying with a new keyId if the busy machine breaks one. */
async function createKey(client: FedkmsClient): Promise<EncryptionPublicKeyInfo> {
  const failures: string[] = [];
  for (let attempt = 1; attempt <= KEY_ATTEMPTS && !interrupted(); attempt++) {
    const keyId = attempt === 1 ? KEY_ID : `${KEY_ID}-${attempt}`;
    const started = performance.now();
    const r = await client.call('POST', '/keys', { keyId, type: 'encrypt', threshold: FEDERATION.t }, { timeoutMs: CLIENT_TIMEOUT_MS, retry: false });
    if (r.status === 201) {
      console.log(`  encrypt key ${keyId} created by DKG in ${(elapsed(started) / 1000).toFixed(1)} s`);
      return encryptionKey(client, keyId);
    }
    failures.push(`${keyId}: ${r.status} ${r.body?.error?.code ?? ''}`);
    console.log(`  DKG of ${keyId} failed: ${failures.at(-1)}`);
  }
  throw new Error(`DKG of the encrypt key failed: ${failures.join('; ')}`);
}

async function block(stack: LocalStack, client: FedkmsClient, key: EncryptionPublicKeyInfo, scenario: string, iterations: number): Promise<Row> {
  // Fresh data keys, wrapped before the clock starts (encryption needs no node).
  const envelopes = Array.from({ length: WARMUP + iterations }, () => {
    const dataKey = new Uint8Array(randomBytes(32));
    return { dataKey, ciphertext: encryptTo(key, dataKey, CONTEXT) };
  });
  const warmups: DecryptOutcome[] = [];
  let before: CpuSnapshot | undefined;
  // The processes still alive when measuring starts (a crashed node's has no /proc entry to read), the same set before and after.
  let alive: LocalStack | undefined;
  const outcomes = await measure(
    scenario,
    WARMUP,
    iterations,
    async (seq) => {
      const o = await decryptOnce(client, envelopes[seq]!);
      if (seq < WARMUP) warmups.push(o);
      return o;
    },
    () => {
      const live = (pids: number[]) => pids.filter((p) => existsSync(`/proc/${p}/stat`));
      alive = { pids: { offline: live(stack.pids.offline), storage: live(stack.pids.storage) } } as LocalStack;
      before = cpuSnapshot(alive);
    },
  );
  const cpu = alive && cpuPerOperation(before, cpuSnapshot(alive), iterations);
  const ok = outcomes.filter((o) => o.ok);
  const postSorted = ok.map((o) => o.postMs!).sort((a, b) => a - b);
  const r = (x: number | null) => (x === null ? null : round1(x));
  const usedNodes: Record<string, number> = {};
  for (const o of ok) for (const id of o.usedNodes ?? []) usedNodes[id] = (usedNodes[id] ?? 0) + 1;
  return {
    scenario,
    ...latencyStats(outcomes),
    post: { p50Ms: r(percentile(postSorted, 50)), p99Ms: r(percentile(postSorted, 99)) },
    warmupMs: warmups.map((o) => round1(o.ms)),
    usedNodes,
    rejected: ok.reduce((s, o) => s + (o.rejected ?? 0), 0),
    cpu,
  };
}

/** The in-process CPU table, as an esbuild bundle in a child process unless `inProcess`. */
async function cpuCost(inProcess: boolean): Promise<CpuResult> {
  if (inProcess) return measureDecryptCpu(FEDERATION.n, FEDERATION.t, 'in-process under tsx: noble transpiled to CommonJS');
  const { build } = await import('esbuild');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-bench-decrypt-cpu-'));
  try {
    const outfile = path.join(dir, 'decrypt-cpu.mjs');
    await build({ entryPoints: [path.join(ROOT, 'bench', 'decrypt-cpu.ts')], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' });
    const run = spawnSync(process.execPath, [outfile], { encoding: 'utf8', env: { ...process.env, [CPU_CHILD_ENV]: `${FEDERATION.n},${FEDERATION.t}` }, maxBuffer: 1 << 20 });
    if (run.status !== 0) throw new Error(`CPU child failed (${run.status}): ${run.stderr}`);
    return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as CpuResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function latencyTable(rows: Row[]): string {
  return markdownTable(
    [['scenario', 'l'], ['p50 ms', 'r'], ['p99 ms', 'r'], ['mean ms', 'r'], ['POST /decrypt p50 / p99 ms', 'r'], ['successes/N', 'r'], ['partials combined, by node', 'l'], ['rejected partials', 'r'], ['warm-ups ms (uncounted)', 'l'], ['failures', 'l']],
    rows.map((r) => [
      r.scenario,
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.meanMs),
      `${fmt(r.post.p50Ms)} / ${fmt(r.post.p99Ms)}`,
      `${r.successes}/${r.iterations}`,
      Object.entries(r.usedNodes).sort().map(([id, c]) => `${id} ${c}`).join(', ') || '-',
      r.rejected,
      r.warmupMs.join(', '),
      describeFailures(r.failures),
    ]),
  );
}

function cpuByProcessTable(rows: Row[]): string {
  return markdownTable(
    [['scenario', 'l'], ['sls offline CPU ms', 'r'], ['S3+DynamoDB servers CPU ms', 'r'], ['client (this process) CPU ms', 'r'], ['total CPU ms', 'r']],
    rows.map((r) => [r.scenario, ...(r.cpu ? [fmt(r.cpu.offline), fmt(r.cpu.storage), fmt(r.cpu.bench), fmt(round1(r.cpu.offline + r.cpu.storage + r.cpu.bench))] : ['n/a', 'n/a', 'n/a', 'n/a'])]),
  );
}

/** µs per operation and the ratio to each baseline (rows 'baseline: AES...' and 'baseline: one X25519...'). */
function cpuTable(result: CpuResult): string {
  const aes = result.rows.find((r) => r.what.includes('AES-256-GCM'))!;
  const x25519 = result.rows.find((r) => r.what.includes('X25519'))!;
  const us = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
  return markdownTable(
    [['operation', 'l'], ['µs CPU', 'r'], ['µs wall', 'r'], ['ops', 'r'], ['× AES-GCM unwrap', 'r'], ['× X25519 ECDH', 'r']],
    result.rows.map((r) => [r.what, us(r.cpuUs), us(r.wallUs), r.iterations, round1(r.cpuUs / aes.cpuUs).toString(), round2(r.cpuUs / x25519.cpuUs).toString()]),
  );
}

function commandWithArgs(): string {
  const base = commandLine(['bench:decrypt'], 'bench/decrypt.ts');
  const args = process.argv.slice(2);
  if (!args.length) return base;
  return `${base}${base.includes('npm run') ? ' --' : ''} ${args.join(' ')}`;
}

async function main(): Promise<void> {
  const iterations = iterationsFromEnv(DEFAULT_ITERATIONS);
  const inProcess = process.argv.includes('--in-process');
  const began = performance.now();
  const date = new Date().toISOString();
  const command = commandWithArgs();
  const info = machine();
  const load = { start: loadAverage1m(), afterCpu: 0, end: 0 };
  console.log(`bench:decrypt, N=${iterations} decryptions per scenario, ${FEDERATION.t}-of-${FEDERATION.n}; command: ${command}`);

  // In-process part first, while none of our own child processes compete for the CPU.
  console.log(`CPU cost in-process (${inProcess ? 'under tsx' : 'esbuild bundle'}): ${CPU_RUNS.threshold.iterations} threshold operations, ${CPU_RUNS.baseline.iterations} per baseline ...`);
  const section = performance.now();
  const cpu = await cpuCost(inProcess);
  load.afterCpu = loadAverage1m();
  console.log(`  done in ${(elapsed(section) / 1000).toFixed(1)} s`);

  const rows: Row[] = [];
  const completed = await inTempDir((tmp) =>
    withFederationStack(tmp, FEDERATION, REQUEST_BUDGET_MS, async (stack) => {
      const client = new FedkmsClient(stack.url, stack.admin, fetch, { timeoutMs: CLIENT_TIMEOUT_MS });
      const key = await createKey(client);
      rows.push(await block(stack, client, key, 'healthy', iterations));
      if (interrupted()) return;
      console.log(`  crashing ${CRASHED} (its functions SIGKILLed; storage stays) ...`);
      await stack.crashNode(CRASHED);
      rows.push(await block(stack, client, key, `1 node down (${CRASHED} crashed)`, iterations));
    }),
  );
  if (!completed) return;
  load.end = loadAverage1m();

  const notes = [
    `N = ${iterations} measured decryptions per scenario (BENCH_ITERATIONS), after ${WARMUP} uncounted warm-ups each; federation ${FEDERATION.t}-of-${FEDERATION.n}, an \`encrypt\` key born by DKG; request budget ${REQUEST_BUDGET_MS} ms per node.`,
    `Latency: client wall time of the SDK's \`decryptEndToEnd\`, i.e. \`GET /keys/{id}/public\` + \`POST /keys/{id}/decrypt\` (coordinator -> t nodes: envelope check, partial + DLEQ proof, audit write, sealing) + the client's proof checks, combination and AEAD. Each request unwraps a different 32-byte data key, wrapped before the clock starts. p50/p99 nearest-rank over successes (with N = ${iterations} the p99 is sample ${Math.ceil(0.99 * iterations)} of ${iterations} in ascending order). "POST /decrypt": that call alone.`,
    `Down: ${CRASHED}'s sls offline process killed (SIGKILL) with \`crashNode\` between the blocks; its storage stays. The warm-ups after the crash show the coordinator's failover.`,
    `Everything runs on this one machine: every node, the coordinator, S3/DynamoDB emulators and the client share ${info.cores} cores, so latency here is mostly CPU queueing, not network.`,
    `CPU: process.cpuUsage() (user + system, whole process, so including GC threads) per operation, in-process, no network, ${cpu.mode}, node ${cpu.node}. Client side: the SDK's real \`decryptEndToEnd\` (request signing, JSON, X25519 opening of t sealed partials, envelope validity proof, t DLEQ checks, combination, HKDF, AES-GCM) with a stand-in fetch whose work for the nodes (partials, proofs, sealing) is timed and subtracted. Node: \`partialDecrypt\` (the ciphertext's validity proof, share check, D_i, DLEQ proof), then the same plus sealing to the client; not counted: request-signature check, policy, storage, audit. Baselines: AES-256-GCM decrypt of a 32-byte data key under a local 256-bit KEK (createDecipheriv, tag check); one X25519 ECDH with both keys imported once (crypto.diffieHellman).`,
  ];
  const header = reportHeader(
    'fedkms threshold decryption benchmark (sls offline + in-process)',
    { date, began, command, machine: info, loadPoints: 'start / after the in-process part / end', loads: [load.start, load.afterCpu, load.end].map(round2) },
    notes,
  );
  console.log(`
${header}

### Decrypt latency through the local stack (${FEDERATION.t}-of-${FEDERATION.n}, N = ${iterations} per scenario)

${latencyTable(rows)}

CPU per decryption by process during each block (user + system from /proc; the client column is this process, which also runs the stack's per-node proxies, under tsx; a crashed node's process is left out):

${cpuByProcessTable(rows)}

### CPU per operation, in-process (${cpu.t}-of-${cpu.n}, ${cpu.mode})

${cpuTable(cpu)}
`);
  const jsonFile = writeJsonArtifact('bench-decrypt.json', { date, command, machine: info, loadAverage1m: load, revision: gitRevision(), iterations, federation: FEDERATION, notes, latency: rows, cpu });
  console.log(`JSON: ${jsonFile}`);
}

runBench(main);
