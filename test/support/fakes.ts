/** In-memory implementations of the ports, for unit tests of domain code. */
import { nextRecord } from '../../lib/audit/chain';
import { AuditUnavailableError } from '../../lib/errors';
import type { AuditEntry, AuditLog, AuditRecord, FragmentStore, ReplayGuard } from '../../lib/ports';

export class MemoryStore implements FragmentStore {
  readonly objects = new Map<string, string>();
  private k = (id: string, v: number) => `${id}/${v}`;
  async get(id: string, v: number) {
    return this.objects.get(this.k(id, v)) ?? null;
  }
  async create(id: string, v: number, body: string) {
    if (this.objects.has(this.k(id, v))) return false;
    this.objects.set(this.k(id, v), body);
    return true;
  }
  async delete(id: string, v: number) {
    this.objects.delete(this.k(id, v));
  }
  async versions(id: string) {
    return [...this.objects.keys()].filter((k) => k.startsWith(`${id}/`)).map((k) => Number(k.split('/')[1])).sort((a, b) => a - b);
  }
  async list() {
    const ids = [...new Set([...this.objects.keys()].map((k) => k.split('/')[0]!))];
    return Promise.all(ids.map(async (keyId) => ({ keyId, versions: await this.versions(keyId) })));
  }
  async ping() {}
  readonly sessions = new Map<string, string>();
  async putSession(kind: string, id: string, body: string) {
    this.sessions.set(`${kind}/${id}`, body);
  }
  async getSession(kind: string, id: string) {
    return this.sessions.get(`${kind}/${id}`) ?? null;
  }
  async deleteSession(kind: string, id: string) {
    this.sessions.delete(`${kind}/${id}`);
  }
  readonly docs = new Map<string, string>();
  async getDoc(kind: string, name: string) {
    return this.docs.get(`${kind}/${name}`) ?? null;
  }
  async putDoc(kind: string, name: string, body: string) {
    this.docs.set(`${kind}/${name}`, body);
  }
  async listDocs(kind: string) {
    return [...this.docs.keys()].filter((k) => k.startsWith(`${kind}/`)).map((k) => k.slice(kind.length + 1)).sort();
  }
}

export class MemoryAudit implements AuditLog {
  readonly records: AuditRecord[] = [];
  failing = false;
  async append(stream: string, entry: AuditEntry) {
    if (this.failing) throw new AuditUnavailableError();
    const head = this.records.filter((r) => r.stream === stream).at(-1);
    const r = nextRecord(stream, head, entry, new Date());
    this.records.push(r);
    return r;
  }
  async readAll() {
    return [...this.records];
  }
}

export class MemoryReplay implements ReplayGuard {
  readonly seen = new Set<string>();
  async claim(scope: string, id: string) {
    const k = `${scope}#${id}`;
    if (this.seen.has(k)) return false;
    this.seen.add(k);
    return true;
  }
}
