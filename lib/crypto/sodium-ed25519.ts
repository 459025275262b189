/**
 * Ed25519 group operations on 32-byte encodings, done by libsodium (sodium-native: the
 * native build, chosen over the WASM build by measurement, see bench/frost-cpu.ts).
 * Scalars are 32-byte little-endian, already reduced mod L.
 */
import sodium from 'sodium-native';

export interface Ed25519Ops {
  /** Canonical, on the curve, in the prime-order subgroup, not of small order (so not the identity). */
  isValidPoint(p: Uint8Array): boolean;
  /** n·P for a valid P; constant time in n. Throws if P is not valid or n·P is the identity. */
  mul(n: Uint8Array, p: Uint8Array): Uint8Array;
  /** n·B; constant time in n. Throws for n = 0. */
  baseMul(n: Uint8Array): Uint8Array;
  /** P + Q for points on the curve. */
  add(p: Uint8Array, q: Uint8Array): Uint8Array;
}

export const nativeEd25519: Ed25519Ops = {
  isValidPoint: (p) => sodium.crypto_core_ed25519_is_valid_point(p),
  mul(n, p) {
    const q = new Uint8Array(32);
    sodium.crypto_scalarmult_ed25519_noclamp(q, n, p);
    return q;
  },
  baseMul(n) {
    const q = new Uint8Array(32);
    sodium.crypto_scalarmult_ed25519_base_noclamp(q, n);
    return q;
  },
  add(p, q) {
    const r = new Uint8Array(32);
    sodium.crypto_core_ed25519_add(r, p, q);
    return r;
  },
};
