/** A node's signed statements (DKG packages, transcript confirmations): Ed25519 over canonical JSON. */
import { ed25519Sign, ed25519Verify } from './ed25519-signature.js';
import { fromB64, toB64, utf8 } from '../encoding.js';
import { canonicalJson } from './hash.js';

export const signStatement = (privateKey: Uint8Array, statement: unknown): string => toB64(ed25519Sign(privateKey, utf8(canonicalJson(statement))));

export function verifyStatement(publicKeyB64: string, statement: unknown, signature: string): boolean {
  try {
    const sig = fromB64(signature, 'signature');
    return sig.length === 64 && ed25519Verify(sig, utf8(canonicalJson(statement)), fromB64(publicKeyB64, 'publicKey'));
  } catch {
    return false;
  }
}
