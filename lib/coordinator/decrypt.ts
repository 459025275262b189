/**
 * The coordinator's side of threshold decryption: a relay. It asks t nodes (hedged, as for
 * reconstruction) for their partials of the client's ciphertext; each node checks the
 * client's own request, the key's policy and the ciphertext itself, and seals its proven
 * partial to the client's one-time key. This function cannot open what it relays: the
 * client verifies every proof, names liars and combines (lib/client/decrypt.ts).
 */
import * as z from '../zod.js';
import { parseX25519Public } from '../crypto/seal.js';
import { ciphertextDigest } from '../crypto/threshold-decrypt.js';
import { identifierFor } from '../crypto/shares.js';
import { fromB64 } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, NotFoundError, type FedkmsError } from '../errors.js';
import { encryptionContextSchema, MAX_CIPHERTEXT_B64 } from '../node/decrypt.js';
import { AUDIT_STREAM, type CoordinatorDeps } from './common.js';
import { gather, quorumFailure, type NodeReport, type Verdict } from './fanout.js';

export const decryptSchema = z.strictObject({
  /** The envelope (lib/crypto/threshold-decrypt.ts), base64. */
  ciphertext: z.string().check(z.minLength(1), z.maxLength(MAX_CIPHERTEXT_B64)),
  /** The encryption context it was made under (key–value strings). */
  context: encryptionContextSchema,
  /** The client's one-time X25519 public key (base64): every partial is sealed to it. */
  recipient: z.string().check(z.maxLength(64)),
  /** The share version the nodes answer with (default: their latest). */
  version: z.optional(z.number().check(z.int(), z.gte(1), z.lte(1_000_000))),
  /** Nodes whose partials the client found invalid on an earlier try: not asked again, and named in the audit. */
  exclude: z.optional(z.array(z.string().check(z.maxLength(32))).check(z.maxLength(255))),
});
export type DecryptInput = z.infer<typeof decryptSchema>;

const sealedSchema = z.strictObject({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() });
const answerSchema = z.object({
  nodeId: z.string(),
  identifier: z.string(),
  keyId: z.string(),
  version: z.number().check(z.int(), z.gte(1)),
  threshold: z.number().check(z.int(), z.gte(1), z.lte(255)),
  sealed: sealedSchema,
});
export type SealedPartial = z.infer<typeof answerSchema>;

export async function relayDecrypt(deps: CoordinatorDeps, keyId: string, input: DecryptInput, actor: string) {
  parseX25519Public(input.recipient);
  let ciphertextSha256: string;
  try {
    ciphertextSha256 = ciphertextDigest(fromB64(input.ciphertext, 'ciphertext'));
  } catch {
    throw new BadRequestError('invalid_ciphertext', 'ciphertext must be base64');
  }
  const excluded = input.exclude ?? [];
  if (excluded.length) {
    await deps.audit.append(AUDIT_STREAM, { actor, action: 'partial.rejected', keyId, outcome: 'failure', details: { reportedBy: 'client', nodes: excluded } }).catch(() => undefined);
  }
  const body = { keyId, ciphertext: input.ciphertext, context: input.context, recipient: input.recipient, ...(input.version ? { version: input.version } : {}) };
  const result = await gather({
    nodes: deps.nodes.filter((n) => !excluded.includes(n.id)),
    timeoutMs: deps.timeoutMs,
    initial: deps.threshold,
    call: (n, signal) => deps.client.call(n, { method: 'POST', path: '/decrypt', body }, signal),
    judge: (n, a): Verdict<SealedPartial> => {
      const p = answerSchema.safeParse(a);
      if (!p.success || p.data.nodeId !== n.id || p.data.identifier !== identifierFor(n.index) || p.data.keyId !== keyId) return { ok: false, status: 'error', error: 'malformed decrypt answer' };
      // Partials of one share version combine; the client checks each proof against that version.
      return { ok: true, group: `v${p.data.version}`, need: p.data.threshold, value: p.data };
    },
  });
  const reports = result.reports;
  const w = result.winner;
  const base = { ciphertextSha256, context: input.context, sealedTo: input.recipient };
  if (!w || w.members.length < w.need) {
    const err = decryptFailure(keyId, reports);
    await deps.audit.append(AUDIT_STREAM, { actor, action: 'key.decrypt', keyId, outcome: 'failure', details: { ...base, reason: err.code, nodes: reports } }).catch(() => undefined);
    throw err;
  }
  const version = w.members[0]!.value.version;
  try {
    await deps.audit.append(AUDIT_STREAM, { actor, action: 'key.decrypt', keyId, outcome: 'success', details: { ...base, version, usedNodes: w.members.map((m) => m.node.id), nodes: reports } });
  } catch {
    throw new AuditUnavailableError();
  }
  return { keyId, version, threshold: w.need, partials: w.members.map((m) => m.value), nodes: reports };
}

/** Every node missing the key: 404; every node that looked at it refusing the ciphertext: 400; else as other fan-outs. */
function decryptFailure(keyId: string, reports: NodeReport[]): FedkmsError {
  if (reports.every((r) => r.status === 'not_found')) return new NotFoundError('key_not_found', `key ${keyId} not found`);
  const answered = reports.filter((r) => r.status !== 'cancelled' && r.status !== 'timeout' && r.status !== 'unreachable' && r.status !== 'busy');
  if (answered.length && answered.every((r) => r.code === 'invalid_ciphertext')) {
    return new BadRequestError('invalid_ciphertext', 'the nodes refused the ciphertext: it was altered, or is for another key or encryption context', { nodes: reports });
  }
  return quorumFailure(`fewer than the threshold of nodes returned a partial decryption with ${keyId}`, { nodes: reports });
}
