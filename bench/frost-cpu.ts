/**
 * `npx tsx bench/frost-cpu.ts`: CPU per complete threshold signature, in one run, for noble's
 * stock ed25519_FROST, the libsodium-backed fast suite (lib/crypto/fast-frost.ts) and one plain
 * noble ed25519.sign + verify; plus a CPU profile of what remains in the fast suite.
 *
 * One threshold signature = commit and signShare on t signers, verifyShare of every share,
 * aggregate, and a final verify (stock: noble ed25519.verify, as the coordinator does today;
 * fast: the fast suite's verify). "fast, fresh process per role" clears the fast suite's parse
 * cache before each signer's signShare and before the coordinator's part, as separate Lambdas
 * would see it; "fast, warm" keeps it, as one coordinator process verifying many shares does.
 *
 * Measured as an esbuild bundle by default, like the deployed functions: under tsx the ESM-only
 * noble packages are transpiled to CommonJS with getter-based exports, which makes noble's
 * SHA-512 about 7x slower and skews every row. `--in-process` measures under tsx instead.
 * Writes artifacts/bench-frost-cpu.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { fastFrost } from '../lib/crypto/fast-frost.js';
import { cpuPerOp, dealtKey, FAST_COLD, FAST_WARM, STOCK, thresholdSignature } from './frost-workload.js';

const MODE_ENV = 'FROST_CPU_BUNDLED';
const FEDERATIONS = [
  { n: 3, t: 2 },
  { n: 5, t: 3 },
] as const;
/** Warm-ups and measured operations per row (a stock signature costs tens of ms, so fewer). */
const RUNS = { stock: { warmup: 5, iterations: 40 }, fast: { warmup: 50, iterations: 500 }, plain: { warmup: 300, iterations: 2000 } } as const;
const PROFILE = { n: 3, t: 2, iterations: 400, samplingIntervalUs: 50, top: 10 } as const;
const GOAL_RATIO = 3;
const MESSAGE = new TextEncoder().encode('fedkms bench: a 64-byte message signed in-process, no network...');

const round1 = (x: number) => Math.round(x * 10) / 10;
const round2 = (x: number) => Math.round(x * 100) / 100;

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

interface Row {
  n: number;
  t: number;
  what: string;
  cpuUs: number;
  wallUs: number;
  ratioToPlain: number;
}

function measureFederation(n: number, t: number, plainUs: number): Row[] {
  const rows: Row[] = [];
  const add = (what: string, r: { cpuUs: number; wallUs: number }) => rows.push({ n, t, what, cpuUs: round1(r.cpuUs), wallUs: round1(r.wallUs), ratioToPlain: round2(r.cpuUs / plainUs) });
  const stockKey = dealtKey(n, t);
  const fastKey = dealtKey(n, t, fastFrost);
  add('stock ed25519_FROST', cpuPerOp(RUNS.stock.warmup, RUNS.stock.iterations, () => thresholdSignature(STOCK, stockKey, MESSAGE)));
  add('fast, fresh process per role', cpuPerOp(RUNS.fast.warmup, RUNS.fast.iterations, () => thresholdSignature(FAST_COLD, fastKey, MESSAGE)));
  add('fast, warm parse cache', cpuPerOp(RUNS.fast.warmup, RUNS.fast.iterations, () => thresholdSignature(FAST_WARM, fastKey, MESSAGE)));
  return rows;
}

