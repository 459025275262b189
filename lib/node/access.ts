/**
 * Zero trust at the node: the node checks the client's own signed request (relayed by
 * the coordinator as an envelope) against its own client registry and the policy and
 * lifecycle state stored beside its own fragment. A coordinator that forges, alters or
 * replays a client request gets nothing: no share, no signature share, no DKG package.
 *
 * The registry and the per-key control documents are sealed under the node's wrapping
 * key, so write access to the bucket alone cannot add a client or loosen a policy.
 */
import { aesGcmOpen, aesGcmSeal, type AeadBox } from '../crypto/aead.js';
import { verifyApproval, verifyClientRequest, type ApprovalRequest, type ClientEnvelope } from '../crypto/client-auth.js';
import { canonicalJson } from '../crypto/hash.js';
import { fromB64, jsonDepthWithin, toB64, utf8 } from '../encoding.js';
import { FragmentCorruptedError, ForbiddenError, NotFoundError, UnauthorizedError } from '../errors.js';
import type { DocKind, FragmentStore, ReplayGuard } from '../ports.js';
import {
  assertUsable,
  clientRecordSchema,
  defaultPolicy,
  matches,
  policySchema,
  requirePermission,
  KEY_STATES,
  type ClientRecord,
  type KeyState,
  type Operation,
  type Policy,
  type Principal,
} from '../access/policy.js';
import * as z from '../zod.js';

export interface KeyControl {
  keyId: string;
  state: KeyState;
  policy: Policy;
  policyVersion: number;
  /** The client that created the key. */
  owner: string;
  updatedAt: string;
  /** `<client>:<request id>` of the request that created this document (create, or joining by reshare). */
  createRequest?: string | undefined;
}

const controlSchema = z
  .strictObject({ keyId: z.string(), state: z.enum(KEY_STATES), policy: policySchema, policyVersion: z.number().check(z.int(), z.gte(1)), owner: z.string(), updatedAt: z.string(), createRequest: z.optional(z.string()) });

/** What dealers of a reshare vouch for about a key, so a node joining it inherits the same rules. */
export const dealtControlSchema = z.strictObject({ state: z.enum(KEY_STATES), policy: policySchema, policyVersion: z.number().check(z.int(), z.gte(1)), owner: z.string() });
export type DealtControl = z.infer<typeof dealtControlSchema>;

export interface AccessDeps {
  nodeId: string;
  wrapKey: Uint8Array;
  store: FragmentStore;
  replay: ReplayGuard;
  /** The first administrator (`admin`), from configuration; a registry entry named `admin` overrides it. */
  bootstrapAdmin?: Uint8Array | undefined;
  maxSkewS: number;
}

export const BOOTSTRAP_ADMIN = 'admin';
const MAX_APPROVAL_MS = 24 * 3600_000;

/** Who made a request, as recorded in control documents. */
export const requestMark = (a: { who: Principal; request: { requestId: string } }) => `${a.who.name}:${a.request.requestId}`;

export interface Authenticated {
  who: Principal;
  request: ClientEnvelope;
  /** The client's JSON body, parsed (an empty object when there was none). */
  body: Record<string, unknown>;
}

export class NodeAccess {
  constructor(private readonly deps: AccessDeps) {}

  private aad = (kind: string, name: string) => `fedkms/${kind}/v1|${this.deps.nodeId}|${name}`;

  async readDoc<T>(kind: DocKind, name: string, schema: z.ZodMiniType<T>): Promise<T | null> {
    const raw = await this.deps.store.getDoc(kind, name);
    if (raw === null) return null;
    try {
      const plain = aesGcmOpen(this.deps.wrapKey, JSON.parse(raw) as AeadBox, this.aad(kind, name));
      return schema.parse(JSON.parse(Buffer.from(plain).toString('utf8')));
    } catch {
      // A document that does not open under this node's key was written by someone else.
      throw new FragmentCorruptedError(this.deps.nodeId, `${kind}:${name}`);
    }
  }

  async writeDoc(kind: DocKind, name: string, value: unknown): Promise<void> {
    await this.deps.store.putDoc(kind, name, JSON.stringify(aesGcmSeal(this.deps.wrapKey, utf8(canonicalJson(value)), this.aad(kind, name))));
  }

  async client(name: string): Promise<ClientRecord | null> {
    const stored = await this.readDoc('client', name, clientRecordSchema);
    if (stored) return stored;
    if (name === BOOTSTRAP_ADMIN && this.deps.bootstrapAdmin) {
      return { name, publicKey: toB64(this.deps.bootstrapAdmin), roles: ['admin'], status: 'active' };
    }
    return null;
  }

  async listClients(): Promise<ClientRecord[]> {
    const names = new Set(await this.deps.store.listDocs('client'));
    if (this.deps.bootstrapAdmin) names.add(BOOTSTRAP_ADMIN);
    const out: ClientRecord[] = [];
    for (const n of [...names].sort()) {
      const c = await this.client(n);
      if (c) out.push(c);
    }
    return out;
  }

  putClient(record: ClientRecord): Promise<void> {
    return this.writeDoc('client', record.name, clientRecordSchema.parse(record));
  }

  control(keyId: string): Promise<KeyControl | null> {
    return this.readDoc('control', keyId, controlSchema) as Promise<KeyControl | null>;
  }

  putControl(c: KeyControl): Promise<void> {
    return this.writeDoc('control', c.keyId, c);
  }

