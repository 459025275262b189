/**
 * Federation administration through the coordinator: client registration, key
 * lifecycle, key policy, and the approvals that reconstruction may require. The
 * coordinator only relays and collects: each node decides, from the client's own signed
 * request, whether to apply a change; each node re-checks every approval signature.
 */
import * as z from '../zod.js';
import { clientRecordSchema, holders, matches, policySchema, transitionSchema, type Policy, type Principal } from '../access/policy.js';
import { approvalDigest, assertClientKey, verifyApproval, type Approval, type ApprovalRequest } from '../crypto/client-auth.js';
import { parseX25519Public } from '../crypto/seal.js';
import { fromB64 } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, ConflictError, ForbiddenError, NotFoundError, QuorumError } from '../errors.js';
import type { ApprovalStore } from '../ports.js';
import { ClientDirectory } from './clients.js';
import { AUDIT_STREAM, type CoordinatorDeps } from './common.js';
import { gather, quorumFailure, type NodeReport, type Verdict } from './fanout.js';
import type { NodeRequest } from './node-client.js';

export const registerClientSchema = z.partial(clientRecordSchema, { status: true }); // strict, as clientRecordSchema is
export const policyUpdateSchema = z.strictObject({ policy: policySchema });
export { transitionSchema };

export const approvalInputSchema = z.union([
  // The requester opens a request: this key, sealed to this recipient, until then.
  z.strictObject({ keyId: z.string(), recipient: z.string().check(z.maxLength(64)), expiresAt: z.optional(z.number().check(z.int(), z.positive())), version: z.optional(z.number().check(z.int(), z.gte(1))) }),
  // An approver signs it.
  z.strictObject({ keyId: z.string(), digest: z.string().check(z.regex(/^[0-9a-f]{64}$/)), signature: z.string().check(z.maxLength(100)) }),
]);

const MAX_APPROVAL_MS = 24 * 3600_000;
/** Open (unexpired) approval requests one client may hold on one key at a time. */
export const MAX_OPEN_APPROVALS = 8;

/** What the approval routes need to know of a key: its current version and its policy, as a quorum of nodes holds them. */
export interface KeyView {
  version: number;
  /** The key's type: its one purpose says which release approvals are for (decrypt for `encrypt` keys). */
  type?: string;
  policy: Policy | undefined;
}

/** A federation administrator (role `admin`): sees the whole registry, every approval and the audit trail. */
export const isAdministrator = (who: Principal): boolean => who.roles.includes('admin');

/** The key's policy, or a refusal: without one the coordinator cannot tell who is entitled, so nobody is (fail closed). */
function policyOf(view: KeyView, keyId: string): Policy {
  const p = policySchema.safeParse(view.policy);
  if (!p.success) throw new ForbiddenError('not_authorized', `no quorum of nodes returned the policy of key ${keyId}`);
  return p.data;
}

export class Administration {
  constructor(
    private readonly deps: CoordinatorDeps,
    private readonly approvals?: ApprovalStore,
  ) {}

  private directory = () => new ClientDirectory(this.deps);

  private async audit(actor: string, action: string, keyId: string | undefined, details: Record<string, unknown>) {
    try {
      await this.deps.audit.append(AUDIT_STREAM, { actor, action, ...(keyId ? { keyId } : {}), outcome: 'success', details });
    } catch {
      throw new AuditUnavailableError();
    }
  }

  /**
   * Send one change to every node and report each. It stands when every node that holds
   * the key (or, for the registry, every node) applied it; otherwise the error names the
   * nodes that did not, and the change can be sent again (it is idempotent).
   */
  private async everywhere(what: string, req: NodeRequest, holdersOnly: boolean, seen?: (answer: unknown) => void): Promise<NodeReport[]> {
    const result = await gather({
      nodes: this.deps.nodes,
      timeoutMs: Math.max(5_000, this.deps.timeoutMs * 2),
      stopEarly: false,
      call: (n, signal) => this.deps.client.call(n, req, signal),
      judge: (_n, answer): Verdict<true> => {
        seen?.(answer);
        return { ok: true, group: 'applied', need: 1, value: true };
      },
    });
    const reports = result.reports;
    const relevant = holdersOnly ? reports.filter((r) => r.status !== 'not_found') : reports;
    if (relevant.length === 0) throw new NotFoundError('key_not_found', `no node holds ${what}`);
    if (relevant.every((r) => r.status === 'valid')) return reports;
    if (relevant.some((r) => r.status === 'valid')) {
      throw new QuorumError(`${what}: applied on some nodes only; send it again when the others are back`, { nodes: reports, partial: true });
    }
    throw quorumFailure(`${what}: no node applied it`, { nodes: reports });
  }

  /** Every node checks that an administrator signed this exact registration (lib/node/gate.ts). */
  async registerClient(input: z.infer<typeof registerClientSchema>, actor: string) {
    assertClientKey(input.publicKey);
    const record = { ...input, status: input.status ?? 'active' };
    const nodes = await this.everywhere(`client ${record.name}`, { method: 'PUT', path: '/client', body: record }, false);
    ClientDirectory.forget(record.name);
    await this.audit(actor, 'client.register', undefined, { client: record.name, roles: record.roles, status: record.status, nodes });
    return { client: record, nodes };
  }

  /** The registry in full for administrators; any other client sees its own entry only. */
  async listClients(who: Principal) {
    const all = await this.directory().list();
    return isAdministrator(who) ? all : { ...all, clients: all.clients.filter((c) => c.name === who.name) };
  }

