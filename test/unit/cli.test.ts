/**
 * The CLI without a federation: the command line (help, one-line usage errors, per-command
 * options), the input rules (hex vs raw bytes), `verify --public-key` with no configuration
 * at all, and the local front door's answers for unknown routes.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { main } from '../../scripts/cli/main';
import { secretFromFlags } from '../../scripts/cli/input';
import { UsageError } from '../../scripts/cli/args';
import { armorSshSignature, publicKeyFormats, sshsigSignedData } from '../../lib/crypto/key-formats';
import { routeTable, unmatchedRoute } from '../../tools/front-door';

let dir: string;
const saved = { ...process.env };

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-cli-unit-'));
});

beforeEach(() => {
  // No federation anywhere: nothing in the environment, no .local file in the working directory.
  for (const k of Object.keys(process.env)) if (k.startsWith('FEDKMS_')) delete process.env[k];
  process.env['FEDKMS_FEDERATION'] = path.join(dir, 'absent.json');
});

afterAll(() => {
  process.env = saved;
});

/** Run main() and capture what it writes. */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((stdout += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((stderr += String(s)), true));
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('command line', () => {
  it('gives each group and command its own help, on stdout, exit 0', async () => {
    const keys = await run(['keys', '--help']);
    expect(keys.code).toBe(0);
    for (const verb of ['list', 'show', 'import', 'create', 'public', 'state', 'policy', 'refresh', 'reshare']) expect(keys.stdout).toMatch(new RegExp(`fedkms keys ${verb}\\b`));
    const reshare = await run(['keys', 'reshare', '--help']);
    expect(reshare.stdout).toMatch(/usage: fedkms keys reshare <keyId> \[options\]/);
    expect(reshare.stdout).toMatch(/--threshold T/);
    expect(reshare.stdout).toMatch(/--nodes a,b,c/);
    for (const g of ['clients', 'approvals']) expect((await run([g, '--help'])).stdout).toMatch(new RegExp(`usage: fedkms ${g} <command>`));
    const all = await run(['--help']);
    for (const c of ['keys state', 'keys policy', 'keys refresh', 'keys reshare', 'clients list', 'clients add', 'approvals list', 'approvals open', 'approvals approve', 'sign', 'verify']) expect(all.stdout).toContain(`  ${c} `);
  });

  it('says what is missing, in one line, exit 2', async () => {
    const r = await run(['keys', 'show']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('fedkms: keys show: missing <keyId> (usage: fedkms keys show <keyId>)\n(run `fedkms keys show --help` for usage)\n');
    expect((await run(['keys', 'state', 'k'])).stderr).toMatch(/^fedkms: keys state: missing <state>/);
    expect((await run(['approvals', 'approve', 'k'])).stderr).toMatch(/^fedkms: approvals approve: missing <digest>/);
    expect((await run(['keys', 'show', 'a', 'b'])).stderr).toMatch(/^fedkms: keys show: unexpected argument "b"/);
  });

  it('names an unknown option in one line, without Node\'s parser message or the whole help', async () => {
    const r = await run(['status', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('fedkms: status: unknown option --bogus\n(run `fedkms status --help` for usage)\n');
    expect(r.stdout).toBe('');
    // Options belong to their command: --length is create's, not sign's.
    expect((await run(['sign', 'k', '--length', '3'])).stderr).toMatch(/^fedkms: sign: unknown option --length\n/);
    expect((await run(['keys', 'import', 'k', '--hex'])).stderr).toMatch(/^fedkms: keys import: --hex needs a value \(HEX\|-\)\n/);
    expect((await run(['keys', 'import', 'k', '--hex', '--json'])).stderr).toMatch(/--hex needs a value .*got the option --json/);
    expect((await run(['status', '--json=yes'])).stderr).toMatch(/^fedkms: status: --json takes no value\n/);
  });

  it('unknown commands and bare groups are usage errors that list the choices', async () => {
    expect(await run(['frobnicate'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/^fedkms: unknown command: frobnicate\n/) });
    expect(await run(['keys', 'frob'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/unknown command "frob" \(commands: list, show, import/) });
    expect(await run(['keys'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/keys: which command\?/) });
    expect((await run([])).code).toBe(2);
  });

  it('refuses to destroy a key without --yes, before asking anyone', async () => {
    const r = await run(['keys', 'state', 'k', 'destroyed', '--url', 'http://127.0.0.1:1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/add --yes to confirm/);
    expect((await run(['keys', 'state', 'k', 'gone', '--url', 'http://127.0.0.1:1'])).stderr).toMatch(/unknown state "gone": one of pre-active, active, disabled, compromised, destroyed/);
  });
});

describe('key input: hex is decoded, raw bytes are raw', () => {
  it('--hex and --base64 take text; --file takes bytes', () => {
    expect(secretFromFlags({ hex: '0xA94F3D82C1B7E6F9' })).toEqual({ secretHex: 'A94F3D82C1B7E6F9' });
    expect(secretFromFlags({ base64: 'qU89gsG35vk=' })).toEqual({ secretBase64: 'qU89gsG35vk=' });
    const bin = path.join(dir, 'key.bin');
    writeFileSync(bin, Buffer.from([0, 1, 2, 0xff]));
    expect(secretFromFlags({ file: bin })).toEqual({ secretBase64: Buffer.from([0, 1, 2, 0xff]).toString('base64') });
  });

  it('a --file of hex text is refused unless --raw says the text is the secret', () => {
    const hex = path.join(dir, 'key.hex');
    writeFileSync(hex, 'A94F3D82C1B7E6F9\n');
    expect(() => secretFromFlags({ file: hex })).toThrow(UsageError);
    expect(() => secretFromFlags({ file: hex })).toThrow(/holds hex text: use --hex/);
    expect(secretFromFlags({ file: hex, raw: true })).toEqual({ secretBase64: Buffer.from('A94F3D82C1B7E6F9\n').toString('base64') });
  });

  it('refuses two sources, none, or malformed text', () => {
    expect(() => secretFromFlags({})).toThrow(/exactly one of --hex, --base64 or --file/);
    expect(() => secretFromFlags({ hex: 'ab', base64: 'qw==' })).toThrow(/exactly one/);
    expect(() => secretFromFlags({ hex: 'abc' })).toThrow(/even-length hex/);
    expect(() => secretFromFlags({ base64: 'not base64!' })).toThrow(/--base64 must be base64/);
  });
});

describe('verify --public-key: no federation, no client', () => {
  const secretKey = ed25519.utils.randomSecretKey();
  const publicKey = ed25519.getPublicKey(secretKey);
  const message = Buffer.from('release v1.2.3\n');
  const formats = publicKeyFormats(publicKey, 'fedkms:test');

  it('accepts PEM, OpenSSH and hex public keys, and hex signatures', async () => {
    const msg = path.join(dir, 'msg.txt');
    writeFileSync(msg, message);
    const sig = Buffer.from(ed25519.sign(message, secretKey)).toString('hex');
    for (const [name, text] of [['k.pem', formats.pem], ['k.pub', `${formats.openssh}\n`], ['k.hex', `${formats.hex}\n`]] as const) {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      const ok = await run(['verify', '--public-key', file, '--signature', sig, msg]);
      expect(ok).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Signature valid for that public key/) });
      const bad = await run(['verify', '--public-key', file, '--signature', sig, '--message', 'release v1.2.4\n', '--json']);
      expect(bad.code).toBe(1);
      expect(JSON.parse(bad.stdout)).toEqual({ valid: false, format: 'ed25519', publicKey: formats.hex });
    }
  });

  it('accepts an armored SSH signature for the namespace it is told, and only that one', async () => {
    const msg = path.join(dir, 'msg2.txt');
    writeFileSync(msg, message);
    const armored = armorSshSignature(publicKey, 'file', ed25519.sign(sshsigSignedData(message, 'file'), secretKey));
    const sigFile = path.join(dir, 'msg2.txt.sig');
    writeFileSync(sigFile, armored);
    const keyFile = path.join(dir, 'ssh.pub');
    writeFileSync(keyFile, formats.openssh);
    expect((await run(['verify', '--public-key', keyFile, '--ssh', 'file', '--signature', sigFile, msg])).code).toBe(0);
    const other = await run(['verify', '--public-key', keyFile, '--ssh', 'git', '--signature', sigFile, msg, '--json']);
    expect(other.code).toBe(1);
    expect(JSON.parse(other.stdout)).toMatchObject({ valid: false, reason: 'signed for namespace "file", not "git"' });
    const none = await run(['verify', '--public-key', keyFile, '--signature', sigFile, msg]);
    expect(none).toMatchObject({ code: 2, stderr: expect.stringMatching(/SSH signature for namespace "file": pass --ssh NAMESPACE/) });
    // Another key's signature is named as such.
    const stranger = publicKeyFormats(ed25519.getPublicKey(ed25519.utils.randomSecretKey()));
    writeFileSync(keyFile, stranger.openssh);
    expect(JSON.parse((await run(['verify', '--public-key', keyFile, '--ssh', 'file', '--signature', sigFile, msg, '--json'])).stdout).reason).toMatch(/made by another key/);
  });

  it('refuses a public key it cannot read, as a usage error', async () => {
    const keyFile = path.join(dir, 'junk.pub');
    writeFileSync(keyFile, 'not a key');
    const r = await run(['verify', '--public-key', keyFile, '--signature', 'ab'.repeat(64), '--message', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--public-key: expected an Ed25519 public key as PEM, an OpenSSH ssh-ed25519 line, or 64 hex digits/);
  });
});

describe('front door: unknown routes in the project\'s error format', () => {
  const routes = routeTable(['GET - /status', 'GET - /keys', 'POST - /keys', 'GET - /keys/{keyId}', 'POST - /keys/{keyId}/sign', 'GET - /nodes/node1/status', 'GET - /dashboard', '* - /anything/{proxy*}']);

  it('lets known routes through', () => {
    expect(unmatchedRoute(routes, 'GET', '/status')).toBeUndefined();
    expect(unmatchedRoute(routes, 'GET', '/keys/example?x=1')).toBeUndefined();
    expect(unmatchedRoute(routes, 'POST', '/keys/example/sign')).toBeUndefined();
    expect(unmatchedRoute(routes, 'GET', '/dashboard/')).toBeUndefined();
    expect(unmatchedRoute(routes, 'DELETE', '/anything/a/b')).toBeUndefined();
  });

  it('404 route_not_found for an unknown path, 405 method_not_allowed with Allow for a known one', () => {
    const nf = unmatchedRoute(routes, 'GET', '/favicon.ico')!;
    expect(nf.status).toBe(404);
    expect(JSON.parse(nf.body)).toEqual({ error: { code: 'route_not_found', message: 'no route GET /favicon.ico' } });
    expect(unmatchedRoute(routes, 'GET', '/keys/example/sign/extra')!.status).toBe(404);
    const na = unmatchedRoute(routes, 'DELETE', '/keys')!;
    expect(na.status).toBe(405);
    expect(na.headers['allow']).toBe('GET, POST');
    expect(JSON.parse(na.body).error.code).toBe('method_not_allowed');
  });
});
