/**
 * Administrative changes a node makes to its own state, each audited: key lifecycle
 * transitions (NIST SP 800-57), destruction of every stored version, policy updates and
 * client registrations. Illegal transitions are refused and audited too.
 */
import { assertTransition, type ClientRecord, type KeyState, type Policy } from '../access/policy.js';
import { AuditUnavailableError, FedkmsError } from '../errors.js';
import type { AuditLog } from '../ports.js';
import type { KeyControl, NodeAccess } from './access.js';
import { auditStream, type NodeService } from './service.js';

export class NodeLifecycle {
  constructor(
    private readonly nodeId: string,
    private readonly access: NodeAccess,
    private readonly service: NodeService,
    private readonly audit: AuditLog,
  ) {}

  private record(actor: string, action: string, keyId: string | undefined, outcome: 'success' | 'failure' | 'denied', details: Record<string, unknown>) {
    return this.audit.append(auditStream(this.nodeId), { actor, action, ...(keyId ? { keyId } : {}), outcome, details });
  }

  /**
   * `breakGlass`: a federation administrator who is not an administrator of the key moves it to
   * disabled, compromised or destroyed (lib/node/gate.ts); audited as `key.state.break-glass`.
   */
  async transition(control: KeyControl, to: KeyState, actor: string, reason?: string, breakGlass = false) {
    const keyId = control.keyId;
    const action = breakGlass ? 'key.state.break-glass' : 'key.state';
    const glass = breakGlass ? { breakGlass: true } : {};
    if (control.state === to) return { nodeId: this.nodeId, keyId, state: to, changed: false };
    try {
      assertTransition(keyId, control.state, to);
    } catch (e) {
      await this.record(actor, action, keyId, 'denied', { from: control.state, to, code: (e as FedkmsError).code, ...glass }).catch(() => undefined);
      throw e;
    }
    // Audit first (fail closed): a transition nobody can see never happens.
    try {
      await this.record(actor, action, keyId, 'success', { from: control.state, to, ...(reason ? { reason } : {}), ...glass });
    } catch {
      throw new AuditUnavailableError();
    }
    await this.access.putControl({ ...control, state: to, updatedAt: new Date().toISOString() });
    const deleted: number[] = [];
    if (to === 'destroyed') {
      // The control document stays as a tombstone, so later calls get a clear 410.
      for (const v of await this.service.versionsOf(keyId)) {
        await this.service.deleteVersion(keyId, v, actor);
        deleted.push(v);
      }
      await this.record(actor, breakGlass ? 'key.destroy.break-glass' : 'key.destroy', keyId, 'success', { deletedVersions: deleted, ...glass }).catch(() => undefined);
    }
    return { nodeId: this.nodeId, keyId, state: to, changed: true, ...glass, ...(to === 'destroyed' ? { deletedVersions: deleted } : {}) };
  }

  async setPolicy(control: KeyControl, policy: Policy, actor: string) {
    const next = { ...control, policy, policyVersion: control.policyVersion + 1, updatedAt: new Date().toISOString() };
    try {
      await this.record(actor, 'key.policy', control.keyId, 'success', { policyVersion: next.policyVersion });
    } catch {
      throw new AuditUnavailableError();
    }
    await this.access.putControl(next);
    return { nodeId: this.nodeId, keyId: control.keyId, policyVersion: next.policyVersion };
  }

  async registerClient(record: ClientRecord, actor: string) {
    try {
      await this.record(actor, 'client.register', undefined, 'success', { client: record.name, roles: record.roles, status: record.status });
    } catch {
      throw new AuditUnavailableError();
    }
    await this.access.putClient(record);
    return { nodeId: this.nodeId, client: record.name, status: record.status };
  }
}
