/** The few sodium-native (libsodium, native prebuilds) functions fast-frost uses; each throws when libsodium returns -1. */
declare module 'sodium-native' {
  const sodium: {
    crypto_core_ed25519_is_valid_point(p: Uint8Array): boolean;
    crypto_core_ed25519_add(r: Uint8Array, p: Uint8Array, q: Uint8Array): void;
    crypto_scalarmult_ed25519_noclamp(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
    crypto_scalarmult_ed25519_base_noclamp(q: Uint8Array, n: Uint8Array): void;
  };
  export default sodium;
}
