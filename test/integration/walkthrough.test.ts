/**
 * The README's federation walk-through, run exactly as written: `npm start` (the README's
 * first command) in a fresh folder, a new operator's `npm run node -- --id node4`, then the
 * administrator's commands, line by line, through the real CLI. Only the ports differ, so the
 * test never clashes with a federation someone is running (FEDKMS_HOME, FEDKMS_PORT,
 * FEDKMS_CONTROL_PORT).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../tools/operator';
import { run } from '../support/run';

const ROOT = path.resolve(__dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const BIN = path.join(ROOT, 'bin/fedkms');
let dir: string;
let env: NodeJS.ProcessEnv;
let controlPort: number;
const children: ChildProcess[] = [];

/** Start a long-running command; resolve once its output says `ready`. */
function startUntil(args: string[], ready: RegExp, timeoutMs: number): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(TSX, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: not ready after ${timeoutMs} ms:\n${output.slice(-3000)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited (${code}):\n${output.slice(-3000)}`));
    });
  });
}

async function stopAll() {
  for (const c of children.reverse()) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

/** The README section's code blocks, in order. */
function walkthrough(): string[][] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('## A federation of operators');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 5));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean));
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-walk-'));
  controlPort = await freePort();
  env = { ...process.env, FEDKMS_HOME: path.join(dir, '.local'), FEDKMS_PORT: String(await freePort()), FEDKMS_CONTROL_PORT: String(controlPort) };
  await startUntil([path.join(ROOT, 'scripts/start-local.ts')], /fedkms local federation is up/, 300_000);
}, 320_000);

afterAll(async () => {
  await stopAll();
}, 60_000);

it("runs the README's federation walk-through exactly as written: add node4, reshare to 3-of-4, stop node1, sign and reconstruct", async () => {
  const [operator, admin] = walkthrough();
  // The new operator's terminal.
  expect(operator).toEqual(['npm run node -- --id node4']);
  await startUntil([path.join(ROOT, 'scripts/run-node.ts'), '--id', 'node4'], /node4 is up/, 300_000);
  expect(existsSync(path.join(dir, '.local/nodes/node4/identity.json'))).toBe(true);
  // The administrator's terminal: every line as written, but for the control port.
  const script = ['set -euo pipefail', 'set -x', `fedkms() { "${process.execPath}" "${BIN}" "$@"; }`, ...admin!.map((l) => l.replace(/npx fedkms/g, 'fedkms').replace('127.0.0.1:3099', `127.0.0.1:${controlPort}`))].join('\n');
  const r = await run('bash', ['-c', script], { cwd: dir, env });
  if (r.code !== 0) throw new Error(`the walk-through failed (exit ${r.code}):\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-4000)}`);
  expect(r.stdout).toMatch(/Membership version 2/);
  expect(r.stdout).toMatch(/node4\s+4\s+up\s+0/);
  expect(r.stdout).toMatch(/Key reconstructed successfully: A94F3D82C1B7E6F9/);
  expect(r.stdout).toMatch(/\b[0-9a-f]{128}\b/);
}, 600_000);
