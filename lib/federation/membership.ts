/**
 * Who forms the federation, as documents anyone can check (no I/O here).
 *
 * - A node's **identity document** is self-signed with its Ed25519 identity key: node id,
 *   endpoint, identity keys and software version. Its operator hands it to an administrator.
 * - The **membership document** lists the members with the share identifier index each one
 *   holds for life, their endpoints and identity keys, and the federation's threshold. An
 *   administrator signs it; every node checks that signature against its own client registry
 *   before storing it, and again each time it reads it back.
 *
 * Versions only grow, and a node's index is never reused: its fragments' AAD binds the
 * identifier, so an index handed to another node would make old objects look like its own.
 */
import { createHash } from 'node:crypto';
import * as z from '../zod.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { signStatement, verifyStatement } from '../crypto/identity.js';
import { fromB64 } from '../encoding.js';
import { BadRequestError, ConflictError } from '../errors.js';

export const NODE_ID = /^[a-z0-9-]{1,32}$/;
const nodeId = z.string().check(z.regex(NODE_ID));
const b64Key = z.string().check(z.regex(/^[A-Za-z0-9+/]{43}=$/));
const endpoint = z.string().check(z.regex(/^https?:\/\/[^\s]{1,500}$/));
const signature = z.string().check(z.regex(/^[A-Za-z0-9+/]{86}==$/));

export const identityBody = z.strictObject({
  kind: z.literal('fedkms.node-identity/v1'),
  nodeId,
  endpoint,
  signingPublic: b64Key,
  x25519Public: b64Key,
  softwareVersion: z.string().check(z.maxLength(64)),
  issuedAt: z.string().check(z.maxLength(40)),
});
export const identitySchema = z.extend(identityBody, { signature });
export type IdentityDocument = z.infer<typeof identitySchema>;

export const memberSchema = z.strictObject({
  id: nodeId,
  index: z.number().check(z.int(), z.gte(1), z.lte(255)),
  endpoint,
  signingPublic: b64Key,
  x25519Public: b64Key,
});
export type Member = z.infer<typeof memberSchema>;

export const membershipSchema = z.strictObject({
  kind: z.literal('fedkms.membership/v1'),
  version: z.number().check(z.int(), z.gte(1)),
  /** The federation's default threshold for new keys, and the quorum its status reports against. */
  threshold: z.number().check(z.int(), z.gte(2), z.lte(255)),
  /** The next unused share index: indices are never reused, even after a node leaves. */
  nextIndex: z.number().check(z.int(), z.gte(2), z.lte(256)),
  /** Digest of the version this one replaces (null for the first): a readable history. */
  previous: z.nullable(z.string().check(z.regex(/^[0-9a-f]{64}$/))),
  issuedAt: z.string().check(z.maxLength(40)),
  nodes: z.array(memberSchema).check(z.minLength(2), z.maxLength(64)),
});
export type Membership = z.infer<typeof membershipSchema>;

export const signedMembershipSchema = z.strictObject({
  document: membershipSchema,
  /** The administrator client who signed, by registry name. */
  signer: z.string().check(z.regex(/^[A-Za-z0-9._-]{1,64}$/)),
  signature,
});
export type SignedMembership = z.infer<typeof signedMembershipSchema>;

const identityStatement = (d: Omit<IdentityDocument, 'signature'>) => ({ purpose: 'fedkms/node-identity/v1', ...d });
const membershipStatement = (d: Membership, signer: string) => ({ purpose: 'fedkms/membership/v1', signer, document: d });

/** A node's fingerprint: what operators read to each other over a second channel. */
export function fingerprint(signingPublic: string, x25519Public: string): string {
  return `SHA256:${createHash('sha256').update(fromB64(signingPublic)).update(fromB64(x25519Public)).digest('base64').replace(/=+$/, '')}`;
}

export const membershipDigest = (d: Membership): string => sha256Hex(canonicalJson(d));

export function signIdentity(body: Omit<IdentityDocument, 'signature' | 'kind'>, signingPrivate: Uint8Array): IdentityDocument {
  const doc = { kind: 'fedkms.node-identity/v1' as const, ...body };
  return { ...doc, signature: signStatement(signingPrivate, identityStatement(doc)) };
}

/** Parse and check a node's self-signed identity document; a clear 400 otherwise. */
export function verifyIdentity(input: unknown): IdentityDocument {
  const r = identitySchema.safeParse(input);
  if (!r.success) throw new BadRequestError('invalid_identity', 'not a node identity document (fedkms.node-identity/v1)');
  const { signature: sig, ...body } = r.data;
  if (!verifyStatement(body.signingPublic, identityStatement(body), sig)) throw new BadRequestError('invalid_identity', `the identity document of ${body.nodeId} is not signed by its own key`);
  return r.data;
}

