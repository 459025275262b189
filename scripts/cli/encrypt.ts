/**
 * `fedkms encrypt` and `fedkms decrypt`: envelope encryption of files of any size with a
 * federated key that is never rebuilt. Encrypt needs no node (the data key is born here and
 * wrapped to the key's public key); decrypt unwraps the data key by threshold decryption, end
 * to end (lib/client/decrypt.ts), then streams the payload (chunked AEAD, lib/crypto/stream-aead.ts).
 * Standard input and output by default. Output goes to a temporary file renamed into place only
 * once the whole input authenticated: a failed decryption leaves no partial output (to stdout,
 * decrypted data is spooled to a private temporary file first and printed only once complete).
 * `fedkms reencrypt` does both in one stream: the old data key is unwrapped by threshold (the
 * nodes audit a re-encryption to the destination key and context), the payload is decrypted and
 * encrypted again under a fresh data key wrapped to the destination, with no node; the
 * plaintext exists only in this process, never at the coordinator.
 */
import { createReadStream, createWriteStream, mkdtempSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { decryptFile, DecryptRequestError, encryptFile, encryptionKey, reencryptFile, type DecryptResult } from '../../lib/client/decrypt.js';
import { CiphertextError, type EncryptionContext } from '../../lib/crypto/threshold-decrypt.js';
import { DecryptError } from '../../lib/crypto/aead.js';
import { UsageError } from './args.js';
import { EXIT, err, failure, out, progressOnStderr } from './output.js';
import { keyIdArg, type Ctx } from './target.js';

/** Inputs at least this large get progress lines on stderr. */
const PROGRESS_BYTES = 8 * 1024 * 1024;

export function parseContext(items: unknown): EncryptionContext {
  const list = Array.isArray(items) ? items.map(String) : typeof items === 'string' ? [items] : [];
  const ctx: EncryptionContext = {};
  for (const item of list) {
    const i = item.indexOf('=');
    if (i <= 0) throw new UsageError(`--context expects KEY=VALUE, got "${item}"`);
    const k = item.slice(0, i);
    if (k in ctx) throw new UsageError(`--context ${k} given twice`);
    ctx[k] = item.slice(i + 1);
  }
  return ctx;
}

const isStd = (p: string | undefined) => p === undefined || p === '-';

async function source(input: string | undefined): Promise<{ stream: AsyncIterable<Uint8Array>; size?: number }> {
  if (isStd(input)) return { stream: process.stdin };
  try {
    const s = await stat(input!);
    return { stream: createReadStream(input!), size: s.size };
  } catch {
    throw new UsageError(`cannot read ${input}`);
  }
}

/** Count bytes as they pass, and report progress on stderr for large inputs. */
async function* counted(src: AsyncIterable<Uint8Array>, size: number | undefined, verb: string, quiet: boolean): AsyncGenerator<Uint8Array> {
  let seen = 0;
  let nextReport = PROGRESS_BYTES;
  for await (const c of src) {
    seen += c.length;
    if (!quiet && seen >= nextReport) {
      err(`${verb} ${(seen / 1048576).toFixed(0)} MiB${size ? ` of ${(size / 1048576).toFixed(0)} MiB (${Math.floor((100 * seen) / size)}%)` : ''}`);
      nextReport += PROGRESS_BYTES;
    }
    yield c;
  }
}

async function writeAll(w: NodeJS.WritableStream, data: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const c of data) if (!w.write(c)) await new Promise<void>((r) => w.once('drain', () => r()));
}

/**
 * Write `data` to `output`: a temporary file beside it (mode 0600), renamed into place only
 * once `data` ended without error. Any error removes the temporary file: nothing is written.
 * To stdout: streamed as it comes when `atomic` is off (encryption cannot fail half way on
 * authenticity); otherwise spooled to a 0600 temporary file and copied to stdout only once
 * complete, so a failed decryption prints nothing, whatever the size.
 */
