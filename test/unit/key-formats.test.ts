import { createHash, createPublicKey, generateKeyPairSync, verify as nodeVerify } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import {
  allowedSignersLine,
  armorSshSignature,
  assertEd25519PublicKey,
  parseEd25519PublicKey,
  parseSshSignature,
  publicKeyFormats,
  sshsigSignedData,
  type SshHashAlg,
} from '../../lib/crypto/key-formats';
import { BadRequestError } from '../../lib/errors';

// CI installs openssh-client; a missing tool must fail loudly, never skip.
const SSH_KEYGEN = process.env.SSH_KEYGEN ?? 'ssh-keygen';

function sshKeygen(args: string[], input?: Uint8Array) {
  const r = spawnSync(SSH_KEYGEN, args, { input, encoding: 'utf8' });
  if (r.error) {
    throw new Error(`cannot run ${SSH_KEYGEN} (${r.error.message}); install openssh-client or set SSH_KEYGEN`);
  }
  return r;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fedkms-keyfmt-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const keypair = () => {
  const secretKey = ed25519.utils.randomSecretKey();
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
};

/** Writes message, signature and allowed_signers, then runs `ssh-keygen -Y verify`. */
function sshVerify(opts: { publicKey: Uint8Array; armored: string; message: Uint8Array; namespace: string }) {
  writeFileSync(join(dir, 'allowed_signers'), `${allowedSignersLine('tester', opts.publicKey)}\n`);
  writeFileSync(join(dir, 'sig.sig'), opts.armored);
  const args = ['-Y', 'verify', '-f', join(dir, 'allowed_signers'), '-I', 'tester', '-n', opts.namespace, '-s', join(dir, 'sig.sig')];
  return sshKeygen(args, opts.message);
}

/** Threshold-style flow: sign the SSHSIG bytes with a bare Ed25519 key, then armor. */
function signSsh(secretKey: Uint8Array, publicKey: Uint8Array, message: Uint8Array, namespace: string, hashAlg?: SshHashAlg) {
  const sig = ed25519.sign(sshsigSignedData(message, namespace, hashAlg), secretKey);
  return armorSshSignature(publicKey, namespace, sig, hashAlg);
}

/** Seed of an unencrypted OpenSSH ed25519 private key (PROTOCOL.key), to compare with ssh-keygen byte for byte. */
function openSshSeed(pem: string): Uint8Array {
  const body = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(body, 'base64');
  let off = 'openssh-key-v1\0'.length;
  const str = () => {
    const n = buf.readUInt32BE(off);
    const s = buf.subarray(off + 4, off + 4 + n);
    off += 4 + n;
    return s;
  };
  const [cipher] = [str(), str(), str()]; // ciphername, kdfname, kdfoptions
  if (cipher.toString() !== 'none') throw new Error('key is encrypted');
  off += 4; // number of keys
  str(); // public key blob
  const priv = str();
  off = 8; // check1, check2
  const s = () => {
    const n = priv.readUInt32BE(off);
    const v = priv.subarray(off + 4, off + 4 + n);
    off += 4 + n;
    return v;
  };
  s(); // key type
  s(); // public key
  return new Uint8Array(s().subarray(0, 32)); // private = seed ‖ public
}

describe('publicKeyFormats', () => {
  it('PEM round-trips through Node and verifies a noble signature', () => {
    const { secretKey, publicKey } = keypair();
    const f = publicKeyFormats(publicKey);
    expect(f.hex).toBe(Buffer.from(publicKey).toString('hex'));
    expect(Buffer.from(f.base64, 'base64')).toEqual(Buffer.from(publicKey));
    expect(f.pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----\n$/);
    const key = createPublicKey(f.pem);
    expect(key.asymmetricKeyType).toBe('ed25519');
    const der = key.export({ type: 'spki', format: 'der' });
    expect(Buffer.from(der.subarray(der.length - 32))).toEqual(Buffer.from(publicKey));
    const msg = utf8('fedkms pem check');
    const sig = ed25519.sign(msg, secretKey);
    expect(nodeVerify(null, msg, f.pem, sig)).toBe(true);
    expect(nodeVerify(null, utf8('fedkms pem check!'), f.pem, sig)).toBe(false);
  });

  it('the OpenSSH line is accepted by ssh-keygen with the expected fingerprint', () => {
    const { publicKey } = keypair();
    const { openssh } = publicKeyFormats(publicKey, 'fedkms key 1');
    const [type, b64, ...comment] = openssh.split(' ');
    expect(type).toBe('ssh-ed25519');
    expect(comment.join(' ')).toBe('fedkms key 1');
    const file = join(dir, 'key.pub');
    writeFileSync(file, `${openssh}\n`);
    const r = sshKeygen(['-l', '-E', 'sha256', '-f', file]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const fp = createHash('sha256').update(Buffer.from(b64!, 'base64')).digest('base64').replace(/=+$/, '');
    expect(r.stdout.trim()).toBe(`256 SHA256:${fp} fedkms key 1 (ED25519)`);
  });

  it('matches the public key ssh-keygen itself derives from its own key', () => {
    const id = join(dir, 'id_ed25519');
    expect(sshKeygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'fedkms', '-f', id]).status).toBe(0);
    const seed = openSshSeed(readFileSync(id, 'utf8'));
    const expected = readFileSync(`${id}.pub`, 'utf8').trim();
    expect(publicKeyFormats(ed25519.getPublicKey(seed)).openssh).toBe(expected);
    rmSync(id);
    rmSync(`${id}.pub`);
  });

  it('omits the comment when it is empty and refuses multi-line comments', () => {
    const { publicKey } = keypair();
    expect(publicKeyFormats(publicKey, '').openssh).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+$/);
    expect(() => publicKeyFormats(publicKey, 'a\nssh-ed25519 AAAA evil')).toThrow(BadRequestError);
  });
});