  async transition(keyId: string, input: z.infer<typeof transitionSchema>, actor: string) {
    // A federation administrator acting on a key it does not administer (lib/node/gate.ts): break-glass, recorded as such.
    let breakGlass = false;
    const nodes = await this.everywhere(`key ${keyId}`, { method: 'POST', path: '/key/state', body: { keyId, ...input } }, true, (a) => {
      if ((a as { breakGlass?: unknown } | undefined)?.breakGlass === true) breakGlass = true;
    });
    await this.audit(actor, `${input.state === 'destroyed' ? 'key.destroy' : 'key.state'}${breakGlass ? '.break-glass' : ''}`, keyId, { state: input.state, nodes, ...(breakGlass ? { breakGlass } : {}) });
    return { keyId, state: input.state, ...(breakGlass ? { breakGlass } : {}), nodes };
  }

  async setPolicy(keyId: string, input: z.infer<typeof policyUpdateSchema>, actor: string) {
    const nodes = await this.everywhere(`key ${keyId}`, { method: 'PUT', path: '/key/policy', body: { keyId, policy: input.policy } }, true);
    await this.audit(actor, 'key.policy', keyId, { nodes });
    return { keyId, policy: input.policy, nodes };
  }

  private store(): ApprovalStore {
    if (!this.approvals) throw new BadRequestError('approvals_unavailable', 'this federation has no approvals table');
    return this.approvals;
  }

  /**
   * Open a request (by a client the key's policy lets reconstruct, at most MAX_OPEN_APPROVALS
   * open per key and requester) or approve one (by an active approver the key's policy names,
   * whose signature verifies). Nothing else reaches the table.
   */
  async approval(input: z.infer<typeof approvalInputSchema>, who: Principal, actor: string, keyView: (keyId: string) => Promise<KeyView>) {
    const store = this.store();
    if ('digest' in input) {
      const rec = await store.get(input.keyId, input.digest);
      if (!rec || rec.request.expiresAt <= Date.now()) throw new NotFoundError('approval_request_not_found', 'no open request with that digest');
      if (rec.request.requester === who.name) throw new ForbiddenError('self_approval', 'a requester cannot approve their own request');
      const policy = policyOf(await keyView(input.keyId), input.keyId);
      const approver = await this.directory().lookup(who.name);
      if (!approver || approver.status !== 'active' || !matches(policy.approvals.approvers, { name: approver.name, roles: approver.roles })) {
        throw new ForbiddenError('not_authorized', `client ${who.name} is not an approver of key ${input.keyId}`);
      }
      if (!verifyApproval(fromB64(approver.publicKey), rec.request, input.signature)) {
        throw new BadRequestError('approval_invalid', 'the approval signature does not verify over that request');
      }
      await this.audit(actor, 'approval.grant', input.keyId, { digest: input.digest, requester: rec.request.requester });
      await store.approve(input.keyId, input.digest, who.name, input.signature);
      return { digest: input.digest, request: rec.request, approvers: [...new Set([...Object.keys(rec.approvals), who.name])].sort() };
    }
    parseX25519Public(input.recipient);
    const now = Date.now();
    const expiresAt = input.expiresAt ?? now + 3600_000;
    if (expiresAt <= now || expiresAt > now + MAX_APPROVAL_MS) throw new BadRequestError('invalid_expiry', 'expiresAt must be in the next 24 hours');
    const view = await keyView(input.keyId);
    const policy = policyOf(view, input.keyId);
    // Approvals are asked for the key's release (reconstruction, or decryption for an encrypt key): only a client that may do it may ask.
    const release = view.type === 'encrypt' ? 'decrypt' : 'reconstruct';
    if (!matches(holders(policy, release), who)) throw new ForbiddenError('not_authorized', `client ${who.name} may not ${release} key ${input.keyId}`);
    const open = (await store.list(input.keyId)).filter((r) => r.request.requester === who.name && r.request.expiresAt > now).length;
    if (open >= MAX_OPEN_APPROVALS) {
      throw new ConflictError('too_many_open_requests', `client ${who.name} already has ${open} open approval requests for key ${input.keyId}; use one or let it expire`);
    }
    const request: ApprovalRequest = { keyId: input.keyId, version: input.version ?? view.version, requester: who.name, recipient: input.recipient, expiresAt };
    const digest = approvalDigest(request);
    await this.audit(actor, 'approval.request', input.keyId, { digest, version: request.version, recipient: request.recipient, expiresAt });
    await store.open({ keyId: input.keyId, digest, request, approvals: {}, createdAt: new Date().toISOString() });
    return { status: 201, body: { digest, request } };
  }

  /**
   * Open requests for a key: all of them for administrators (federation or of the key) and the
   * key's approvers; any other client sees only the requests it opened itself.
   */
  async listApprovals(keyId: string, who: Principal, keyView: (keyId: string) => Promise<KeyView>) {
    const store = this.store();
    const now = Date.now();
    let mineOnly = !isAdministrator(who);
    if (mineOnly) {
      const policy = policyOf(await keyView(keyId), keyId);
      mineOnly = !matches(policy.approvals.approvers, who) && !matches(policy.admin, who);
    }
    const open = (await store.list(keyId)).filter((r) => r.request.expiresAt > now && (!mineOnly || r.request.requester === who.name));
    return { keyId, requests: open.map((r) => ({ digest: r.digest, request: r.request, approvers: Object.keys(r.approvals).sort(), createdAt: r.createdAt })) };
  }

  /** Approvals collected for the request this reconstruction makes; nodes re-check each one. */
  async approvalsFor(keyId: string, requester: string, recipient: string, expiresAt: number): Promise<Approval[]> {
    if (!this.approvals) return [];
    const mine = (await this.approvals.list(keyId)).filter((r) => r.request.requester === requester && r.request.recipient === recipient && r.request.expiresAt === expiresAt);
    return mine.flatMap((r) => Object.entries(r.approvals).map(([approver, signature]) => ({ approver, signature })));
  }
}