async function commit(data: AsyncIterable<Uint8Array>, output: string | undefined, atomic: boolean): Promise<void> {
  if (isStd(output) && !atomic) return writeAll(process.stdout, data);
  const dir = isStd(output) ? mkdtempSync(path.join(os.tmpdir(), 'fedkms-')) : path.dirname(output!);
  const tmp = path.join(dir, `.${isStd(output) ? 'stdout' : path.basename(output!)}.${randomBytes(6).toString('hex')}.tmp`);
  const w = createWriteStream(tmp, { mode: 0o600 });
  try {
    await writeAll(w, data);
    w.end();
    await finished(w);
    if (isStd(output)) await writeAll(process.stdout, createReadStream(tmp));
    else renameSync(tmp, output!);
  } catch (e) {
    w.destroy();
    throw e;
  } finally {
    rmSync(tmp, { force: true });
    if (isStd(output)) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The encrypt key that --key names, and its public key (or the exit code of a refusal). Here
 * --key names the encrypt key (as in the issue's `fedkms encrypt --key ID`), not the client key
 * file of the federation options: the client key then comes from FEDKMS_CLIENT_KEY or the
 * federation file. Taken out of the values before the federation is resolved.
 */
async function namedEncryptKey(ctx: Ctx, usage: string, what: string): Promise<{ keyId: string; key: Awaited<ReturnType<typeof encryptionKey>> } | number> {
  const keyId = typeof ctx.values['key'] === 'string' ? (ctx.values['key'] as string) : undefined;
  delete ctx.values['key'];
  if (!keyId) throw new UsageError(usage);
  keyIdArg(keyId);
  try {
    return { keyId, key: await encryptionKey(ctx.target().client, keyId) };
  } catch (e) {
    if (e instanceof DecryptRequestError) return failure(e.answer.status === 200 ? { ...e.answer, status: 409, body: { error: { code: 'key_not_encryption', message: e.message } } } : e.answer, ctx.json, `${what} ${keyId}`);
    throw e;
  }
}

export async function cmdEncrypt(ctx: Ctx, args: string[]): Promise<number> {
  const context = parseContext(ctx.values['context']);
  const named = await namedEncryptKey(ctx, 'encrypt needs --key ID', 'encrypt with');
  if (typeof named === 'number') return named;
  const { keyId, key } = named;
  const [input, output] = args;
  progressOnStderr();
  const src = await source(input);
  const quiet = ctx.json || (src.size !== undefined && src.size < PROGRESS_BYTES);
  await commit(encryptFile(key, counted(src.stream, src.size, 'encrypted', quiet), context), output, false);
  if (!isStd(output)) err(`Encrypted to "${keyId}" v${key.version} (no node involved): ${output}`);
  if (ctx.json && !isStd(output)) out(JSON.stringify({ keyId, version: key.version, output }));
  return EXIT.ok;
}

const unwrapped = (r: DecryptResult) =>
  `Data key unwrapped by threshold decryption (${r.keyId} v${r.version}; partials from ${r.usedNodes.join(', ')}${r.rejected.length ? `; named and excluded: ${r.rejected.map((x) => `${x.nodeId} (${x.reason})`).join(', ')}` : ''}).`;

export async function cmdDecrypt(ctx: Ctx, args: string[]): Promise<number> {
  const context = parseContext(ctx.values['context']);
  const [input, output] = args;
  progressOnStderr();
  const src = await source(input);
  const quiet = ctx.json || (src.size !== undefined && src.size < PROGRESS_BYTES);
  let used: string[] = [];
  try {
    const plain = decryptFile(ctx.target().client, Readable.from(src.stream), context, (r) => {
      used = r.usedNodes;
      if (!ctx.json) err(unwrapped(r));
    });
    await commit(counted(plain, src.size, 'decrypted', quiet), output, true);
  } catch (e) {
    return decryptFailed(ctx, e, 'decrypt');
  }
  if (ctx.json && !isStd(output)) out(JSON.stringify({ output, usedNodes: used }));
  return EXIT.ok;
}

/**
 * `fedkms reencrypt --key DEST [--context K=V]... [--to-context K=V]... [IN [OUT]]`: --context is
 * the context IN was encrypted under; --to-context the new one (default: the same).
 */
export async function cmdReencrypt(ctx: Ctx, args: string[]): Promise<number> {
  const context = parseContext(ctx.values['context']);
  const toContext = ctx.values['to-context'] === undefined ? context : parseContext(ctx.values['to-context']);
  const named = await namedEncryptKey(ctx, 'reencrypt needs --key DEST (the destination encrypt key)', 'reencrypt to');
  if (typeof named === 'number') return named;
  const { keyId, key } = named;
  const [input, output] = args;
  progressOnStderr();
  const src = await source(input);
  const quiet = ctx.json || (src.size !== undefined && src.size < PROGRESS_BYTES);
  let from: DecryptResult | undefined;
  try {
    const data = reencryptFile(ctx.target().client, counted(Readable.from(src.stream), src.size, 're-encrypted', quiet), context, { key, context: toContext }, (r) => {
      from = r;
      if (!ctx.json) err(unwrapped(r));
    });
    await commit(data, output, true);
  } catch (e) {
    return decryptFailed(ctx, e, 'reencrypt');
  }
  if (!ctx.json) err(`Re-encrypted to "${keyId}" v${key.version} on this machine${isStd(output) ? '' : `: ${output}`}`);
  if (ctx.json && !isStd(output)) out(JSON.stringify({ keyId, version: key.version, output, from: from ? { keyId: from.keyId, version: from.version, usedNodes: from.usedNodes } : undefined }));
  return EXIT.ok;
}

function decryptFailed(ctx: Ctx, e: unknown, verb: string): number {
  {
    if (e instanceof DecryptRequestError) return failure(e.answer, ctx.json, verb);
    if (e instanceof CiphertextError || e instanceof DecryptError) {
      const message = e instanceof CiphertextError ? e.message : 'the encrypted data was altered or truncated';
      if (ctx.json) out(JSON.stringify({ error: { code: 'invalid_ciphertext', message } }));
      else err(`${verb} failed: ${message}${e instanceof CiphertextError && /context/.test(message) ? ' (check --context)' : ''}`);
      return EXIT.failed;
    }
    throw e;
  }
}