describe('SSH signatures (SSHSIG)', () => {
  it('a noble signature over sshsigSignedData verifies with ssh-keygen -Y verify', () => {
    const { secretKey, publicKey } = keypair();
    const message = utf8('release v1.2.3\n');
    const armored = signSsh(secretKey, publicKey, message, 'file');
    expect(sshVerify({ publicKey, armored, message, namespace: 'file' }).status).toBe(0);

    const flipped = Uint8Array.from(message);
    flipped[0]! ^= 1;
    expect(sshVerify({ publicKey, armored, message: flipped, namespace: 'file' }).status).not.toBe(0);
    // The namespace is signed: the same signature must not pass as a git signature.
    expect(sshVerify({ publicKey, armored, message, namespace: 'git' }).status).not.toBe(0);
    // Another key in allowed_signers must not accept it.
    expect(sshVerify({ publicKey: keypair().publicKey, armored, message, namespace: 'file' }).status).not.toBe(0);
  });

  it('sha256-hashed signatures verify too, and the hash algorithm is bound', () => {
    const { secretKey, publicKey } = keypair();
    const message = utf8('x'.repeat(1000));
    const armored = signSsh(secretKey, publicKey, message, 'file', 'sha256');
    expect(sshVerify({ publicKey, armored, message, namespace: 'file' }).status).toBe(0);
    // Relabel a sha512 signature as sha256: ssh-keygen must reject it.
    const sig = ed25519.sign(sshsigSignedData(message, 'file', 'sha512'), secretKey);
    const relabelled = armorSshSignature(publicKey, 'file', sig, 'sha256');
    expect(sshVerify({ publicKey, armored: relabelled, message, namespace: 'file' }).status).not.toBe(0);
  });

  it('is byte-identical to what ssh-keygen -Y sign writes for the same key', () => {
    const id = join(dir, 'id_sign');
    expect(sshKeygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'x', '-f', id]).status).toBe(0);
    const seed = openSshSeed(readFileSync(id, 'utf8'));
    const message = utf8('a message long enough that the armored blob needs several lines\n');
    writeFileSync(join(dir, 'msg'), message);
    const r = sshKeygen(['-Y', 'sign', '-f', id, '-n', 'file', join(dir, 'msg')]);
    expect(r.status).toBe(0);
    // Ed25519 is deterministic, so the same key, namespace and message give the same bytes.
    const theirs = readFileSync(join(dir, 'msg.sig'), 'utf8');
    expect(signSsh(seed, ed25519.getPublicKey(seed), message, 'file')).toBe(theirs);
  });

  it('lays out the signed data as PROTOCOL.sshsig §3 says', () => {
    const data = Buffer.from(sshsigSignedData(utf8('hi'), 'file'));
    const digest = createHash('sha512').update('hi').digest();
    const expected = Buffer.concat([
      Buffer.from('SSHSIG'),
      Buffer.from([0, 0, 0, 4]), Buffer.from('file'),
      Buffer.from([0, 0, 0, 0]),
      Buffer.from([0, 0, 0, 6]), Buffer.from('sha512'),
      Buffer.from([0, 0, 0, 64]), digest,
    ]);
    expect(data).toEqual(expected);
  });

  it('wraps the armor at 70 columns', () => {
    const { secretKey, publicKey } = keypair();
    const lines = signSsh(secretKey, publicKey, utf8('m'), 'file').split('\n');
    expect(lines[0]).toBe('-----BEGIN SSH SIGNATURE-----');
    expect(lines.at(-2)).toBe('-----END SSH SIGNATURE-----');
    expect(lines.at(-1)).toBe('');
    const body = lines.slice(1, -2);
    expect(body.slice(0, -1).every((l) => l.length === 70)).toBe(true);
    expect(body.at(-1)!.length).toBeLessThanOrEqual(70);
  });

  it('writes allowed_signers lines, with an optional namespace restriction ssh-keygen honours', () => {
    const { secretKey, publicKey } = keypair();
    const line = allowedSignersLine('ops@example.com', publicKey, ['file']);
    expect(line).toMatch(/^ops@example\.com namespaces="file" ssh-ed25519 AAAA/);
    const message = utf8('m');
    writeFileSync(join(dir, 'allowed_ns'), `${line}\n`);
    const verify = (ns: string) => {
      writeFileSync(join(dir, 'ns.sig'), signSsh(secretKey, publicKey, message, ns));
      return sshKeygen(['-Y', 'verify', '-f', join(dir, 'allowed_ns'), '-I', 'ops@example.com', '-n', ns, '-s', join(dir, 'ns.sig')], message).status;
    };
    expect(verify('file')).toBe(0);
    expect(verify('git')).not.toBe(0);
  });
});