function measurePlain(): { cpuUs: number; wallUs: number } {
  const sk = ed25519.utils.randomSecretKey();
  const pk = ed25519.getPublicKey(sk);
  return cpuPerOp(RUNS.plain.warmup, RUNS.plain.iterations, () => {
    if (!ed25519.verify(ed25519.sign(MESSAGE, sk), MESSAGE, pk)) throw new Error('plain signature fails verification');
  });
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string } }[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time by function (native frames, i.e. libsodium calls, keep the name V8 gives them). */
async function profileFast(): Promise<{ function: string; file: string; percent: number }[]> {
  const key = dealtKey(PROFILE.n, PROFILE.t, fastFrost);
  for (let i = 0; i < 50; i++) thresholdSignature(FAST_COLD, key, MESSAGE);
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: PROFILE.samplingIntervalUs });
    await session.post('Profiler.start');
    for (let i = 0; i < PROFILE.iterations; i++) thresholdSignature(FAST_COLD, key, MESSAGE);
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: CpuProfile };
    const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
    const self = new Map<string, number>();
    let total = 0;
    (profile.samples ?? []).forEach((id, i) => {
      const f = byId.get(id);
      const k = `${f?.functionName || '(anonymous)'}\t${f?.url ? path.basename(f.url) : '(native)'}`;
      const dt = profile.timeDeltas?.[i + 1] ?? 0;
      self.set(k, (self.get(k) ?? 0) + dt);
      total += dt;
    });
    return [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, PROFILE.top)
      .map(([k, us]) => {
        const [fn, file] = k.split('\t') as [string, string];
        return { function: fn, file, percent: round1((100 * us) / (total || 1)) };
      });
  } finally {
    await session.post('Profiler.disable').catch(() => undefined);
    session.disconnect();
  }
}

async function measureAll(mode: string): Promise<void> {
  console.log(`## FROST(Ed25519, SHA-512) CPU per threshold signature (${mode}, node ${process.version})\n`);
  const plain = measurePlain();
  const rows = FEDERATIONS.flatMap(({ n, t }) => measureFederation(n, t, plain.cpuUs));
  console.log(
    table(
      ['signature', 'n', 't', 'CPU µs', 'wall µs', 'ratio to plain'],
      [['plain noble ed25519 sign + verify', '-', '-', round1(plain.cpuUs), round1(plain.wallUs), '1.00'], ...rows.map((r) => [r.what, r.n, r.t, r.cpuUs, r.wallUs, r.ratioToPlain.toFixed(2)])],
    ),
  );
  const goal = rows.find((r) => r.n === 3 && r.what.startsWith('fast, fresh'))!;
  const speedup = rows.filter((r) => r.what.startsWith('fast, fresh')).map((r) => `${r.t}-of-${r.n}: ${round1(rows.find((s) => s.n === r.n && s.what.startsWith('stock'))!.cpuUs / r.cpuUs)}x`);
  console.log(`\ngoal (2-of-3, fresh process per role) <= ${GOAL_RATIO}x plain: ${goal.ratioToPlain.toFixed(2)}x, ${goal.ratioToPlain <= GOAL_RATIO ? 'met' : 'NOT met'}; fast vs stock: ${speedup.join(', ')}`);
  const profile = await profileFast();
  console.log(`\nWhat remains in the fast suite, ${PROFILE.t}-of-${PROFILE.n}, fresh process per role: top ${PROFILE.top} by self time\n`);
  console.log(table(['function', 'file', '% self'], profile.map((p) => [p.function, p.file, p.percent])));
  console.log('\n(native) frames other than the garbage collector are the sodium-native calls into libsodium; V8 names them after a nearby symbol of the node binary.');
  const out = path.join(process.cwd(), 'artifacts');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'bench-frost-cpu.json'), `${JSON.stringify({ date: new Date().toISOString(), mode, node: process.version, plain, rows, profile }, null, 2)}\n`);
  console.log('\nwrote artifacts/bench-frost-cpu.json');
}

/** Bundle this file as the deployed functions are bundled, then run the bundle. */
async function runBundled(): Promise<number> {
  const { build } = await import('esbuild');
  const outfile = path.join(process.cwd(), 'node_modules', '.cache', 'fedkms-bench', 'frost-cpu.mjs');
  await build({ entryPoints: [__filename], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', external: ['sodium-native', 'esbuild'], logLevel: 'warning' });
  return spawnSync(process.execPath, [outfile], { stdio: 'inherit', env: { ...process.env, [MODE_ENV]: '1' } }).status ?? 1;
}

async function main(): Promise<void> {
  if (process.env[MODE_ENV]) return measureAll('esbuild bundle, as deployed');
  if (process.argv.includes('--in-process')) return measureAll('in-process under tsx: noble transpiled to CommonJS');
  process.exitCode = await runBundled();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