export function signMembership(document: Membership, signer: string, privateKey: Uint8Array): SignedMembership {
  return { document, signer, signature: signStatement(privateKey, membershipStatement(document, signer)) };
}

export const membershipSignedBy = (s: SignedMembership, publicKeyB64: string): boolean =>
  verifyStatement(publicKeyB64, membershipStatement(s.document, s.signer), s.signature);

/** The structural rules every version must keep (signatures are checked by whoever holds the registry). */
export function checkMembership(d: Membership): Membership {
  const ids = new Set(d.nodes.map((n) => n.id));
  const indices = new Set(d.nodes.map((n) => n.index));
  const keys = new Set(d.nodes.map((n) => n.signingPublic));
  if (ids.size !== d.nodes.length || indices.size !== d.nodes.length || keys.size !== d.nodes.length) {
    throw new BadRequestError('invalid_membership', 'node ids, indices and identity keys must be unique');
  }
  if (d.nodes.some((n) => n.index >= d.nextIndex)) throw new BadRequestError('invalid_membership', 'nextIndex must exceed every index in use');
  if (d.threshold > d.nodes.length) throw new BadRequestError('invalid_membership', `threshold ${d.threshold} exceeds the ${d.nodes.length} members`);
  return d;
}

/**
 * Whether `next` may replace `current`: a higher version, and no member keeps its id with a
 * new index or new identity keys (a replaced machine joins under a new id, or is removed first).
 */
export function checkSuccession(current: Membership | null, next: Membership): void {
  checkMembership(next);
  if (!current) return;
  if (next.version <= current.version) throw new ConflictError('membership_stale', `membership version ${next.version} is not newer than ${current.version}`);
  if (next.nextIndex < current.nextIndex) throw new BadRequestError('invalid_membership', 'nextIndex may not go down: indices are never reused');
  for (const n of next.nodes) {
    const old = current.nodes.find((o) => o.id === n.id);
    if (old && (old.index !== n.index || old.signingPublic !== n.signingPublic || old.x25519Public !== n.x25519Public)) {
      throw new BadRequestError('invalid_membership', `${n.id} keeps its id but changes its index or keys: remove it first, or join the new machine under a new id`);
    }
    if (!old && n.index < current.nextIndex) throw new BadRequestError('invalid_membership', `${n.id} reuses an index that was already handed out`);
  }
}

/** The next version with `identity` added under a fresh index (or its endpoint moved, if it is already a member with the same keys). */
export function withNode(current: Membership, identity: IdentityDocument, now = new Date()): Membership {
  const existing = current.nodes.find((n) => n.id === identity.nodeId);
  const entry = { id: identity.nodeId, endpoint: identity.endpoint, signingPublic: identity.signingPublic, x25519Public: identity.x25519Public };
  const nodes = existing
    ? current.nodes.map((n) => (n.id === identity.nodeId ? { ...entry, index: n.index } : n))
    : [...current.nodes, { ...entry, index: current.nextIndex }];
  return checkMembership({ ...current, version: current.version + 1, nextIndex: existing ? current.nextIndex : current.nextIndex + 1, previous: membershipDigest(current), issuedAt: now.toISOString(), nodes });
}

/** The next version without `id`. The threshold drops to fit, never below 2. */
export function withoutNode(current: Membership, id: string, now = new Date()): Membership {
  if (!current.nodes.some((n) => n.id === id)) throw new BadRequestError('unknown_node', `${id} is not a member`);
  const nodes = current.nodes.filter((n) => n.id !== id);
  if (nodes.length < 2) throw new BadRequestError('invalid_membership', 'a federation needs at least two nodes');
  return checkMembership({ ...current, version: current.version + 1, threshold: Math.min(current.threshold, nodes.length), previous: membershipDigest(current), issuedAt: now.toISOString(), nodes });
}

/** The first version, from identity documents in index order. */
export function firstMembership(identities: IdentityDocument[], threshold: number, now = new Date()): Membership {
  const nodes = identities.map((d, i) => ({ id: d.nodeId, index: i + 1, endpoint: d.endpoint, signingPublic: d.signingPublic, x25519Public: d.x25519Public }));
  return checkMembership({ kind: 'fedkms.membership/v1', version: 1, threshold, nextIndex: nodes.length + 1, previous: null, issuedAt: now.toISOString(), nodes });
}
