/**
 * `fedkms sign` (raw Ed25519 or an armored SSHSIG) and `fedkms verify`, which checks a
 * signature here, with OpenSSL through Node's crypto: against a key the federation serves,
 * or against a public key file with no federation at all (`--public-key`).
 */
import { createPublicKey, verify } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { armorSshSignature, parseEd25519PublicKey, parseSshSignature, sshsigSignedData, type SshSignature } from '../../lib/crypto/key-formats.js';
import { FedkmsError } from '../../lib/errors.js';
import { toB64url, toHex } from '../../lib/encoding.js';
import { UsageError } from './args.js';
import { messageFromFlags, readInput } from './input.js';
import { EXIT, failure, ms, nodeLabel, out, progress, progressOnStderr, reportsOf } from './output.js';
import { keyIdArg, probeWithProgress, str, type Ctx } from './target.js';

/** Node's (OpenSSL's) Ed25519 verification of `sig` over `data` under the raw 32-byte key. */
function ed25519Verify(publicKey: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: toB64url(publicKey) }, format: 'jwk' });
  return verify(null, data, key, sig);
}

/** A library refusal of user input (bad key, bad armor) is a usage error here. */
function asUsage<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FedkmsError) throw new UsageError(`${what}: ${e.message}`);
    throw e;
  }
}

export async function cmdSign(ctx: Ctx, keyId: string, fileArg: string | undefined): Promise<number> {
  const namespace = str(ctx.values, 'ssh');
  const output = str(ctx.values, 'output');
  if (namespace !== undefined && str(ctx.values, 'digest') !== undefined) throw new UsageError('--ssh signs a message or file (it hashes it here): not a --digest');
  if (output !== undefined && namespace === undefined) throw new UsageError('--output applies to --ssh signatures');
  // An SSH signature covers a SHA-512 of the message, computed here: any file size will do.
  const input = messageFromFlags(ctx.values, fileArg, { limit: namespace === undefined });
  const signed = namespace === undefined ? input.bytes : asUsage(() => sshsigSignedData(input.raw!, namespace), '--ssh');
  const body = namespace !== undefined ? { message: Buffer.from(signed).toString('base64') } : input.message !== undefined ? { message: input.message } : { digest: input.digest };
  // The armored signature is the document on stdout: progress goes to stderr then.
  if (namespace !== undefined && output === undefined) progressOnStderr();
  await probeWithProgress(ctx);
  if (!ctx.json) progress(`Signing with "${keyId}"${namespace ? ` (SSH signature, namespace "${namespace}")` : ''}: commitments from the fastest t nodes, then their signature shares...`);
  const a = await ctx.target().client.call('POST', `/keys/${keyId}/sign`, body);
  if (!ctx.json) {
    for (const n of reportsOf(a.body)) progress(`  ${nodeLabel(n.nodeId)}: ${n.status === 'valid' ? 'share verified' : n.status.replace(/_/g, ' ')}${n.error ? ` (${n.error})` : ''}${n.latencyMs !== undefined ? ` (${ms(n.latencyMs)})` : ''}`);
  }
  if (a.status !== 200) return failure(a, ctx.json, `sign ${keyId}`);
  const sig = new Uint8Array(Buffer.from(String(a.body.signature.hex), 'hex'));
  const publicKey = new Uint8Array(Buffer.from(String(a.body.publicKey), 'hex'));
  // Checked here too, against the key the answer names, before anything is printed.
  if (!ed25519Verify(publicKey, signed, sig)) {
    failure({ status: 502, ms: 0, body: { error: { code: 'invalid_signature', message: 'the signature returned does not verify under the key it names' } } }, ctx.json, `sign ${keyId}`);
    return EXIT.failed;
  }
  const armored = namespace !== undefined ? armorSshSignature(publicKey, namespace, sig) : undefined;
  if (ctx.json) out(JSON.stringify(armored ? { ...a.body, ssh: { namespace, armored } } : a.body));
  else {
    const cheaters = (a.body.cheaters as { nodeId: string }[]).map((c) => c.nodeId);
    progress(`Signed by ${(a.body.signers as string[]).join(', ')}${cheaters.length ? `; cheaters named and excluded: ${cheaters.join(', ')}` : ''}.`);
    if (armored && output !== undefined) {
      writeFileSync(output, armored);
      progress(`SSH signature written to ${output}.`);
    } else if (armored) process.stdout.write(armored);
    else out(a.body.signature.hex);
  }
  return EXIT.ok;
}

type Sig = { kind: 'raw'; signature: Uint8Array } | ({ kind: 'ssh' } & SshSignature);

