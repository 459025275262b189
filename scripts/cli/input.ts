/**
 * Reading secrets and messages from flags, files and stdin. The rule, stated once:
 * `--hex` and `--base64` take text (`-` reads that text from stdin); `--file` takes raw
 * bytes (`-` reads bytes from stdin). A `--file` that holds nothing but hex digits is
 * refused unless `--raw` says the text itself is the secret: piping `A94F…` into
 * `--file -` must not import the ASCII characters when the hex was meant.
 */
import { readFileSync } from 'node:fs';
import { UsageError, type Values } from './args.js';
import { str } from './target.js';

/** The bytes of a file, or of stdin for `-`. */
export function readInput(file: string, what: string): Buffer {
  try {
    return file === '-' ? readFileSync(0) : readFileSync(file);
  } catch {
    throw new UsageError(`cannot read ${file === '-' ? 'stdin' : file} (${what})`);
  }
}

const textOf = (value: string, what: string): string => (value === '-' ? readInput('-', what).toString('utf8') : value).trim();

/** Exactly one of --hex, --base64 or --file, as the body fields of POST /keys. */
export function secretFromFlags(v: Values): { secretHex?: string; secretBase64?: string } {
  const hex = str(v, 'hex');
  const b64 = str(v, 'base64');
  const file = str(v, 'file');
  const given = [hex, b64, file].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError('keys import needs exactly one of --hex, --base64 or --file');
  if (hex !== undefined) {
    const h = textOf(hex, '--hex').replace(/^0x/i, '').replace(/\s+/g, '');
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(h)) throw new UsageError('--hex must be non-empty, even-length hex');
    return { secretHex: h };
  }
  if (b64 !== undefined) {
    const b = textOf(b64, '--base64').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b)) throw new UsageError('--base64 must be base64');
    return { secretBase64: b };
  }
  const bytes = readInput(file!, 'the key file');
  try {
    if (bytes.length < 1 || bytes.length > 4096) throw new UsageError(`the key file must hold 1 to 4096 bytes (it holds ${bytes.length})`);
    if (v['raw'] !== true && /^(?:0x)?(?:[0-9a-fA-F]{2})+\s*$/.test(bytes.toString('latin1'))) {
      throw new UsageError(`${file === '-' ? 'stdin' : file} holds hex text: use --hex ${file === '-' ? '-' : '"$(cat FILE)"'} to import the bytes it encodes, or add --raw to import the text itself`);
    }
    return { secretBase64: bytes.toString('base64') };
  } finally {
    bytes.fill(0);
  }
}

export interface MessageInput {
  /** base64, for POST /keys/{id}/sign. */
  message?: string;
  /** hex, for POST /keys/{id}/sign. */
  digest?: string;
  /** The bytes the Ed25519 signature covers (digest mode: the domain-separated digest). */
  bytes: Uint8Array;
  /** The message itself (not in digest mode): what an SSH signature hashes. */
  raw?: Uint8Array;
}

/** The message to sign or verify: exactly one of --message, --file, --digest or a FILE argument (`-`: stdin). */
export function messageFromFlags(v: Values, fileArg: string | undefined, opts: { limit: boolean }): MessageInput {
  const message = str(v, 'message');
  const digest = str(v, 'digest');
  const file = str(v, 'file') ?? fileArg;
  const given = [message, str(v, 'file'), fileArg, digest].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError('give exactly one of --message TEXT, --file PATH, --digest HEX or a FILE argument (- for stdin)');
  if (digest !== undefined) {
    const d = digest.toLowerCase();
    if (!/^(?:[0-9a-f]{64}|[0-9a-f]{128})$/.test(d)) throw new UsageError('--digest must be 32 or 64 bytes of hex');
    return { digest: d, bytes: Buffer.concat([Buffer.from('fedkms/digest/v1\n'), Buffer.from(d, 'hex')]) };
  }
  const bytes = message !== undefined ? Buffer.from(message, 'utf8') : readInput(file!, 'the message');
  if (opts.limit && bytes.length > 32 * 1024) throw new UsageError('the message must be at most 32 KiB; sign a --digest of larger data, or use --ssh (it hashes the file here)');
  return { message: bytes.toString('base64'), bytes, raw: bytes };
}
