/**
 * The audit trail as the dashboard reads it: the coordinator's own chains plus each member's,
 * read from that member (`GET /nodes/<id>/audit/records`), since every operator keeps its chains
 * in its own storage. Bounded like the coordinator's own scan; a member that does not answer,
 * or holds more than its share of the bound, makes the read incomplete (so the dashboard does
 * not claim the chains verified). A member gets at most `timeoutMs`: a slow one must not hold
 * up the whole dashboard.
 */
import * as z from '../zod.js';
import { untilDeadline } from '../deadline.js';
import type { AuditRecord } from '../ports.js';
import type { NodeEndpoint } from '../runtime-config.js';
import type { NodeClient } from './node-client.js';
import { lastCheckpoints, trustedCheckpoints, type WitnessedCheckpoint } from '../audit/checkpoint.js';
import { witnessedSchema } from '../node/witness.js';

const witnessedAnswer = z.object({ nodeId: z.string(), checkpoints: z.array(witnessedSchema) });

const recordsAnswer = z.object({ nodeId: z.string(), complete: z.boolean(), records: z.array(z.looseObject({ stream: z.string(), seq: z.number() })) });

export interface BoundedAuditReader {
  readBounded(maxItems: number): Promise<{ records: AuditRecord[]; complete: boolean }>;
}

export class FederatedAuditReader implements BoundedAuditReader {
  constructor(private readonly own: BoundedAuditReader, private readonly nodes: NodeEndpoint[], private readonly client: NodeClient, private readonly timeoutMs: number, private readonly coordinatorKey?: string) {}

  /**
   * Per component, the newest checkpoint any witness keeps (lib/audit/checkpoint.ts), each copy
   * checked against its origin's and its witness's keys: what the dashboard shows with its age.
   */
  async checkpoints() {
    const copies = await Promise.all(this.nodes.map((n) =>
      this.client.call(n, { method: 'GET', path: '/audit/witnessed' }, AbortSignal.any([untilDeadline(this.timeoutMs), AbortSignal.timeout(this.timeoutMs)])).then(
        (a) => witnessedAnswer.parse(a).checkpoints.filter((w) => w.witness === n.id) as WitnessedCheckpoint[],
        () => [] as WitnessedCheckpoint[],
      ),
    ));
    const keys = new Map<string, string>([...(this.coordinatorKey ? [['coordinator', this.coordinatorKey] as [string, string]] : []), ...this.nodes.map((n) => [n.id, n.signingPublic] as [string, string])]);
    return lastCheckpoints(trustedCheckpoints(copies.flat(), keys, new Set(this.nodes.map((n) => n.id))));
  }

  async readBounded(maxItems: number) {
    const share = Math.max(100, Math.floor(maxItems / (this.nodes.length + 1)));
    const [own, ...fromNodes] = await Promise.all([
      this.own.readBounded(share),
      ...this.nodes.map(async (n) => {
        try {
          const a = recordsAnswer.parse(await this.client.call(n, { method: 'GET', path: '/audit/records', query: { limit: String(share) } }, AbortSignal.any([untilDeadline(this.timeoutMs), AbortSignal.timeout(this.timeoutMs)])));
          // A member answers for its own chains only.
          const records = (a.records as unknown as AuditRecord[]).filter((r) => r.stream.startsWith(`node#${n.id}#`) || r.stream === `node#${n.id}`);
          return { records, complete: a.complete && a.nodeId === n.id && records.length === a.records.length };
        } catch {
          return { records: [] as AuditRecord[], complete: false };
        }
      }),
    ]);
    return { records: [...own.records, ...fromNodes.flatMap((x) => x.records)], complete: own.complete && fromNodes.every((x) => x.complete) };
  }
}
