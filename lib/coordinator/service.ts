/**
 * The coordinator ("secure aggregator"): stateless. It deals imported keys to the
 * nodes, fans out to them, verifies every answer against the public commitments and
 * combines only verified shares. It never trusts a node: a node that is down, slow,
 * inconsistent or lying is named in the result and in the audit trail.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { verifyAll } from '../audit/chain.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { generateX25519, open, seal } from '../crypto/seal.js';
import { combineShares, dealKey, groupPublicKey, identifierFor, isValidShare, unwrapSecret, MAX_SECRET_BYTES, type Share } from '../crypto/shares.js';
import { fromB64, toB64, toHex, wipe } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, ConflictError, FedkmsError, NotFoundError, QuorumError } from '../errors.js';
import { deliveryAad, descriptorSchema, importAad, type KeyDescriptor } from '../node/fragment.js';
import type { AuditEntry, AuditLog } from '../ports.js';
import type { NodeEndpoint } from '../runtime-config.js';
import { gather, markDissenters, type Verdict } from './fanout.js';
import type { NodeClient } from './node-client.js';

export const AUDIT_STREAM = 'reconstruct';

export interface CoordinatorDeps {
  nodes: NodeEndpoint[];
  threshold: number;
  timeoutMs: number;
  client: NodeClient;
  audit: AuditLog;
}

export const createKeySchema = z
  .object({
    keyId: z.string(),
    /** The secret to import, hex or base64; omit to generate a random one. */
    secretHex: z.string().max(2 * MAX_SECRET_BYTES).optional(),
    secretBase64: z.string().max(Math.ceil(MAX_SECRET_BYTES / 3) * 4).optional(),
    /** Length of a generated secret, bytes. */
    length: z.number().int().min(1).max(MAX_SECRET_BYTES).optional(),
    threshold: z.number().int().min(2).max(255).optional(),
  })
  .strict()
  .refine((b) => !(b.secretHex !== undefined && b.secretBase64 !== undefined), { message: 'give secretHex or secretBase64, not both' })
  .refine((b) => !(b.length !== undefined && (b.secretHex !== undefined || b.secretBase64 !== undefined)), { message: 'length only applies to generated keys' });
export type CreateKeyInput = z.infer<typeof createKeySchema>;

const fragmentAnswerSchema = z.object({
  nodeId: z.string(),
  identifier: z.string(),
  keyId: z.string(),
  version: z.number().int(),
  descriptor: descriptorSchema,
  sealedShare: z.object({ epk: z.string(), iv: z.string(), ct: z.string(), tag: z.string() }).strict(),
});
const describeAnswerSchema = z.object({ nodeId: z.string(), identifier: z.string(), descriptor: descriptorSchema });
const listAnswerSchema = z.object({ nodeId: z.string(), keys: z.array(z.object({ keyId: z.string(), versions: z.array(z.number().int()) })) });

const nodeStatusSchema = z.object({ nodeId: z.string(), healthy: z.boolean(), storage: z.string(), keyCount: z.number().nullable(), version: z.string() });

const descriptorDigest = (d: KeyDescriptor) => sha256Hex(canonicalJson(d));

export function summarize(d: KeyDescriptor) {
  return {
    keyId: d.keyId,
    version: d.version,
    type: d.type,
    state: d.state,
    createdAt: d.createdAt,
    threshold: d.publicPackage.threshold,
    total: d.publicPackage.total,
    groupPublicKey: groupPublicKey(d.publicPackage),
    commitments: d.publicPackage.commitments,
    verifyingShares: d.publicPackage.verifyingShares,
    participants: d.participants,
    origin: d.origin ?? 'import',
    ...(d.wrapped ? { secretLength: d.wrapped.length } : {}),
  };
}

export class Coordinator {
  constructor(private readonly deps: CoordinatorDeps) {}

  private async record(entry: AuditEntry) {
    return this.deps.audit.append(AUDIT_STREAM, entry);
  }

  private async tryRecord(entry: AuditEntry) {
    await this.record(entry).catch(() => undefined);
  }

