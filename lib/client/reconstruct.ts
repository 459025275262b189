/**
 * End-to-end reconstruction on the client: the shares are sealed by each node to a key
 * only this process holds, so the coordinator relays ciphertexts it cannot open. Every
 * share is checked against the public commitments; a node whose share fails is named and
 * left out, and the request is repeated without it while enough nodes remain.
 */
import { generateX25519 } from '../crypto/seal.js';
import { toB64, wipe } from '../encoding.js';
import { checkFragment, fragmentAnswerSchema, fragmentStatement, recoverSecret } from '../reconstruction.js';
import { verifyStatement } from '../crypto/identity.js';
import type { Share } from '../crypto/shares.js';
import type { KeyDescriptor } from '../node/fragment.js';
import type { ApiAnswer, FedkmsClient } from './api.js';
import { signingSuite } from '../crypto/suite.js';

export interface Recipient {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export type EndToEndResult =
  | { ok: true; keyId: string; version: number; secret: Uint8Array; usedNodes: string[]; rejected: { nodeId: string; reason: string }[]; answer: ApiAnswer }
  | { ok: false; answer: ApiAnswer; rejected: { nodeId: string; reason: string }[] };

export async function reconstructEndToEnd(
  client: FedkmsClient,
  keyId: string,
  opts: {
    recipient?: Recipient;
    expiresAt?: number;
    version?: number;
    maxRounds?: number;
    /** Node id to its Ed25519 identity key (base64). With it, every fragment must be signed by its node for this very request. */
    nodeKeys?: Record<string, string>;
  } = {},
): Promise<EndToEndResult> {
  const recipient = opts.recipient ?? generateX25519();
  // Shares are checked with the libsodium-backed suite (same verdicts as noble's, far less CPU).
  const suite = await signingSuite();
  const rejected: { nodeId: string; reason: string }[] = [];
  try {
    for (let round = 0; round < (opts.maxRounds ?? 3); round++) {
      const body = {
        recipient: toB64(recipient.publicKey),
        ...(opts.expiresAt ? { expiresAt: opts.expiresAt } : {}),
        ...(opts.version ? { version: opts.version } : {}),
        ...(rejected.length ? { exclude: rejected.map((r) => r.nodeId) } : {}),
      };
      const answer = await client.call('POST', `/keys/${keyId}/reconstruct`, body);
      if (answer.status !== 200) return { ok: false, answer, rejected };
      const fragments = (answer.body?.fragments ?? []) as { nodeId: string; identifier: string }[];
      const good: { d: KeyDescriptor; share: Share; nodeId: string }[] = [];
      for (const f of fragments) {
        if (opts.nodeKeys && !signedByNode(f, opts.nodeKeys, toB64(recipient.publicKey), answer.requestId ?? '')) {
          rejected.push({ nodeId: String(f.nodeId), reason: 'fragment not signed by that node for this request' });
          continue;
        }
        const c = checkFragment(f, f.nodeId, f.identifier, keyId, recipient.privateKey, suite);
        if (c.ok) good.push({ d: c.descriptor, share: c.share, nodeId: f.nodeId });
        else rejected.push({ nodeId: String(f.nodeId), reason: c.error });
      }
      // Shares must agree on one key version; the descriptor all of them carry is the one used.
      const d = good[0]?.d;
      const same = good.filter((g) => d && JSON.stringify(g.d) === JSON.stringify(d));
      if (d && same.length >= d.publicPackage.threshold) {
        try {
          const secret = recoverSecret(d, same.map((g) => g.share));
          return { ok: true, keyId, version: d.version, secret, usedNodes: same.map((g) => g.nodeId), rejected, answer };
        } finally {
          good.forEach((g) => wipe(g.share.signingShare));
        }
      }
      good.forEach((g) => wipe(g.share.signingShare));
      if (!rejected.length) return { ok: false, answer, rejected };
    }
    return { ok: false, answer: { status: 502, body: { error: { code: 'invalid_shares', message: 'too many nodes returned invalid shares' } }, ms: 0 }, rejected };
  } finally {
    if (!opts.recipient) wipe(recipient.privateKey);
  }
}

function signedByNode(f: unknown, nodeKeys: Record<string, string>, recipient: string, requestId: string): boolean {
  const p = fragmentAnswerSchema.safeParse(f);
  if (!p.success || !p.data.signature) return false;
  const key = nodeKeys[p.data.nodeId];
  return key !== undefined && verifyStatement(key, fragmentStatement(p.data as Parameters<typeof fragmentStatement>[0], recipient, requestId), p.data.signature);
}
