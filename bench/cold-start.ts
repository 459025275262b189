/**
 * `npm run bench:cold`: each function's bundle size and module-init time, the two
 * things a Lambda cold start pays before the handler runs. Packages the service
 * offline (`serverless package`, the deployable zips), then loads each bundle in a
 * fresh Node process, several times, and reports the median init time.
 * Env: COLD_RUNS (default 15).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { ROOT } from '../tools/local-stack.js';

const RUNS = Number(process.env['COLD_RUNS'] ?? 15);

function packageService(dir: string): string {
  const out = path.join(dir, 'out');
  const env: NodeJS.ProcessEnv = { ...process.env, FEDKMS_BUILD_DIR: path.relative(ROOT, path.join(dir, 'build')) };
  delete env['FEDKMS_LOCAL_STACK'];
  // The all-in-one template needs the public keys its units trust; any will do for sizing the bundles.
  env['FEDKMS_PUBLIC_KEYS'] ??= path.join(ROOT, 'fixtures/public-keys.example.json');
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/serverless/bin/serverless.js'), 'package', '--stage', 'bench', '--package', out], { cwd: ROOT, env, stdio: 'pipe' });
  return out;
}

/** Time `require` of a module in a fresh process: for a bundle, what a cold Lambda pays at init. */
function initMs(file: string): number {
  const script = `const t=process.hrtime.bigint();require(${JSON.stringify(file)});process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e6))`;
  return Number(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, AWS_REGION: 'us-east-1' } }).toString());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-cold-'));
  console.log(`packaging the service into ${dir} ...`);
  const out = packageService(dir);
  const zips = readdirSync(out).filter((f) => f.endsWith('.zip'));
  const rows: { fn: string; bytes: number; gzip: number; zip: number; initMs: number; backendMs?: number }[] = [];
  for (const zip of zips) {
    const fn = zip.replace(/\.zip$/, '');
    const unz = path.join(dir, 'unzipped', fn);
    mkdirSync(unz, { recursive: true });
    execFileSync('unzip', ['-q', '-o', path.join(out, zip), '-d', unz]);
    const js = path.join(unz, 'functions', fn.startsWith('node') ? 'node.js' : `${fn}.js`);
    const bytes = statSync(js).size;
    const times = Array.from({ length: RUNS }, () => initMs(js));
    // The libsodium backend ships beside the bundle of functions that sign, and loads on their first signing call.
    const backend = path.join(unz, 'node_modules', 'sodium-native');
    const backendMs = existsSync(backend) ? median(Array.from({ length: RUNS }, () => initMs(backend))) : undefined;
    rows.push({ fn, bytes, gzip: gzipSync(readFileSync(js)).length, zip: statSync(path.join(out, zip)).size, initMs: median(times), ...(backendMs !== undefined ? { backendMs } : {}) });
    process.stdout.write(`  ${fn}: ${(bytes / 1024).toFixed(0)} KB, init median ${median(times).toFixed(1)} ms over ${RUNS} fresh processes${backendMs !== undefined ? `; backend load ${backendMs.toFixed(1)} ms` : ''}\n`);
  }
  console.log(`\n## Cold start: bundle size and module init (fresh Node ${process.version} process each run)`);
  console.log(`- date: ${new Date().toISOString()}; command: \`npm run bench:cold\`; ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'})`);
  console.log('\n| function | bundle KB (minified) | gzip KB | zip KB | init ms (median) | + libsodium backend on first signing call, ms (median) |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.fn} | ${(r.bytes / 1024).toFixed(0)} | ${(r.gzip / 1024).toFixed(0)} | ${(r.zip / 1024).toFixed(0)} | ${r.initMs.toFixed(1)} | ${r.backendMs !== undefined ? r.backendMs.toFixed(1) : 'not shipped'} |`);
  console.log('\nGoal for functions that do not sign (the dashboard): bundle <= 250 KB minified and init <= 60 ms.');
  mkdirSync(path.join(ROOT, 'artifacts'), { recursive: true });
  writeFileSync(path.join(ROOT, 'artifacts', 'bench-cold-start.json'), JSON.stringify({ date: new Date().toISOString(), runs: RUNS, rows }, null, 2));
}

main();
