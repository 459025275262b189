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

  async transition(control: KeyControl, to: KeyState, actor: string, reason?: string) {
    const keyId = control.keyId;
    if (control.state === to) return { nodeId: this.nodeId, keyId, state: to, changed: false };
    try {
      assertTransition(keyId, control.state, to);
    } catch (e) {
      await this.record(actor, 'key.state', keyId, 'denied', { from: control.state, to, code: (e as FedkmsError).code }).catch(() => undefined);
      throw e;
    }
    // Audit first (fail closed): a transition nobody can see never happens.
    try {
      await this.record(actor, 'key.state', keyId, 'success', { from: control.state, to, ...(reason ? { reason } : {}) });
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
      await this.record(actor, 'key.destroy', keyId, 'success', { deletedVersions: deleted }).catch(() => undefined);
    }
    return { nodeId: this.nodeId, keyId, state: to, changed: true, ...(to === 'destroyed' ? { deletedVersions: deleted } : {}) };
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