  /**
   * Verify the client's own signature, freshness and standing, and spend the request
   * id for `scope` (the node route, and a session where one request drives several).
   */
  async authenticate(envelope: ClientEnvelope | undefined, scope: string, now = Date.now()): Promise<Authenticated> {
    if (!envelope) throw new UnauthorizedError('client_auth_missing', 'this operation needs a client-signed request');
    if (Math.abs(now - Number(envelope.timestamp)) > this.deps.maxSkewS * 1000) throw new UnauthorizedError('request_stale', 'client request timestamp outside the allowed window');
    const record = await this.client(envelope.client);
    if (!record) throw new UnauthorizedError('client_unknown', `client ${envelope.client} is not registered`);
    let publicKey: Uint8Array;
    try {
      publicKey = fromB64(record.publicKey);
    } catch {
      throw new UnauthorizedError('client_unknown', `client ${envelope.client} has no valid key`);
    }
    if (!verifyClientRequest(publicKey, envelope)) throw new UnauthorizedError('client_signature_invalid', 'client signature does not verify');
    if (record.status !== 'active') throw new UnauthorizedError('client_disabled', `client ${envelope.client} is disabled`);
    const fresh = await this.deps.replay.claim(this.deps.nodeId, `client:${envelope.client}:${envelope.requestId}:${scope}`, Math.floor(now / 1000) + 2 * this.deps.maxSkewS);
    if (!fresh) throw new UnauthorizedError('request_replayed', 'client request was already used');
    let body: Record<string, unknown> = {};
    // A body nested deeper than any request needs matches no operation (and must not reach canonical JSON).
    if (envelope.body && jsonDepthWithin(envelope.body)) {
      try {
        const parsed = JSON.parse(envelope.body) as unknown;
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
      } catch {
        // A body that is not JSON matches no operation below, so it is refused there.
      }
    }
    return { who: { name: record.name, roles: record.roles }, request: envelope, body };
  }

  /** The key's control document; a key without one is not served. */
  async requireControl(keyId: string, loaded?: KeyControl | null): Promise<KeyControl> {
    const c = loaded === undefined ? await this.control(keyId) : loaded;
    if (!c) throw new NotFoundError('key_not_found', `key ${keyId} not found on ${this.deps.nodeId}`);
    return c;
  }

  /** Permission and lifecycle for `op` on `keyId`, from this node's own control document. */
  async authorize(keyId: string, who: Principal, op: Operation, loaded?: KeyControl | null): Promise<KeyControl> {
    const c = await this.requireControl(keyId, loaded);
    assertUsable(keyId, c.state, op);
    requirePermission(c.policy, who, op, keyId);
    return c;
  }

  /**
   * `authenticate` and the key's control document read side by side (two storage reads
   * overlap instead of queueing); an authentication failure always wins over anything
   * the control document would have said.
   */
  async authenticateFor(envelope: ClientEnvelope | undefined, scope: string, keyId: string): Promise<[Authenticated, KeyControl | null]> {
    const [a, c] = await Promise.allSettled([this.authenticate(envelope, scope), this.control(keyId)]);
    if (a.status === 'rejected') throw a.reason;
    if (c.status === 'rejected') throw c.reason;
    return [a.value, c.value];
  }

  /** The control document for a key being created now; a leftover from a failed create is replaced. */
  newControl(keyId: string, creator: string, policyInput: unknown, state: unknown, type?: 'secret' | 'ed25519' | 'encrypt'): KeyControl {
    // With the key's type, the creator's defaults grant only the key's purpose (lib/access/policy.ts).
    const policy = defaultPolicy(creator, (policyInput ?? {}) as Partial<Policy>, type);
    return {
      keyId,
      state: state === 'pre-active' ? 'pre-active' : 'active',
      policy: policySchema.parse(policy),
      policyVersion: 1,
      owner: creator,
      updatedAt: new Date().toISOString(),
    };
  }

  /**
   * m-of-n approvals of one reconstruction, each a signature over that exact request by a
   * distinct, registered, active approver who is not the requester and whom the policy allows.
   */
  async checkApprovals(policy: Policy, request: ApprovalRequest, approvals: ClientEnvelope['approvals'], now = Date.now()): Promise<number> {
    return (await this.approvers(policy, request, approvals, now)).length;
  }

  /** The approvers `checkApprovals` counted, by name, for the audit record of the release. */
  async approvers(policy: Policy, request: ApprovalRequest, approvals: ClientEnvelope['approvals'], now = Date.now()): Promise<string[]> {
    const need = policy.approvals.required;
    if (need === 0) return [];
    if (request.expiresAt <= now) throw new ForbiddenError('approvals_expired', 'the approved request has expired');
    // Approvals last at most a day, whatever the coordinator collected.
    if (request.expiresAt > now + MAX_APPROVAL_MS) throw new ForbiddenError('approvals_expired', 'an approved request may last at most 24 hours');
    const counted = new Set<string>();
    for (const a of approvals ?? []) {
      if (a.approver === request.requester || counted.has(a.approver)) continue;
      const rec = await this.client(a.approver);
      if (!rec || rec.status !== 'active' || !matches(policy.approvals.approvers, { name: rec.name, roles: rec.roles })) continue;
      if (verifyApproval(fromB64(rec.publicKey), request, a.signature)) counted.add(a.approver);
    }
    if (counted.size < need) {
      throw new ForbiddenError('approvals_required', `reconstruction of ${request.keyId} needs ${need} approval(s) of this exact request; ${counted.size} valid`);
    }
    return [...counted].sort();
  }
}

/** The client route that may drive a node route: `POST /keys/{keyId}/sign` and so on. */
export function requireClientRoute(a: Authenticated, method: string, pattern: RegExp, what: string): RegExpExecArray {
  const m = a.request.method === method ? pattern.exec(a.request.path) : null;
  if (!m) throw new ForbiddenError('client_request_mismatch', `the client request does not authorize ${what}`);
  return m;
}
