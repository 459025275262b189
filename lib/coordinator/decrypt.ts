/**
 * The coordinator's side of threshold decryption: a relay. It asks t nodes (hedged, as for
 * reconstruction) for their partials of the client's ciphertext; each node checks the
 * client's own request, the key's policy and the ciphertext itself, and seals its proven
 * partial to the client's one-time key. This function cannot open what it relays: the
 * client verifies every proof, names liars and combines (lib/client/decrypt.ts).
 */
import * as z from '../zod.js';
import { randomBytes } from 'node:crypto';
import { parseX25519Public, seal } from '../crypto/seal.js';
import { ciphertextDigest, encrypt } from '../crypto/threshold-decrypt.js';
import { identifierFor } from '../crypto/shares.js';
import { fromB64, toB64, wipe } from '../encoding.js';
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
  /** When the key's policy requires approvals: the expiry of the approved request (`POST /approvals` for this recipient). */
  expiresAt: z.optional(z.number().check(z.int(), z.gte(0))),
});
export type DecryptInput = z.infer<typeof decryptSchema> & { destinationKeyId?: string; destinationContext?: Record<string, string> };

/**
 * POST /keys/{keyId}/reencrypt: a decryption relayed exactly like decrypt, whose signed request
 * also names the destination key and context, which every node audits. The plaintext reaches
 * only the client, which encrypts it to the destination itself (lib/client/decrypt.ts `reencrypt`).
 */
export const reencryptSchema = z.extend(decryptSchema, {
  destinationKeyId: z.string().check(z.maxLength(63)),
  destinationContext: z._default(encryptionContextSchema, {}),
});

/** POST /keys/{keyId}/datakey: a fresh data key under the key and `context`, sealed to `recipient`. */
export const datakeySchema = z.strictObject({
  context: z._default(encryptionContextSchema, {}),
  /** The client's one-time X25519 public key (base64): the data key is sealed to it. */
  recipient: z.string().check(z.maxLength(64)),
});
export type DatakeyInput = z.infer<typeof datakeySchema>;

/** The AAD of a sealed data key: it opens only as this key's data key for exactly this ciphertext. */
export const datakeyAad = (keyId: string, version: number, ciphertextSha256: string) => `fedkms/datakey/v1|${keyId}|${version}|${ciphertextSha256}`;

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
  const reencrypt = input.destinationKeyId !== undefined ? { destinationKeyId: input.destinationKeyId, destinationContext: input.destinationContext ?? {} } : undefined;
  const action = reencrypt ? 'key.reencrypt' : 'key.decrypt';
  const body = { keyId, ciphertext: input.ciphertext, context: input.context, recipient: input.recipient, ...(input.version ? { version: input.version } : {}), ...reencrypt };
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
  const base = { ciphertextSha256, context: input.context, sealedTo: input.recipient, ...reencrypt };
  if (!w || w.members.length < w.need) {
    const err = decryptFailure(keyId, reports);
    await deps.audit.append(AUDIT_STREAM, { actor, action, keyId, outcome: 'failure', details: { ...base, reason: err.code, nodes: reports } }).catch(() => undefined);
    throw err;
  }
  const version = w.members[0]!.value.version;
  try {
    await deps.audit.append(AUDIT_STREAM, { actor, action, keyId, outcome: 'success', details: { ...base, version, usedNodes: w.members.map((m) => m.node.id), nodes: reports } });
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

const consentSchema = z.object({
  nodeId: z.string(),
  keyId: z.string(),
  version: z.number().check(z.int(), z.gte(1)),
  threshold: z.number().check(z.int(), z.gte(1), z.lte(255)),
  groupKey: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
});

/**
 * A fresh 256-bit data key and its envelope under the key (AWS KMS's GenerateDataKey). Each
 * node checks the client's signed request and the key's policy (`decrypt`), and audits the
 * request with its context; once t nodes agree on the key's version and group key, this
 * function makes the data key, wraps it under that group key (the same envelope that
 * `POST /keys/{id}/decrypt` opens) and seals it to the client's one-time key.
 *
 * Trust: the coordinator sees this data key for a moment (as AWS KMS sees the keys it
 * generates). Data keys the SDK, the CLI and the Encryption SDK keyring make are born on the
 * client and seen by no server: prefer them (docs/design.md, trust table).
 */
export async function generateDataKey(deps: CoordinatorDeps, keyId: string, input: DatakeyInput, actor: string) {
  const recipient = parseX25519Public(input.recipient);
  const body = { keyId, context: input.context, recipient: input.recipient };
  const result = await gather({
    nodes: deps.nodes,
    timeoutMs: deps.timeoutMs,
    initial: deps.threshold,
    call: (n, signal) => deps.client.call(n, { method: 'POST', path: '/datakey', body }, signal),
    judge: (n, a): Verdict<z.infer<typeof consentSchema>> => {
      const p = consentSchema.safeParse(a);
      if (!p.success || p.data.nodeId !== n.id || p.data.keyId !== keyId) return { ok: false, status: 'error', error: 'malformed datakey answer' };
      return { ok: true, group: `v${p.data.version}:${p.data.groupKey}`, need: p.data.threshold, value: p.data };
    },
  });
  const reports = result.reports;
  const w = result.winner;
  const base = { context: input.context, sealedTo: input.recipient };
  if (!w || w.members.length < w.need) {
    const err = reports.every((r) => r.status === 'not_found')
      ? new NotFoundError('key_not_found', `key ${keyId} not found`)
      : quorumFailure(`fewer than the threshold of nodes agreed to a data key under ${keyId}`, { nodes: reports });
    await deps.audit.append(AUDIT_STREAM, { actor, action: 'key.datakey', keyId, outcome: 'failure', details: { ...base, reason: err.code, nodes: reports } }).catch(() => undefined);
    throw err;
  }
  const { version, groupKey } = w.members[0]!.value;
  const dataKey = new Uint8Array(randomBytes(32));
  try {
    const ciphertext = encrypt({ keyId, keyVersion: version, groupKey }, dataKey, input.context);
    const ciphertextSha256 = ciphertextDigest(ciphertext);
    try {
      await deps.audit.append(AUDIT_STREAM, { actor, action: 'key.datakey', keyId, outcome: 'success', details: { ...base, version, ciphertextSha256, usedNodes: w.members.map((m) => m.node.id), nodes: reports } });
    } catch {
      throw new AuditUnavailableError();
    }
    const sealedKey = seal(recipient, dataKey, datakeyAad(keyId, version, ciphertextSha256));
    return { keyId, version, ciphertext: toB64(ciphertext), sealedKey, nodes: reports };
  } finally {
    wipe(dataKey);
  }
}
