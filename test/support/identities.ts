/** A test client identity: a name and a fresh Ed25519 key pair. */
import { ed25519 } from '@noble/curves/ed25519.js';

export interface Identity {
  name: string;
  sk: Uint8Array;
  pk: Uint8Array;
}

export const identity = (name: string): Identity => {
  const sk = ed25519.utils.randomSecretKey();
  return { name, sk, pk: ed25519.getPublicKey(sk) };
};