  /** Federation health: every node's /status, concurrently. */
  async status() {
    const { answers, reports } = await this.collect((n, signal) => this.deps.client.call(n, { method: 'GET', path: '/status' }, signal), nodeStatusSchema);
    const up = [...answers.values()].filter((a) => a.healthy).length;
    const nodes = reports.map((r) => ({ ...r, ...(answers.get(r.nodeId) ?? {}) }));
    return { threshold: this.deps.threshold, total: this.deps.nodes.length, nodesUp: up, quorum: up >= this.deps.threshold, nodes };
  }

  /** Import (dealer mode) or generate a key; every node must store its share, or none keeps it. */
  async createKey(input: CreateKeyInput, actor: string) {
    const keyId = input.keyId;
    const threshold = input.threshold ?? this.deps.threshold;
    const nodes = this.deps.nodes;
    if (threshold > nodes.length) throw new BadRequestError('invalid_threshold', `threshold ${threshold} exceeds the ${nodes.length} nodes`);
    const secret =
      input.secretHex !== undefined ? parseHexSecret(input.secretHex) :
      input.secretBase64 !== undefined ? fromB64(input.secretBase64, 'secretBase64') :
      new Uint8Array(randomBytes(input.length ?? 32));
    if (secret.length < 1 || secret.length > MAX_SECRET_BYTES) throw new BadRequestError('invalid_secret', `secret must be 1 to ${MAX_SECRET_BYTES} bytes`);
    const mode = input.secretHex !== undefined || input.secretBase64 !== undefined ? 'import' : 'generate';

    const dealt = dealKey({ keyId, threshold, identifiers: nodes.map((n) => identifierFor(n.index)), secret });
    const descriptor: KeyDescriptor = {
      keyId,
      version: 1,
      type: 'secret',
      origin: mode,
      state: 'active',
      createdAt: new Date().toISOString(),
      publicPackage: dealt.publicPackage,
      participants: nodes.map((n) => ({ nodeId: n.id, identifier: identifierFor(n.index) })),
      wrapped: dealt.wrapped,
    };
    // Each share is sealed to its node's X25519 key at once, and the plaintext wiped.
    const sealed = nodes.map((n, i) => {
      const share = dealt.shares[i]!;
      const box = seal(fromB64(n.x25519Public, 'x25519Public'), share.signingShare, importAad(keyId, 1, n.id));
      wipe(share.signingShare);
      return { node: n, body: { identifier: share.identifier, descriptor, sealedShare: box } };
    });

    const result = await gather({
      nodes,
      // Creation is rare and must reach every node: allow for cold starts.
      timeoutMs: Math.max(10_000, this.deps.timeoutMs * 3),
      stopEarly: false,
      call: (n, signal) => this.deps.client.call(n, { method: 'PUT', path: '/fragment', body: sealed.find((s) => s.node.id === n.id)!.body }, signal),
      judge: (): Verdict<true> => ({ ok: true, group: 'stored', need: nodes.length, value: true }),
    });
    const stored = result.winner?.members.map((m) => m.node) ?? [];
    const report = result.reports;
    // Roll back everywhere the share may have landed: every node except those that already
    // held this version before (version_exists), including nodes that timed out mid-write.
    const mayHold = nodes.filter((n) => !report.find((r) => r.nodeId === n.id)?.error?.includes('version_exists'));
    const fail = async (why: string, err: FedkmsError): Promise<never> => {
      await Promise.all(mayHold.map((n) => this.deleteQuietly(n, keyId, 1)));
      await this.tryRecord({ actor, action: `key.${mode}`, keyId, outcome: 'failure', details: { reason: why, nodes: report } });
      throw err;
    };
    if (stored.length < nodes.length) {
      if (report.some((r) => r.error?.includes('version_exists'))) await fail('key exists', new ConflictError('key_exists', `key ${keyId} already exists`));
      await fail('not every node stored its share', new QuorumError(`key ${keyId} was not created: every node must store its share`, { nodes: report }));
    }
    try {
      await this.record({ actor, action: `key.${mode}`, keyId, outcome: 'success', details: { version: 1, threshold, total: nodes.length, groupPublicKey: groupPublicKey(descriptor.publicPackage), nodes: report } });
    } catch {
      await fail('audit unavailable', new AuditUnavailableError());
    }
    return { key: summarize(descriptor), nodes: report };
  }