/** `--signature`: 128 hex digits, an armored SSH signature, or a file holding either. */
function readSignature(value: string): Sig {
  let text = value.trim();
  if (!/^[0-9a-fA-F]{128}$/.test(text) && !text.includes('-----BEGIN SSH SIGNATURE-----')) {
    if (value !== '-' && !existsSync(value)) throw new UsageError('--signature must be 64 bytes of hex, an armored SSH signature, or a file holding one');
    text = readInput(value, 'the signature').toString('utf8').trim();
  }
  if (/^[0-9a-fA-F]{128}$/.test(text)) return { kind: 'raw', signature: new Uint8Array(Buffer.from(text, 'hex')) };
  if (text.includes('-----BEGIN SSH SIGNATURE-----')) return { kind: 'ssh', ...asUsage(() => parseSshSignature(text), '--signature') };
  throw new UsageError('--signature must be 64 bytes of hex, an armored SSH signature, or a file holding one');
}

export async function cmdVerify(ctx: Ctx, args: string[]): Promise<number> {
  const keyFile = str(ctx.values, 'public-key');
  const namespace = str(ctx.values, 'ssh');
  // With --public-key the one argument is the message file; without, the key id comes first.
  if (keyFile !== undefined && args.length > 1) throw new UsageError(`fedkms verify --public-key: unexpected argument "${args[1]}" (usage: fedkms verify --public-key FILE --signature SIG [FILE])`, 'verify');
  if (keyFile === undefined && args.length === 0) throw new UsageError('fedkms verify: missing <keyId>, or --public-key FILE to verify without a federation (usage: fedkms verify <keyId> --signature SIG [FILE])', 'verify');
  const keyId = keyFile === undefined ? keyIdArg(args[0]) : undefined;
  const fileArg = keyFile === undefined ? args[1] : args[0];
  const sigFlag = str(ctx.values, 'signature');
  if (sigFlag === undefined) throw new UsageError('fedkms verify: missing --signature SIG (hex, an armored SSH signature, or a file)', 'verify');
  const sig = readSignature(sigFlag);
  if (sig.kind === 'ssh' && namespace === undefined) throw new UsageError(`this is an SSH signature for namespace "${sig.namespace}": pass --ssh NAMESPACE to say which namespace you accept`, 'verify');
  if (sig.kind === 'raw' && namespace !== undefined) throw new UsageError('--ssh needs an armored SSH signature (-----BEGIN SSH SIGNATURE-----)', 'verify');
  if (sig.kind === 'ssh' && str(ctx.values, 'digest') !== undefined) throw new UsageError('an SSH signature covers a message or file, not a --digest', 'verify');
  const input = messageFromFlags(ctx.values, fileArg, { limit: false });

  let publicKey: Uint8Array;
  if (keyFile !== undefined) {
    publicKey = asUsage(() => parseEd25519PublicKey(readInput(keyFile, 'the public key')), '--public-key');
  } else {
    const a = await ctx.target().client.call('GET', `/keys/${keyId}/public`);
    if (a.status !== 200) return failure(a, ctx.json, `verify ${keyId}`);
    publicKey = new Uint8Array(Buffer.from(String(a.body.hex), 'hex'));
  }
  const who = keyId ? `key "${keyId}"` : 'that public key';
  let valid: boolean;
  let reason: string | undefined;
  if (sig.kind === 'raw') valid = ed25519Verify(publicKey, input.bytes, sig.signature);
  else if (sig.namespace !== namespace) [valid, reason] = [false, `signed for namespace "${sig.namespace}", not "${namespace}"`];
  else if (Buffer.compare(Buffer.from(sig.publicKey), Buffer.from(publicKey)) !== 0) [valid, reason] = [false, `made by another key (${toHex(sig.publicKey)})`];
  else valid = ed25519Verify(publicKey, sshsigSignedData(input.raw!, sig.namespace, sig.hashAlg), sig.signature);
  const hex = toHex(publicKey);
  if (ctx.json) out(JSON.stringify({ ...(keyId ? { keyId } : {}), valid, format: sig.kind === 'ssh' ? 'sshsig' : 'ed25519', ...(sig.kind === 'ssh' ? { namespace: sig.namespace } : {}), publicKey: hex, ...(reason ? { reason } : {}) }));
  else out(valid ? `Signature valid for ${who} (${hex}${sig.kind === 'ssh' ? `, SSH namespace "${sig.namespace}"` : ''}).` : `Signature INVALID for ${who}${reason ? `: ${reason}` : ''}.`);
  return valid ? EXIT.ok : EXIT.failed;
}
