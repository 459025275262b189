/**
 * The `fedkms` CLI, run as a child process (bin/fedkms, as `npx fedkms` runs it)
 * against a real local stack: every command, human and --json output, progress lines,
 * and the exit codes for usage errors, auth errors and "not enough nodes". Ends with a
 * scan of the stack's logs for key and share material.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LocalStack } from '../../tools/local-stack';
import { fromB64 } from '../../lib/encoding';
import { scanLogForSecrets } from '../support/log-scan';
import { testStack } from '../support/stack';
import { run, type Run } from '../support/run';
import { launchBrowser } from '../support/browser';

const BIN = path.resolve(__dirname, '../../bin/fedkms');
const EXAMPLE = 'A94F3D82C1B7E6F9';
let stack: LocalStack;
let cwd: string;
const released: { name: string; bytes: Uint8Array }[] = [{ name: 'example key', bytes: Buffer.from(EXAMPLE, 'hex') }];


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
  return run(process.execPath, [BIN, ...args], { cwd, env, ...(opts.input ? { input: opts.input } : {}) });
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
    // A signing key's policy cannot grant reconstruct (one key, one purpose): refused (exit 3).
    expect((await fedkms(['reconstruct', 'cli-signer'])).code).toBe(3);
  });

  it('audit verify: every chain intact', async () => {
    const r = await fedkms(['audit', 'verify']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^reconstruct\s+intact/m);
    expect(r.stdout).toMatch(/Audit trail verified: every chain is intact\./);
  });

  it('keys import --hex - reads hex from stdin; --file - refuses hex text', async () => {
    const piped = await fedkms(['keys', 'import', 'piped-hex', '--hex', '-'], { input: Buffer.from(`${EXAMPLE}\n`) });
    expect(piped.code).toBe(0);
    expect(piped.stdout).toMatch(/Key "piped-hex" imported: 2-of-3, v1, 8 bytes/);
    expect(JSON.parse((await fedkms(['reconstruct', 'piped-hex', '--json'])).stdout).secret.hex.toUpperCase()).toBe(EXAMPLE);
    const text = await fedkms(['keys', 'import', 'piped-text', '--file', '-'], { input: Buffer.from(`${EXAMPLE}\n`) });
    expect(text.code).toBe(2);
    expect(text.stderr).toMatch(/stdin holds hex text: use --hex - to import the bytes it encodes, or add --raw/);
  });

  it('keys public: readable without a client identity, in each format', async () => {
    const noClient = { FEDKMS_CLIENT: undefined, FEDKMS_CLIENT_KEY: undefined };
    const pem = await fedkms(['keys', 'public', 'cli-signer', '--format', 'pem'], { env: noClient });
    expect(pem.code).toBe(0);
    expect(pem.stdout).toMatch(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n$/);
    expect((await fedkms(['keys', 'public', 'cli-signer', '--format', 'ssh'], { env: noClient })).stdout).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+ fedkms:cli-signer\n$/);
    const hex = (await fedkms(['keys', 'public', 'cli-signer', '--format', 'hex'], { env: noClient })).stdout.trim();
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse((await fedkms(['keys', 'show', 'cli-signer', '--json'])).stdout).key.groupPublicKey).toBe(hex);
    // Unknown keys are still 404, for everyone.
    expect((await fedkms(['keys', 'public', 'no-such-key'], { env: noClient })).code).toBe(1);
  });

  it('sign --ssh: ssh-keygen -Y verify accepts it; sign: openssl pkeyutl -verify accepts it', async () => {
    const msg = path.join(cwd, 'release.txt');
    writeFileSync(msg, 'release v1.2.3\n');
    const signed = await fedkms(['sign', 'cli-signer', '--ssh', 'file', msg]);
    expect(signed.code).toBe(0);
    // stdout is the signature file, nothing else; progress went to stderr.
    expect(signed.stdout).toMatch(/^-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+-----END SSH SIGNATURE-----\n$/);
    expect(signed.stderr).toMatch(/Connecting to Node 1/);
    writeFileSync(`${msg}.sig`, signed.stdout);
    const ssh = (await fedkms(['keys', 'public', 'cli-signer', '--format', 'ssh'])).stdout.trim();
    writeFileSync(path.join(cwd, 'allowed_signers'), `release@example.org ${ssh}\n`);
    const sshVerify = (ns: string) => spawnSync('ssh-keygen', ['-Y', 'verify', '-f', path.join(cwd, 'allowed_signers'), '-I', 'release@example.org', '-n', ns, '-s', `${msg}.sig`], { input: readFileSync(msg) });
    const ok = sshVerify('file');
    expect(ok.error).toBeUndefined();
    expect(ok.status).toBe(0);
    expect(sshVerify('git').status).not.toBe(0);

    const raw = JSON.parse((await fedkms(['sign', 'cli-signer', '--file', msg, '--json'])).stdout);
    writeFileSync(path.join(cwd, 'release.sig.bin'), Buffer.from(raw.signature.hex, 'hex'));
    writeFileSync(path.join(cwd, 'signer.pem'), (await fedkms(['keys', 'public', 'cli-signer', '--format', 'pem'])).stdout);
    const openssl = (file: string) => spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', path.join(cwd, 'signer.pem'), '-rawin', '-in', file, '-sigfile', path.join(cwd, 'release.sig.bin')], { encoding: 'utf8' });
    const verified = openssl(msg);
    expect(verified.error).toBeUndefined();
    expect(verified.stdout).toMatch(/Signature Verified Successfully/);
    expect(verified.status).toBe(0);
    writeFileSync(path.join(cwd, 'tampered.txt'), 'release v1.2.4\n');
    expect(openssl(path.join(cwd, 'tampered.txt')).status).not.toBe(0);
  });

  it('verify --public-key needs no federation at all: PEM, OpenSSH, hex; hex and SSH signatures', async () => {
    const msg = path.join(cwd, 'release.txt');
    const none = { FEDKMS_URL: undefined, FEDKMS_CLIENT: undefined, FEDKMS_CLIENT_KEY: undefined, FEDKMS_NODE_URLS: undefined, FEDKMS_FEDERATION: path.join(cwd, 'missing.json') };
    writeFileSync(path.join(cwd, 'signer.pub'), (await fedkms(['keys', 'public', 'cli-signer', '--format', 'ssh'])).stdout);
    writeFileSync(path.join(cwd, 'signer.hex'), (await fedkms(['keys', 'public', 'cli-signer', '--format', 'hex'])).stdout);
    const hexSig = Buffer.from(readFileSync(path.join(cwd, 'release.sig.bin'))).toString('hex');
    for (const key of ['signer.pem', 'signer.pub', 'signer.hex']) {
      const r = await fedkms(['verify', '--public-key', path.join(cwd, key), '--signature', hexSig, msg], { env: none });
      expect(r).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Signature valid for that public key/) });
    }
    const ssh = await fedkms(['verify', '--public-key', path.join(cwd, 'signer.pub'), '--ssh', 'file', '--signature', `${msg}.sig`, msg, '--json'], { env: none });
    expect(ssh.code).toBe(0);
    expect(JSON.parse(ssh.stdout)).toMatchObject({ valid: true, format: 'sshsig', namespace: 'file' });
    const forged = await fedkms(['verify', '--public-key', path.join(cwd, 'signer.pem'), '--signature', hexSig, '--message', 'release v9\n'], { env: none });
    expect(forged).toMatchObject({ code: 1, stdout: expect.stringMatching(/Signature INVALID/) });
    // The federation's own verify takes the SSH signature too.
    expect((await fedkms(['verify', 'cli-signer', '--ssh', 'file', '--signature', `${msg}.sig`, msg])).code).toBe(0);
  });

  it('keys state, policy, refresh and reshare: per-node lines, JSON, exit codes', async () => {
    const off = await fedkms(['keys', 'state', 'generated', 'disabled', '--reason', 'cli test']);
    expect(off.code).toBe(0);
    expect(off.stdout).toMatch(/Node 1: now disabled/);
    expect(off.stdout).toMatch(/Key "generated" is disabled on every node that holds it\./);
    const refused = await fedkms(['reconstruct', 'generated']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/key_disabled/);
    expect(JSON.parse((await fedkms(['keys', 'state', 'generated', 'active', '--json'])).stdout)).toMatchObject({ keyId: 'generated', state: 'active' });
    const illegal = await fedkms(['keys', 'state', 'generated', 'pre-active']);
    expect(illegal.code).toBe(1);

    const before = JSON.parse((await fedkms(['keys', 'policy', 'generated', '--json'])).stdout);
    expect(before).toMatchObject({ keyId: 'generated', state: 'active' });
    const policy = { sign: [], reconstruct: ['role:admin'], describe: ['role:admin'], admin: ['role:admin'], approvals: { required: 0, approvers: ['role:approver'] }, serverSideCombine: false };
    const set = await fedkms(['keys', 'policy', 'generated', '--set', JSON.stringify(policy)]);
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/Node 2: policy applied/);
    const after = JSON.parse((await fedkms(['keys', 'policy', 'generated', '--json'])).stdout);
    expect(after.policyVersion).toBeGreaterThan(before.policyVersion ?? 0);
    writeFileSync(path.join(cwd, 'bad-policy.json'), '{"sign":[]}');
    expect((await fedkms(['keys', 'policy', 'generated', '--set', path.join(cwd, 'bad-policy.json')])).code).toBe(1);

    const refreshed = await fedkms(['keys', 'refresh', 'cli-signer']);
    expect(refreshed.code).toBe(0);
    expect(refreshed.stdout).toMatch(/Key "cli-signer" refreshed: v1 -> v2, 2-of-3 on node1, node2, node3/);
    const reshared = JSON.parse((await fedkms(['keys', 'reshare', 'cli-signer', '--threshold', '3', '--nodes', 'node1,node2,node3', '--json'])).stdout);
    expect(reshared.key).toMatchObject({ version: 3, threshold: 3, total: 3 });
    expect((await fedkms(['keys', 'reshare', 'cli-signer'])).code).toBe(2);
    // The public key never changes; signatures still verify under it.
    const sig = JSON.parse((await fedkms(['sign', 'cli-signer', '--message', 'after reshare', '--json'])).stdout).signature.hex;
    expect((await fedkms(['verify', '--public-key', path.join(cwd, 'signer.pem'), '--signature', sig, '--message', 'after reshare'], { env: { FEDKMS_URL: undefined } })).code).toBe(0);
    expect((await fedkms(['keys', 'reshare', 'cli-signer', '--threshold', '2'])).code).toBe(0);
  });

  it('clients and approvals: register, approve m-of-n, reconstruct with the request file', async () => {
    const alice = path.join(cwd, 'alice.key');
    const bob = path.join(cwd, 'bob.key');
    const added = await fedkms(['clients', 'add', 'alice', '--generate-key', alice]);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/Node 3: registry updated/);
    expect((await fedkms(['clients', 'add', 'bob', '--generate-key', bob, '--roles', 'approver'])).code).toBe(0);
    expect((await fedkms(['clients', 'add', 'bob', '--generate-key', bob])).stderr).toMatch(/exists: choose another file/);
    const list = await fedkms(['clients', 'list']);
    expect(list.stdout).toMatch(/^bob\s+active\s+approver\s+/m);
    expect(JSON.parse((await fedkms(['clients', 'list', '--json'])).stdout).clients.map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(['admin', 'alice', 'bob']));

    const vault = 'C0FFEE00DEADBEEF0123456789ABCDEF';
    released.push({ name: 'vault key', bytes: Buffer.from(vault, 'hex') });
    expect((await fedkms(['keys', 'import', 'vault', '--hex', vault])).code).toBe(0);
    const policy = { sign: [], reconstruct: ['client:alice'], describe: ['role:admin', 'client:alice'], admin: ['role:admin'], approvals: { required: 1, approvers: ['role:approver'] }, serverSideCombine: false };
    expect((await fedkms(['keys', 'policy', 'vault', '--set', '-'], { input: Buffer.from(JSON.stringify({ policy })) })).code).toBe(0);

    const asAlice = { FEDKMS_CLIENT: 'alice', FEDKMS_CLIENT_KEY: readFileSync(alice, 'utf8').trim() };
    const asBob = { FEDKMS_CLIENT: 'bob', FEDKMS_CLIENT_KEY: readFileSync(bob, 'utf8').trim() };
    const early = await fedkms(['reconstruct', 'vault'], { env: asAlice });
    expect(early.code).toBe(3);
    // Without a request, the nodes find no approvals bound to it.
    expect(early.stderr).toMatch(/approvals_(required|expired)/);
    expect(early.stderr).toMatch(/hint: This key needs approvals: `fedkms approvals open KEY`/);

    const requestFile = path.join(cwd, 'vault-request.json');
    const opened = await fedkms(['approvals', 'open', 'vault', '--out', requestFile], { env: asAlice });
    expect(opened.code).toBe(0);
    const digest = /^digest: ([0-9a-f]{64})$/m.exec(opened.stdout)![1]!;
    expect(existsSync(requestFile)).toBe(true);
    expect(opened.stdout).toContain(`fedkms approvals approve vault ${digest}`);
    expect((await fedkms(['approvals', 'list', 'vault'])).stdout).toMatch(new RegExp(`^${digest}\\s+alice\\s+v1\\s+\\S+\\s+-$`, 'm'));
    const self = await fedkms(['approvals', 'approve', 'vault', digest], { env: asAlice });
    expect(self.code).toBe(3);
    expect(self.stderr).toMatch(/self_approval/);
    const approved = await fedkms(['approvals', 'approve', 'vault', digest], { env: asBob });
    expect(approved.code).toBe(0);
    expect(approved.stdout).toMatch(/Approved\. Approvals so far: bob\./);
    expect(JSON.parse((await fedkms(['approvals', 'list', 'vault', '--json'])).stdout).requests[0].approvers).toEqual(['bob']);

    const back = await fedkms(['reconstruct', 'vault', '--request', requestFile, '--json'], { env: asAlice });
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout).secret.hex.toUpperCase()).toBe(vault);

    expect((await fedkms(['clients', 'disable', 'bob'])).code).toBe(0);
    expect((await fedkms(['clients', 'list'])).stdout).toMatch(/^bob\s+disabled\s+/m);
    // Nodes decide describe requests, and never cache a client's standing.
    const locked = await fedkms(['keys', 'show', 'example'], { env: asBob });
    expect(locked.code).toBe(3);
    expect(locked.stderr).toMatch(/client_disabled/);
    expect((await fedkms(['clients', 'enable', 'bob'])).code).toBe(0);
  });

  it('below quorum: keys show prints the per-node table; the client check says what to do', async () => {
    // A client the coordinator has not confirmed yet (registration clears its cache entry).
    const carol = path.join(cwd, 'carol.key');
    expect((await fedkms(['clients', 'add', 'carol', '--generate-key', carol, '--roles', 'auditor'])).code).toBe(0);
    await stack.setNode('node1', { kind: 'down' });
    await stack.setNode('node2', { kind: 'down' });
    const s = await fedkms(['keys', 'show', 'example']);
    expect(s.code).toBe(4);
    expect(s.stdout).toMatch(/^NODE\s+ANSWER\s+LATENCY\s+DETAIL$/m);
    expect(s.stdout).toMatch(/^node1\s+unreachable/m);
    expect(s.stdout).toMatch(/^node3\s+valid/m);
    expect(s.stderr).toMatch(/quorum_not_reached/);
    expect(s.stderr).toMatch(/hint: Fewer than the threshold of nodes gave a valid answer \(1 did\)\. Check `fedkms status`/);
    const c = await fedkms(['keys', 'list'], { env: { FEDKMS_CLIENT: 'carol', FEDKMS_CLIENT_KEY: readFileSync(carol, 'utf8').trim() } });
    expect(c.code).toBe(4);
    expect(c.stderr).toMatch(/client carol/);
    expect(c.stderr).toMatch(/hint: The coordinator confirms your client identity with a threshold of nodes before anything else, and 1 of 3 agreed\. Check `fedkms status`: bring the nodes that are down back up/);
  });

  it('unknown routes and methods answer in the project\'s error format', async () => {
    const nf = await fetch(`${stack.url}/favicon.ico`);
    expect(nf.status).toBe(404);
    expect(await nf.json()).toEqual({ error: { code: 'route_not_found', message: 'no route GET /favicon.ico' } });
    const na = await fetch(`${stack.url}/keys`, { method: 'DELETE' });
    expect(na.status).toBe(405);
    expect(na.headers.get('allow')).toBe('GET, POST');
    expect(((await na.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    // Known routes are untouched.
    expect((await fetch(`${stack.url}/status`)).status).toBe(200);
  });

  it('the dashboard works when opened with credentials in the URL, and asks for no favicon', async () => {
    const token = stack.secrets['dashboard']?.['viewerToken'];
    expect(token).toBeTruthy();
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const requested: string[] = [];
      page.on('request', (r) => requested.push(new URL(r.url()).pathname));
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const u = new URL(`${stack.url}/dashboard`);
      u.username = 'operator';
      u.password = token!;
      expect((await page.goto(u.toString()))?.status()).toBe(200);
      await page.locator('#nodes tr[data-node="node1"]').first().waitFor({ state: 'visible', timeout: 30_000 });
      expect(await page.locator('#banner').isVisible()).toBe(false);
      expect(requested).not.toContain('/favicon.ico');
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it("runs the README's CLI walk-through, which covers every command", async () => {
    const readme = readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## The `fedkms` CLI'));
    const block = /```console\n([\s\S]*?)```/.exec(section.slice(0, section.indexOf('\n## ')))![1]!;
    const commands = block.split('\n').filter((l) => l.startsWith('$ ')).map((l) => l.slice(2));
    // Every command of `fedkms --help` appears in the README: in this walk-through, or (adding and
    // removing nodes, which need another operator's node) in the federation walk-through, which
    // test/integration/operators.test.ts runs step by step.
    const help = (await fedkms(['--help'])).stdout;
    const verbs = help.slice(help.indexOf('commands:'), help.indexOf('groups')).split('\n').slice(1).filter(Boolean).map((l) => l.trim().split(/\s+<|\s+\[|\s{2,}/)[0]!);
    expect(verbs.length).toBeGreaterThan(15);
    const shown = (v: string) => commands.some((c) => new RegExp(`npx fedkms ${v}(\\s|$)`).test(c)) || new RegExp(`npx fedkms ${v}[\\s\`]`).test(readme);
    expect(verbs.filter((v) => !shown(v))).toEqual([]);
    // `npm start` imports the example key; so did the first tests here (this one may run alone).
    await fedkms(['keys', 'import', 'example', '--hex', EXAMPLE]);
    // Run them in order, as one script, in a fresh folder (the curl line is the local stack's fault injection: skipped).
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-readme-'));
    const script = ['set -euo pipefail', 'set -x', `fedkms() { "${process.execPath}" "${BIN}" "$@"; }`, ...commands.filter((c) => !c.startsWith('curl ')).map((c) => c.replace(/npx fedkms/g, 'fedkms'))].join('\n');
    const env: NodeJS.ProcessEnv = { ...process.env, FEDKMS_URL: stack.url, FEDKMS_CLIENT: 'admin', FEDKMS_CLIENT_KEY: stack.secrets['admin']!['privateKey'], FEDKMS_NODE_URLS: [...stack.proxies].map(([id, p]) => `${id}=${p.url}`).join(',') };
    const r = await run('bash', ['-c', script], { cwd: dir, env });
    // On failure, the script's trace (set -x) says which line and why.
    if (r.code !== 0) throw new Error(`the walk-through failed (exit ${r.code}):\n${r.stderr.slice(-4000)}`);
    expect(r.stdout).toMatch(/Key reconstructed successfully: A94F3D82C1B7E6F9/);
    expect(r.stdout + r.stderr).toMatch(/Good "file" signature for release@example.org/);
    expect(r.stdout).toMatch(/Audit trail verified: every chain is intact\./);
  });

  it('leaves no key or share material in the logs of the whole run', async () => {
    const scan = await scanLogForSecrets(stack, released);
    expect(scan.shares).toBeGreaterThanOrEqual(12);
    expect(scan.leaks).toEqual([]);
  });
});
