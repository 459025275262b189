/**
 * Opening and checking relayed fragments, and combining them. Pure: no I/O. The
 * client (end to end, the default) and the coordinator (server-side mode, where a
 * key's policy allows it) run exactly the same checks.
 */
import * as z from './zod.js';
import { canonicalJson, sha256Hex } from './crypto/hash.js';
import { open } from './crypto/seal.js';
import { combineShares, isValidShare, unwrapSecret, type Share, type ShareSuite } from './crypto/shares.js';
import { wipe } from './encoding.js';
import { deliveryAad, descriptorSchema, type KeyDescriptor } from './node/fragment.js';

export const fragmentAnswerSchema = z.object({
  nodeId: z.string(),
  identifier: z.string(),
  keyId: z.string(),
  version: z.number().check(z.int()),
  descriptor: descriptorSchema,
  sealedShare: z.strictObject({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() }),
  /** The node's Ed25519 signature over `fragmentStatement` (its identity key). */
  signature: z.optional(z.string().check(z.maxLength(100))),
});
export type FragmentAnswer = z.infer<typeof fragmentAnswerSchema>;

export const descriptorDigest = (d: KeyDescriptor) => sha256Hex(canonicalJson(d));

/**
 * What a node signs when it releases a fragment: which key version (by the digest of
 * its public description), sealed to whom, which box, for which client request. A client
 * that pins the nodes' identity keys then knows each fragment came from that node for
 * its own request: a relay cannot substitute shares of a key it made up.
 */
export const fragmentStatement = (f: { nodeId: string; keyId: string; version: number; descriptor: KeyDescriptor; sealedShare: unknown }, recipient: string, requestId: string) => ({
  type: 'fedkms.fragment.v1',
  nodeId: f.nodeId,
  keyId: f.keyId,
  version: f.version,
  descriptor: descriptorDigest(f.descriptor),
  recipient,
  sealedShare: sha256Hex(canonicalJson(f.sealedShare)),
  request: requestId,
});

export type FragmentCheck =
  | { ok: true; descriptor: KeyDescriptor; digest: string; share: Share }
  | { ok: false; status: 'error' | 'invalid_share'; error: string };

/**
 * Check one node's answer before use: its identity, that it opens for us, and the Feldman
 * check, with `suite` (the libsodium-backed suite where the caller has loaded it; noble's otherwise).
 */
export function checkFragment(answer: unknown, nodeId: string, identifier: string, keyId: string, recipientPrivate: Uint8Array, suite?: ShareSuite): FragmentCheck {
  const p = fragmentAnswerSchema.safeParse(answer);
  if (!p.success) return { ok: false, status: 'error', error: 'malformed fragment answer' };
  const f = p.data;
  if (f.nodeId !== nodeId || f.identifier !== identifier || f.keyId !== keyId || f.descriptor.keyId !== keyId) {
    return { ok: false, status: 'invalid_share', error: 'answer is for another node or key' };
  }
  const d = f.descriptor as KeyDescriptor;
  let signingShare: Uint8Array;
  try {
    signingShare = open(recipientPrivate, f.sealedShare, deliveryAad(keyId, d.version, nodeId, identifier));
  } catch {
    return { ok: false, status: 'invalid_share', error: 'sealed share does not open' };
  }
  if (!isValidShare(d.publicPackage, { identifier, signingShare }, suite)) {
    wipe(signingShare);
    return { ok: false, status: 'invalid_share', error: 'share fails the commitment check (tampered)' };
  }
  return { ok: true, descriptor: d, digest: descriptorDigest(d), share: { identifier, signingShare } };
}

/** Combine t checked shares, check s·G against the group key, and unwrap the secret. The caller wipes it. */
export function recoverSecret(d: KeyDescriptor, shares: Share[]): Uint8Array {
  if (!d.wrapped) throw new Error('key holds no wrapped secret');
  const s = combineShares(d.publicPackage, shares);
  try {
    return unwrapSecret(d.keyId, s, d.wrapped);
  } finally {
    wipe(s);
  }
}
