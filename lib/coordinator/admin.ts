/**
 * Federation administration through the coordinator: client registration, key
 * lifecycle, key policy, and the approvals that reconstruction may require. The
 * coordinator only relays and collects: each node decides, from the client's own signed
 * request, whether to apply a change; each node re-checks every approval signature.
 */
import * as z from '../zod.js';
import { clientRecordSchema, policySchema, transitionSchema, type Principal } from '../access/policy.js';
import { approvalDigest, assertClientKey, verifyApproval, type Approval, type ApprovalRequest } from '../crypto/client-auth.js';
import { parseX25519Public } from '../crypto/seal.js';
import { fromB64 } from '../encoding.js';
import { AuditUnavailableError, BadRequestError, ForbiddenError, NotFoundError, QuorumError } from '../errors.js';
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

  listClients() {
    return this.directory().list();
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

  /** Open a request (by the requester) or approve one (by another client). */
  async approval(input: z.infer<typeof approvalInputSchema>, who: Principal, actor: string, currentVersion: (keyId: string) => Promise<number>) {
    const store = this.store();
    if ('digest' in input) {
      const rec = await store.get(input.keyId, input.digest);
      if (!rec || rec.request.expiresAt <= Date.now()) throw new NotFoundError('approval_request_not_found', 'no open request with that digest');
      if (rec.request.requester === who.name) throw new ForbiddenError('self_approval', 'a requester cannot approve their own request');
      const approver = await this.directory().lookup(who.name);
      if (!approver || !verifyApproval(fromB64(approver.publicKey), rec.request, input.signature)) {
        throw new BadRequestError('approval_invalid', 'the approval signature does not verify over that request');
      }
      await this.audit(actor, 'approval.grant', input.keyId, { digest: input.digest, requester: rec.request.requester });
      await store.approve(input.keyId, input.digest, who.name, input.signature);
      return { digest: input.digest, request: rec.request, approvers: [...new Set([...Object.keys(rec.approvals), who.name])].sort() };
    }
    parseX25519Public(input.recipient);
    const expiresAt = input.expiresAt ?? Date.now() + 3600_000;
    if (expiresAt <= Date.now() || expiresAt > Date.now() + MAX_APPROVAL_MS) throw new BadRequestError('invalid_expiry', 'expiresAt must be in the next 24 hours');
    const request: ApprovalRequest = { keyId: input.keyId, version: input.version ?? (await currentVersion(input.keyId)), requester: who.name, recipient: input.recipient, expiresAt };
    const digest = approvalDigest(request);
    await this.audit(actor, 'approval.request', input.keyId, { digest, version: request.version, recipient: request.recipient, expiresAt });
    await store.open({ keyId: input.keyId, digest, request, approvals: {}, createdAt: new Date().toISOString() });
    return { status: 201, body: { digest, request } };
  }

  async listApprovals(keyId: string) {
    const now = Date.now();
    const open = (await this.store().list(keyId)).filter((r) => r.request.expiresAt > now);
    return { keyId, requests: open.map((r) => ({ digest: r.digest, request: r.request, approvers: Object.keys(r.approvals).sort(), createdAt: r.createdAt })) };
  }

  /** Approvals collected for the request this reconstruction makes; nodes re-check each one. */
  async approvalsFor(keyId: string, requester: string, recipient: string, expiresAt: number): Promise<Approval[]> {
    if (!this.approvals) return [];
    const mine = (await this.approvals.list(keyId)).filter((r) => r.request.requester === requester && r.request.recipient === recipient && r.request.expiresAt === expiresAt);
    return mine.flatMap((r) => Object.entries(r.approvals).map(([approver, signature]) => ({ approver, signature })));
  }
}
