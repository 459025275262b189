/**
 * The `fedkms` CLI, run as a child process (bin/fedkms, as `npx fedkms` runs it)
 * against a real local stack: every command, human and --json output, progress lines,
 * and the exit codes for usage errors, auth errors and "not enough nodes". Ends with a
 * scan of the stack's logs for key and share material.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LocalStack } from '../../tools/local-stack';
import { fromB64 } from '../../lib/encoding';
import { scanLogForSecrets } from '../support/log-scan';
import { testStack } from '../support/stack';

const BIN = path.resolve(__dirname, '../../bin/fedkms');
const EXAMPLE = 'A94F3D82C1B7E6F9';
let stack: LocalStack;
let cwd: string;
const released: { name: string; bytes: Uint8Array }[] = [{ name: 'example key', bytes: Buffer.from(EXAMPLE, 'hex') }];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI in an empty folder with the stack in its environment (no .local file to find). */
function fedkms(args: string[], opts: { env?: Record<string, string | undefined>; input?: Buffer } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    FEDKMS_URL: stack.url,
    FEDKMS_CLIENT: 'admin',
    FEDKMS_CLIENT_KEY: stack.secrets['admin']!['privateKey'],
    FEDKMS_NODE_URLS: [...stack.proxies].map(([id, p]) => `${id}=${p.url}`).join(','),
    ...opts.env,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

beforeAll(async () => {
  cwd = mkdtempSync(path.join(os.tmpdir(), 'fedkms-cli-'));
  stack = await testStack();
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

afterEach(async () => {
  for (const id of stack.proxies.keys()) await stack.setNode(id, { kind: 'up' });
});

describe('fedkms CLI', () => {
  it('status: a table of nodes, exit 0 with a quorum', async () => {
    const r = await fedkms(['status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/3 of 3 nodes up, threshold 2/);
    expect(r.stdout).toMatch(/^node1\s+up\s+[\d.]+ ms/m);
    const j = await fedkms(['status', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ threshold: 2, total: 3, nodesUp: 3, quorum: true });
  });

  it('keys import --hex: progress per node, and never echoes the secret', async () => {
    const r = await fedkms(['keys', 'import', 'example', '--hex', EXAMPLE]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Connecting to Node 1, Node 2, Node 3 \(all at once\)\.\.\./);
    for (const n of [1, 2, 3]) {
      expect(r.stdout).toMatch(new RegExp(`Connecting to Node ${n} \\(http://127\\.0\\.0\\.1:\\d+\\)\\.\\.\\. online`));
      expect(r.stdout).toMatch(new RegExp(`Node ${n}: share stored`));
    }
    expect(r.stdout).toMatch(/Key "example" imported: 2-of-3, v1, 8 bytes/);
    expect(r.stdout + r.stderr).not.toMatch(new RegExp(EXAMPLE, 'i'));
  });

  it('keys import --file (and stdin) and keys create --json', async () => {
    const file = path.join(cwd, 'key.bin');
    const bytes = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    released.push({ name: 'file key', bytes });
    writeFileSync(file, bytes);
    expect((await fedkms(['keys', 'import', 'from-file', '--file', file])).code).toBe(0);
    const stdinBytes = Buffer.from('fedkms stdin secret');
    released.push({ name: 'stdin key', bytes: stdinBytes });
    expect((await fedkms(['keys', 'import', 'from-stdin', '--file', '-', '--json'], { input: stdinBytes })).code).toBe(0);
    const back = JSON.parse((await fedkms(['reconstruct', 'from-file', '--json'])).stdout);
    expect(back.secret.hex).toBe(bytes.toString('hex'));
    const c = await fedkms(['keys', 'create', 'generated', '--length', '24', '--json']);
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout).key).toMatchObject({ keyId: 'generated', secretLength: 24, threshold: 2, total: 3 });
  });

  it('keys list and keys show: tables and JSON', async () => {
    const l = await fedkms(['keys', 'list']);
    expect(l.code).toBe(0);
    expect(l.stdout).toMatch(/^example\s+v1\s+node1, node2, node3$/m);
    expect(JSON.parse((await fedkms(['keys', 'list', '--json'])).stdout).keys.map((k: { keyId: string }) => k.keyId)).toEqual(
      expect.arrayContaining(['example', 'from-file', 'generated']),
    );
    const s = await fedkms(['keys', 'show', 'example']);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/threshold\s+2 of 3/);
    expect(s.stdout).toMatch(/quorum margin\s+1/);
    expect(s.stdout).toMatch(/^node2\s+valid/m);
  });

  it('reconstruct: the original walk-through, with real per-node results', async () => {
    const r = await fedkms(['reconstruct', 'example']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Requesting reconstruction of key "example"/);
    expect(r.stdout).toMatch(/Fragment received from Node \d: sealed to this process, verified here against the public commitments \([\d.]+ ms\)/);
    expect(r.stdout).toMatch(new RegExp(`Key reconstructed successfully: ${EXAMPLE}  \\(2-of-3`));
    const j = JSON.parse((await fedkms(['reconstruct', 'example', '--json'])).stdout);
    expect(j.secret.hex.toUpperCase()).toBe(EXAMPLE);
    const gen = JSON.parse((await fedkms(['reconstruct', 'generated', '--json'])).stdout);
    released.push({ name: 'generated key', bytes: fromB64(gen.secret.base64) });
  });

  it('reconstruct with one node down: names it, still succeeds', async () => {
    await stack.setNode('node2', { kind: 'down' });
    const r = await fedkms(['reconstruct', 'example']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Connecting to Node 2 \(http:\/\/127\.0\.0\.1:\d+\)\.\.\. unreachable/);
    // The coordinator asks t nodes first, healthy ones first: node2 failed lately, so it is
    // either asked and named unreachable, or not asked at all.
    expect(r.stdout).toMatch(/Node 2: (unreachable \(connection failed\)|not needed)/);
    expect(r.stdout).toMatch(/Key reconstructed successfully/);
  });

  it('not enough nodes: exit 4, nothing released', async () => {
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node2', { kind: 'down' });
    const r = await fedkms(['reconstruct', 'example']);
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/Not enough nodes returned a valid fragment: nothing was released/);
    expect(r.stderr).toMatch(/quorum_not_reached/);
    expect(r.stdout + r.stderr).not.toMatch(new RegExp(EXAMPLE, 'i'));
    const s = await fedkms(['status']);
    expect(s.code).toBe(4);
    expect(s.stdout).toMatch(/quorum LOST/);
  });

  it('exit codes: usage 2, auth 3, failed 1, unreachable 5', async () => {
    expect((await fedkms([])).code).toBe(2);
    expect((await fedkms(['frobnicate'])).code).toBe(2);
    expect((await fedkms(['keys', 'show', '../etc'])).code).toBe(2);
    expect((await fedkms(['keys', 'import', 'x'])).code).toBe(2);
    expect((await fedkms(['keys', 'import', 'x', '--hex', 'abc'])).code).toBe(2);
    expect((await fedkms(['status', '--bogus'])).code).toBe(2);
    expect((await fedkms(['status'], { env: { FEDKMS_URL: undefined, FEDKMS_FEDERATION: path.join(cwd, 'missing.json') } })).code).toBe(2);
    const auth = await fedkms(['keys', 'list'], { env: { FEDKMS_CLIENT_KEY: Buffer.alloc(32, 7).toString('base64') } });
    expect(auth.code).toBe(3);
    expect(auth.stderr).toMatch(/client_signature_invalid/);
    expect((await fedkms(['keys', 'list'], { env: { FEDKMS_CLIENT_KEY: undefined } })).code).toBe(3);
    expect((await fedkms(['keys', 'show', 'no-such-key'])).code).toBe(1);
    expect((await fedkms(['keys', 'import', 'example', '--hex', '00'])).code).toBe(1);
    expect((await fedkms(['status', '--url', 'http://127.0.0.1:1'])).code).toBe(5);
    expect((await fedkms(['--help'])).stdout).toMatch(/exit codes: 0 ok, 1 operation failed, 2 usage error, 3 authentication error,\s+4 not enough nodes/);
  });

  it('reads the endpoint and client identity from a federation file', async () => {
    const file = path.join(cwd, 'federation.json');
    writeFileSync(file, JSON.stringify({ url: stack.url, client: { name: 'admin', privateKey: stack.secrets['admin']!['privateKey'] }, nodes: Object.fromEntries([...stack.proxies].map(([id, p]) => [id, p.url])) }));
    const r = await fedkms(['keys', 'list', '--json', '--federation', file], { env: { FEDKMS_URL: undefined, FEDKMS_CLIENT: undefined, FEDKMS_CLIENT_KEY: undefined, FEDKMS_NODE_URLS: undefined } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).keys.length).toBeGreaterThanOrEqual(3);
  });

  it('keys create --type ed25519, sign and verify: a DKG key used without being rebuilt', async () => {
    const created = await fedkms(['keys', 'create', 'cli-signer', '--type', 'ed25519']);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/Ed25519 signing key \(DKG\)/);
    const pub = await fedkms(['keys', 'public', 'cli-signer']);
    expect(pub.code).toBe(0);
    expect(pub.stdout).toMatch(/^ssh-ed25519 /m);
    const signed = await fedkms(['sign', 'cli-signer', '--message', 'ship it']);
    expect(signed.code).toBe(0);
    expect(signed.stdout).toMatch(/Connecting to Node 1/);
    const sig = signed.stdout.trim().split('\n').at(-1)!;
    expect(sig).toMatch(/^[0-9a-f]{128}$/);
    expect((await fedkms(['verify', 'cli-signer', '--signature', sig, '--message', 'ship it'])).code).toBe(0);
    const forged = await fedkms(['verify', 'cli-signer', '--signature', sig, '--message', 'ship it!', '--json']);
    expect(forged.code).toBe(1);
    expect(JSON.parse(forged.stdout)).toMatchObject({ valid: false });
    const digest = await fedkms(['sign', 'cli-signer', '--digest', 'ab'.repeat(32), '--json']);
    expect(digest.code).toBe(0);
    expect((await fedkms(['verify', 'cli-signer', '--signature', JSON.parse(digest.stdout).signature.hex, '--digest', 'ab'.repeat(32)])).code).toBe(0);
    expect((await fedkms(['sign', 'cli-signer'])).code).toBe(2);
    expect((await fedkms(['reconstruct', 'cli-signer'])).code).toBe(1);
  });

  it('audit verify: every chain intact', async () => {
    const r = await fedkms(['audit', 'verify']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^reconstruct\s+intact/m);
    expect(r.stdout).toMatch(/Audit trail verified: every chain is intact\./);
  });

  it('leaves no key or share material in the logs of the whole run', async () => {
    const scan = await scanLogForSecrets(stack, released);
    expect(scan.shares).toBeGreaterThanOrEqual(12);
    expect(scan.leaks).toEqual([]);
  });
});
