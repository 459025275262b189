/**
 * Membership from the client's side: list the members, sign a new membership document as an
 * administrator (adding a node from its identity document, or removing one), and pin node
 * identity keys from a document whose signature the client checks against administrator keys
 * it already trusts.
 */
import {
  firstMembership,
  membershipSignedBy,
  signMembership,
  signedMembershipSchema,
  verifyIdentity,
  withNode,
  withoutNode,
  type IdentityDocument,
  type SignedMembership,
} from '../federation/membership.js';
import type { ApiAnswer, FedkmsClient } from './api.js';
import type { ClientIdentity } from './signer.js';

export interface NodeListing {
  version: number;
  threshold: number;
  membership: SignedMembership;
  nodes: { id: string; index: number; endpoint: string; fingerprint: string; up: boolean; keys: number | null; membershipVersion: number | null; status?: string }[];
}

export class MembershipError extends Error {
  constructor(message: string, readonly answer?: ApiAnswer) {
    super(message);
  }
}

/** `GET /nodes`; undefined when the federation has no membership yet (503 quorum_not_reached). */
export async function listNodes(client: FedkmsClient): Promise<{ listing?: NodeListing; answer: ApiAnswer }> {
  const answer = await client.call<NodeListing>('GET', '/nodes');
  return answer.status === 200 ? { listing: answer.body, answer } : { answer };
}

async function put(client: FedkmsClient, signed: SignedMembership): Promise<ApiAnswer> {
  return client.call('PUT', '/nodes', signed, { idempotent: true });
}

/**
 * Add nodes from their identity documents. With no membership yet, the first version is made
 * from all of them, with `threshold` (default: a majority).
 */
export async function addNodes(client: FedkmsClient, admin: ClientIdentity, identities: unknown[], threshold?: number): Promise<ApiAnswer> {
  const docs: IdentityDocument[] = identities.map((d) => verifyIdentity(d));
  const { listing, answer } = await listNodes(client);
  let next;
  if (!listing) {
    if (answer.status !== 503) throw new MembershipError(`cannot read the membership: HTTP ${answer.status}`, answer);
    if (docs.length < 2) throw new MembershipError('the federation has no membership yet: give at least two identity documents to start it');
    next = firstMembership(docs, threshold ?? Math.floor(docs.length / 2) + 1);
  } else {
    next = listing.membership.document;
    for (const d of docs) next = withNode(next, d);
    if (threshold !== undefined) next = { ...next, threshold };
  }
  return put(client, signMembership(next, admin.name, admin.privateKey));
}

/** Remove a node from the membership. Reshare its keys onto the others first (the CLI checks). */
export async function removeNode(client: FedkmsClient, admin: ClientIdentity, id: string): Promise<ApiAnswer> {
  const { listing, answer } = await listNodes(client);
  if (!listing) throw new MembershipError(`cannot read the membership: HTTP ${answer.status}`, answer);
  return put(client, signMembership(withoutNode(listing.membership.document, id), admin.name, admin.privateKey));
}

/**
 * Node identity keys to pin, from the membership the coordinator serves, believed only if an
 * administrator key the caller already trusts signed it: a coordinator cannot slip in its own node.
 */
export async function pinnedNodeKeys(client: FedkmsClient, trustedAdmins: Record<string, string>): Promise<Record<string, string>> {
  const { listing, answer } = await listNodes(client);
  if (!listing) throw new MembershipError(`cannot read the membership: HTTP ${answer.status}`, answer);
  const signed = signedMembershipSchema.parse(listing.membership);
  const key = trustedAdmins[signed.signer];
  if (!key || !membershipSignedBy(signed, key)) throw new MembershipError(`the membership document is not signed by an administrator you trust (signer: ${signed.signer})`);
  return Object.fromEntries(signed.document.nodes.map((n) => [n.id, n.signingPublic]));
}
