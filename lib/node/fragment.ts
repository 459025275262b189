/**
 * The fragment object a node keeps in its own bucket. Everything in it is public
 * except `share`, which is AES-256-GCM under the node's wrapping key with an AAD that
 * binds key id, version, node id and identifier, so a copied or swapped object does
 * not decrypt.
 */
import * as z from '../zod.js';
import type { AeadBox } from '../crypto/aead.js';
import type { PublicPackage, WrappedSecret } from '../crypto/shares.js';

export const FRAGMENT_FORMAT = 'fedkms.fragment.v1';

const box = { iv: z.string(), ct: z.string(), tag: z.string() };
const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/));

export const publicPackageSchema = z.strictObject({
  threshold: z.number().check(z.int(), z.gte(1), z.lte(255)),
  total: z.number().check(z.int(), z.gte(1), z.lte(255)),
  commitments: z.array(hex32).check(z.minLength(1), z.maxLength(255)),
  verifyingShares: z.record(hex32, hex32),
}).check(z.refine((p) => p.threshold <= p.total && p.commitments.length === p.threshold && Object.keys(p.verifyingShares).length === p.total, {
  message: 'inconsistent public package',
}));

export const wrappedSecretSchema = z.strictObject({
  alg: z.literal('HKDF-SHA256/A256GCM'),
  salt: z.string(),
  length: z.number().check(z.int(), z.gte(1), z.lte(4096)),
  ...box,
});

export const participantSchema = z.strictObject({ nodeId: z.string(), identifier: hex32 });

/** Public description of one key version, identical on every node that holds it. */
export const descriptorSchema = z.strictObject({
  keyId: z.string(),
  version: z.number().check(z.int(), z.gte(1)),
  /**
   * `secret`: a wrapped user secret, reconstructable. `ed25519`: a signing key born by DKG,
   * never reconstructable. `encrypt`: a threshold decryption key born by DKG (ristretto255,
   * lib/crypto/threshold-decrypt.ts), never reconstructable and never used to sign.
   */
  type: z.enum(['secret', 'ed25519', 'encrypt']),
  origin: z.optional(z.enum(['import', 'generate', 'dkg'])),
  state: z.enum(['active']),
  createdAt: z.string(),
  publicPackage: publicPackageSchema,
  participants: z.array(participantSchema),
  wrapped: z.optional(wrappedSecretSchema),
});

export type KeyDescriptor = z.infer<typeof descriptorSchema>;
/** Key types born by DKG: no process ever holds the whole key, so none is ever reconstructed. */
export type DkgKeyType = 'ed25519' | 'encrypt';
export const isDkgType = (t: unknown): t is DkgKeyType => t === 'ed25519' || t === 'encrypt';

export interface FragmentObject {
  format: typeof FRAGMENT_FORMAT;
  nodeId: string;
  identifier: string;
  descriptor: KeyDescriptor;
  share: AeadBox;
}

export const fragmentObjectSchema = z.strictObject({
  format: z.literal(FRAGMENT_FORMAT),
  nodeId: z.string(),
  identifier: hex32,
  descriptor: descriptorSchema,
  share: z.strictObject(box),
});

export const shareAad = (keyId: string, version: number, nodeId: string, identifier: string) =>
  `fedkms/share/v1|${keyId}|${version}|${nodeId}|${identifier}`;
export const importAad = (keyId: string, version: number, nodeId: string) => `fedkms/import/v1|${keyId}|${version}|${nodeId}`;
export const deliveryAad = (keyId: string, version: number, nodeId: string, identifier: string) =>
  `fedkms/fragment/v1|${keyId}|${version}|${nodeId}|${identifier}`;

// Re-exported so callers need not know which module defines the wire types.
export type { PublicPackage, WrappedSecret };
