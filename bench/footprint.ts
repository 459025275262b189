/**
 * `npm run bench:footprint`: what a whole local federation costs on this machine: the time
 * from nothing to a federation that answers (`GET /status` 200), and the memory (RSS) of
 * every process it runs, measured once it is up and idle and again after a short workload
 * (each function warm). Runs `FOOTPRINT_RUNS` times (default 3), each from a fresh directory,
 * and prints the median with the command and revision.
 * Works against this revision's tools/local-stack.ts whatever its layout (one sls offline for
 * everything, or one per operator), so the same file measures before and after a change.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startLocalStack } from '../tools/local-stack.js';
import { FedkmsClient } from '../lib/client/api.js';

const RUNS = Number(process.env['FOOTPRINT_RUNS'] ?? 3);

/** Every descendant of `pid` (children of every thread), depth first. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let kids = '';
    try {
      kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.split(/\s+/).filter(Boolean).map(Number)) out.push(k, ...descendants(k));
  }
  return out;
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** This process (it hosts the proxies and front doors) and everything it started. */
function treeMemory(): { processes: number; rssMb: number } {
  const pids = [process.pid, ...descendants(process.pid)];
  return { processes: pids.length, rssMb: pids.reduce((t, p) => t + rssMb(p), 0) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function once() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-footprint-'));
  const t0 = performance.now();
  const stack = await startLocalStack({ dir });
  const startupMs = performance.now() - t0;
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const idle = treeMemory();
    const c = new FedkmsClient(stack.url, stack.admin);
    const ok = (r: { status: number }, what: string) => {
      if (r.status >= 300) throw new Error(`${what}: HTTP ${r.status}`);
    };
    ok(await c.call('POST', '/keys', { keyId: 'fp', secretHex: 'A94F3D82C1B7E6F9', policy: { serverSideCombine: true } }), 'import');
    ok(await c.call('POST', '/keys', { keyId: 'fps', type: 'ed25519' }), 'dkg');
    for (let i = 0; i < 5; i++) {
      ok(await c.call('POST', '/keys/fp/reconstruct'), 'reconstruct');
      ok(await c.call('POST', '/keys/fps/sign', { message: Buffer.from(`m${i}`).toString('base64') }), 'sign');
    }
    const warm = treeMemory();
    return { startupMs, idle, warm };
  } finally {
    await stack.stop();
  }
}

async function main() {
  const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: path.resolve(__dirname, '..') }).toString().trim();
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await once();
    runs.push(r);
    console.log(`run ${i + 1}: up in ${(r.startupMs / 1000).toFixed(1)} s; idle ${r.idle.rssMb.toFixed(0)} MB in ${r.idle.processes} processes; warm ${r.warm.rssMb.toFixed(0)} MB in ${r.warm.processes}`);
  }
  console.log(`\nfederation footprint (3 nodes, 2-of-3), revision ${rev}, ${os.cpus().length} cores, median of ${RUNS}:`);
  console.log(`  startup to a federation that answers: ${(median(runs.map((r) => r.startupMs)) / 1000).toFixed(1)} s`);
  console.log(`  memory idle: ${median(runs.map((r) => r.idle.rssMb)).toFixed(0)} MB RSS in ${median(runs.map((r) => r.idle.processes))} processes`);
  console.log(`  memory warm (after import, DKG, 5 reconstructions, 5 signatures): ${median(runs.map((r) => r.warm.rssMb)).toFixed(0)} MB RSS in ${median(runs.map((r) => r.warm.processes))} processes`);
  console.log(`command: FOOTPRINT_RUNS=${RUNS} npx tsx bench/footprint.ts`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