  private async deleteQuietly(node: NodeEndpoint, keyId: string, version: number) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), this.deps.timeoutMs);
    await this.deps.client
      .call(node, { method: 'DELETE', path: '/fragment', query: { keyId, version: String(version) } }, ctl.signal)
      .catch(() => undefined)
      .finally(() => clearTimeout(t));
  }

  /** Every key any node holds, with the nodes that hold it. */
  async listKeys() {
    const { answers, reports } = await this.collect((n, signal) => this.deps.client.call(n, { method: 'GET', path: '/keys' }, signal), listAnswerSchema);
    const keys = new Map<string, { keyId: string; latestVersion: number; heldBy: string[] }>();
    for (const [nodeId, a] of answers) {
      for (const k of a.keys) {
        const e = keys.get(k.keyId) ?? { keyId: k.keyId, latestVersion: 0, heldBy: [] };
        e.latestVersion = Math.max(e.latestVersion, ...k.versions);
        e.heldBy.push(nodeId);
        keys.set(k.keyId, e);
      }
    }
    return { keys: [...keys.values()].sort((a, b) => a.keyId.localeCompare(b.keyId)), nodes: reports };
  }

  /** Ask every node, wait for all (or their timeouts), keep the well-formed answers. */
  private async collect<T extends { nodeId: string }>(call: (n: NodeEndpoint, signal: AbortSignal) => Promise<unknown>, schema: z.ZodType<T>) {
    const result = await gather({
      nodes: this.deps.nodes,
      timeoutMs: this.deps.timeoutMs,
      stopEarly: false,
      call,
      judge: (n, a): Verdict<T> => {
        const p = schema.safeParse(a);
        return p.success && p.data.nodeId === n.id
          ? { ok: true, group: 'all', need: this.deps.nodes.length, value: p.data }
          : { ok: false, status: 'error', error: 'malformed answer' };
      },
    });
    const answers = new Map((result.winner?.members ?? []).map((m) => [m.node.id, m.value] as const));
    return { answers, reports: result.reports };
  }

  /** One key's public description, as agreed by a quorum of nodes, with per-node availability. */
  async describeKey(keyId: string) {
    const result = await gather({
      nodes: this.deps.nodes,
      timeoutMs: this.deps.timeoutMs,
      stopEarly: false,
      call: (n, signal) => this.deps.client.call(n, { method: 'GET', path: '/key', query: { keyId } }, signal),
      judge: (n, a): Verdict<KeyDescriptor> => {
        const p = describeAnswerSchema.safeParse(a);
        if (!p.success || p.data.nodeId !== n.id || p.data.descriptor.keyId !== keyId) return { ok: false, status: 'error', error: 'malformed answer' };
        const d = p.data.descriptor as KeyDescriptor;
        return { ok: true, group: descriptorDigest(d), need: d.publicPackage.threshold, value: d };
      },
    });
    const reports = markDissenters(result);
    const w = result.winner;
    if (!w || w.members.length < w.need) {
      if (reports.every((r) => r.status === 'not_found' || r.status === 'unreachable' || r.status === 'timeout') && reports.some((r) => r.status === 'not_found')) {
        throw new NotFoundError('key_not_found', `key ${keyId} not found`);
      }
      throw new QuorumError(`no quorum of nodes agrees on key ${keyId}`, { nodes: reports });
    }
    const d = w.members[0]!.value;
    const available = reports.filter((r) => r.status === 'valid').length;
    return { key: summarize(d), availability: { available, quorumMargin: available - d.publicPackage.threshold }, nodes: reports };
  }

  /**
   * Server-side reconstruction (the original example flow): gather t verified shares,
   * sealed to a one-time key, combine them, check s·G against the group key and unwrap
   * the secret. The release is audited first; without the audit record nothing is returned.
   */
  async reconstruct(keyId: string, actor: string) {
    const eph = generateX25519();
    const recipient = toB64(eph.publicKey);
    const result = await gather({
      nodes: this.deps.nodes,
      timeoutMs: this.deps.timeoutMs,
      call: (n, signal) => this.deps.client.call(n, { method: 'GET', path: '/fragment', query: { keyId, recipient } }, signal),
      judge: (n, a): Verdict<{ d: KeyDescriptor; share: Share }> => judgeFragment(n, a, keyId, eph.privateKey),
    });
    wipe(eph.privateKey);
    const reports = markDissenters(result);
    const w = result.winner;
    const shares = w?.members.map((m) => m.value.share) ?? [];
    try {
      if (!w || w.members.length < w.need) {
        const err = reports.every((r) => r.status === 'not_found')
          ? new NotFoundError('key_not_found', `key ${keyId} not found`)
          : reports.some((r) => r.error?.includes('key_not_exportable'))
          ? new ConflictError('key_not_exportable', `key ${keyId} was born distributed and is never reconstructed; use it to sign`)
          : new QuorumError(`fewer than the threshold of nodes returned a valid share of ${keyId}`, { nodes: reports });
        await this.tryRecord({ actor, action: 'key.reconstruct', keyId, outcome: 'failure', details: { reason: err.code, nodes: reports } });
        throw err;
      }
      const d = w.members[0]!.value.d;
      if (!d.wrapped) throw new ConflictError('key_not_exportable', `key ${keyId} holds no wrapped secret`);
      const s = combineShares(d.publicPackage, shares);
      let secret: Uint8Array;
      try {
        secret = unwrapSecret(keyId, s, d.wrapped);
      } finally {
        wipe(s);
      }
      try {
        await this.record({ actor, action: 'key.reconstruct', keyId, outcome: 'success', details: { version: d.version, usedNodes: w.members.map((m) => m.node.id), nodes: reports } });
      } catch {
        wipe(secret);
        throw new AuditUnavailableError();
      }
      const out = { hex: toHex(secret), base64: toB64(secret) };
      wipe(secret);
      return { keyId, version: d.version, groupPublicKey: groupPublicKey(d.publicPackage), threshold: d.publicPackage.threshold, secret: out, nodes: reports };
    } finally {
      shares.forEach((s) => wipe(s.signingShare));
    }
  }

  async verifyAudit() {
    return verifyAll(await this.deps.audit.readAll());
  }
}