describe('invalid inputs', () => {
  const expectCode = (fn: () => unknown, code: string) => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(BadRequestError);
      expect((e as BadRequestError).code).toBe(code);
      return;
    }
    throw new Error(`expected BadRequestError ${code}`);
  };
  const good = keypair().publicKey;
  const notAPoint = new Uint8Array(32);
  notAPoint[0] = 2; // y = 2: x² = (y²-1)/(dy²+1) has no square root
  const nonCanonical = new Uint8Array(32).fill(0xff);
  nonCanonical[31] = 0x7f; // y = 2^255-1 ≥ p
  const identity = new Uint8Array(32);
  identity[0] = 1; // (0, 1): valid encoding, small order

  it.each([
    ['empty', new Uint8Array(0)],
    ['31 bytes', good.subarray(0, 31)],
    ['33 bytes', new Uint8Array([...good, 0])],
    ['not on the curve', notAPoint],
    ['non-canonical y', nonCanonical],
    ['small order (identity)', identity],
  ])('rejects a public key: %s', (_name, raw) => {
    expectCode(() => assertEd25519PublicKey(raw), 'invalid_public_key');
    expectCode(() => publicKeyFormats(raw), 'invalid_public_key');
    expectCode(() => allowedSignersLine('p', raw), 'invalid_public_key');
    expectCode(() => armorSshSignature(raw, 'file', new Uint8Array(64)), 'invalid_public_key');
  });

  it('rejects a non-Uint8Array key', () => {
    expectCode(() => publicKeyFormats('00'.repeat(32) as unknown as Uint8Array), 'invalid_public_key');
  });

  it('rejects bad signatures, namespaces, hash algorithms and principals', () => {
    expectCode(() => armorSshSignature(good, 'file', new Uint8Array(63)), 'invalid_signature');
    expectCode(() => armorSshSignature(good, '', new Uint8Array(64)), 'invalid_namespace');
    expectCode(() => sshsigSignedData(utf8('m'), ''), 'invalid_namespace');
    expectCode(() => sshsigSignedData(utf8('m'), 'file', 'md5' as SshHashAlg), 'invalid_hash_algorithm');
    expectCode(() => allowedSignersLine('two words', good), 'invalid_principal');
    expectCode(() => allowedSignersLine('#comment', good), 'invalid_principal');
    expectCode(() => allowedSignersLine('', good), 'invalid_principal');
    expectCode(() => allowedSignersLine('p', good, []), 'invalid_namespace');
    expectCode(() => allowedSignersLine('p', good, ['a"b']), 'invalid_namespace');
  });
});

