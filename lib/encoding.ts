/** Strict encoders: reject anything that would not round-trip, so two spellings never name one value. */
import { BadRequestError } from './errors.js';

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
/** Standard alphabet (RFC 4648 §4), padded to a multiple of four: base64url and unpadded forms are refused. */
const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64: the standard alphabet, canonical padding, and zero padding bits (it round-trips). */
export const isStrictB64 = (s: unknown): s is string => typeof s === 'string' && B64.test(s) && Buffer.from(s, 'base64').toString('base64') === s;

export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const toB64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
export const toB64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

export function fromHex(s: string, field = 'value'): Uint8Array {
  if (typeof s !== 'string' || !HEX.test(s)) throw new BadRequestError('invalid_encoding', `${field} must be even-length hex`);
  return new Uint8Array(Buffer.from(s, 'hex'));
}

export function fromB64(s: string, field = 'value'): Uint8Array {
  if (!isStrictB64(s)) throw new BadRequestError('invalid_encoding', `${field} must be canonical base64 (standard alphabet, padded)`);
  return new Uint8Array(Buffer.from(s, 'base64'));
}

/**
 * Deepest JSON nesting any input may have (request bodies, relayed client requests). No
 * request needs more than a handful of levels; checked before anything recursive runs.
 */
export const MAX_JSON_DEPTH = 32;

/** Whether `text`'s JSON nesting stays within `max` levels: one linear, iterative pass (strings skipped). */
export function jsonDepthWithin(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return false;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return true;
}

export const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

/** Overwrite a buffer in place; a best effort, since JS may have copied it. */
export function wipe(...bufs: (Uint8Array | undefined)[]): void {
  for (const b of bufs) b?.fill(0);
}