function parseHexSecret(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new BadRequestError('invalid_secret', 'secretHex must be non-empty, even-length hex');
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Check one node's fragment: it must come from that node, open, and pass the Feldman check. */
function judgeFragment(n: NodeEndpoint, a: unknown, keyId: string, ephPrivate: Uint8Array): Verdict<{ d: KeyDescriptor; share: Share }> {
  const p = fragmentAnswerSchema.safeParse(a);
  if (!p.success) return { ok: false, status: 'error', error: 'malformed fragment answer' };
  const f = p.data;
  const identifier = identifierFor(n.index);
  if (f.nodeId !== n.id || f.identifier !== identifier || f.keyId !== keyId || f.descriptor.keyId !== keyId) {
    return { ok: false, status: 'invalid_share', error: 'answer is for another node or key' };
  }
  const d = f.descriptor as KeyDescriptor;
  let signingShare: Uint8Array;
  try {
    signingShare = open(ephPrivate, f.sealedShare, deliveryAad(keyId, d.version, n.id, identifier));
  } catch {
    return { ok: false, status: 'invalid_share', error: 'sealed share does not open' };
  }
  if (!isValidShare(d.publicPackage, { identifier, signingShare })) {
    wipe(signingShare);
    return { ok: false, status: 'invalid_share', error: 'share fails the commitment check (tampered)' };
  }
  return { ok: true, group: descriptorDigest(d), need: d.publicPackage.threshold, value: { d, share: { identifier, signingShare } } };
}