describe('reading keys and signatures back (verify --public-key)', () => {
  const expectCode = (fn: () => unknown, code: string) => {
    expect(fn).toThrow(BadRequestError);
    try {
      fn();
    } catch (e) {
      expect((e as BadRequestError).code).toBe(code);
    }
  };
  it('reads PEM, OpenSSH (a *.pub line, an allowed_signers line), hex and raw bytes to the same key', () => {
    const { publicKey } = keypair();
    const f = publicKeyFormats(publicKey, 'a comment');
    for (const form of [f.pem, f.openssh, `${f.openssh}\n`, allowedSignersLine('me', publicKey), f.hex, `0x${f.hex.toUpperCase()}\n`, publicKey]) {
      expect(Buffer.from(parseEd25519PublicKey(form)).toString('hex')).toBe(f.hex);
    }
  });

  it('reads the public key ssh-keygen itself writes', () => {
    const id = join(dir, 'id_parse');
    expect(sshKeygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'x', '-f', id]).status).toBe(0);
    const seed = openSshSeed(readFileSync(id, 'utf8'));
    expect(Buffer.from(parseEd25519PublicKey(readFileSync(`${id}.pub`, 'utf8'))).equals(Buffer.from(ed25519.getPublicKey(seed)))).toBe(true);
  });

  it('refuses other key types, small-order points and junk', () => {
    expectCode(() => parseEd25519PublicKey('not a key'), 'invalid_public_key');
    expectCode(() => parseEd25519PublicKey('00'.repeat(32)), 'invalid_public_key');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expectCode(() => parseEd25519PublicKey(rsa), 'invalid_public_key');
    const blob = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-rsa'), Buffer.from([0, 0, 0, 1, 1])]);
    expectCode(() => parseEd25519PublicKey(`ssh-ed25519 ${blob.toString('base64')}`), 'invalid_public_key');
  });

  it('unwraps what ssh-keygen -Y sign writes, and what armorSshSignature writes', () => {
    const id = join(dir, 'id_unwrap');
    expect(sshKeygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'x', '-f', id]).status).toBe(0);
    writeFileSync(join(dir, 'm2'), utf8('hello'));
    expect(sshKeygen(['-Y', 'sign', '-f', id, '-n', 'git', join(dir, 'm2')]).status).toBe(0);
    const theirs = parseSshSignature(readFileSync(join(dir, 'm2.sig'), 'utf8'));
    expect(theirs.namespace).toBe('git');
    expect(theirs.hashAlg).toBe('sha512');
    expect(ed25519.verify(theirs.signature, sshsigSignedData(utf8('hello'), 'git'), theirs.publicKey)).toBe(true);
    const { secretKey, publicKey } = keypair();
    const ours = parseSshSignature(signSsh(secretKey, publicKey, utf8('m'), 'file', 'sha256'));
    expect(ours).toMatchObject({ namespace: 'file', hashAlg: 'sha256' });
    expect(Buffer.from(ours.publicKey).equals(Buffer.from(publicKey))).toBe(true);
  });

  it('refuses armor that is not an SSH signature, truncated or trailing bytes', () => {
    const { secretKey, publicKey } = keypair();
    const armored = signSsh(secretKey, publicKey, utf8('m'), 'file');
    const blob = Buffer.from(armored.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const rearm = (b: Buffer) => `-----BEGIN SSH SIGNATURE-----\n${b.toString('base64')}\n-----END SSH SIGNATURE-----\n`;
    expectCode(() => parseSshSignature('hello'), 'invalid_signature');
    expectCode(() => parseSshSignature(rearm(blob.subarray(0, blob.length - 3))), 'invalid_encoding');
    expectCode(() => parseSshSignature(rearm(Buffer.concat([blob, Buffer.from([0])]))), 'invalid_encoding');
    const badMagic = Buffer.from(blob);
    badMagic[0] = 0x58;
    expectCode(() => parseSshSignature(rearm(badMagic)), 'invalid_signature');
  });
});
