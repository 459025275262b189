/**
 * Hash-chained audit log in DynamoDB.
 *
 * Every Lambda execution environment appends to a chain of its own: partition key
 * `<component stream>#<instance id>` (for example `node#node1#k3x9…`). An environment
 * handles one request at a time, so its chain never sees two writers and an append
 * is a single conditional put, with no read. One shared chain per component made a
 * burst of concurrent Lambdas retry against each other quadratically (see the design
 * change log). Appends stay conditional (`attribute_not_exists`), and a lost or
 * ambiguous write is recovered by re-reading the head, so a chain can never fork.
 * Any failure surfaces as AuditUnavailableError, which callers treat as "release nothing".
 */
import { randomBytes } from 'node:crypto';
import { PutCommand, QueryCommand, ScanCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { nextRecord, type RecordSigner } from '../audit/chain.js';
import { AuditUnavailableError } from '../errors.js';
import type { AuditEntry, AuditLog, AuditRecord } from '../ports.js';

const MAX_ATTEMPTS = 5;

/** Fixed for the life of this execution environment (module scope = one cold start). */
const INSTANCE_ID = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x');
const heads = new Map<string, AuditRecord>();

export const instanceStream = (stream: string, instance = INSTANCE_ID) => `${stream}#${instance}`;

export class DynamoAuditLog implements AuditLog {
  /** `sign`: the writer's identity key over each record's hash (lib/audit/chain.ts), so a row cannot be rewritten without that key. */
  constructor(private readonly ddb: DynamoDBDocumentClient, private readonly table: string, private readonly instance = INSTANCE_ID, private readonly sign?: RecordSigner) {}

  async append(stream: string, entry: AuditEntry): Promise<AuditRecord> {
    const partition = instanceStream(stream, this.instance);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const record = nextRecord(partition, heads.get(partition), entry, new Date(), this.sign);
      try {
        await this.ddb.send(new PutCommand({ TableName: this.table, Item: record, ConditionExpression: 'attribute_not_exists(seq)' }));
        heads.set(partition, record);
        return record;
      } catch (e) {
        if ((e as { name?: string }).name !== 'ConditionalCheckFailedException') {
          // The write may or may not have landed; re-read the head before the next append.
          heads.delete(partition);
          throw new AuditUnavailableError();
        }
        await this.reloadHead(partition);
      }
    }
    throw new AuditUnavailableError();
  }

  private async reloadHead(partition: string): Promise<void> {
    try {
      const q = await this.ddb.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: '#s = :s',
          ExpressionAttributeNames: { '#s': 'stream' },
          ExpressionAttributeValues: { ':s': partition },
          ScanIndexForward: false,
          Limit: 1,
          ConsistentRead: true,
        }),
      );
      const head = q.Items?.[0] as AuditRecord | undefined;
      if (head) heads.set(partition, head);
      else heads.delete(partition);
    } catch {
      throw new AuditUnavailableError();
    }
  }

  /**
   * At most `maxItems` records, for views that must stay cheap (the dashboard). The table
   * has no global order, so this is a bounded scan: `complete` says whether it saw every
   * record; when it did not, callers must not claim the chains verified.
   */
  async readBounded(maxItems: number, after?: { stream: string; seq: number }): Promise<{ records: AuditRecord[]; complete: boolean; next?: { stream: string; seq: number } }> {
    const out: AuditRecord[] = [];
    let start: Record<string, unknown> | undefined = after ? { stream: after.stream, seq: after.seq } : undefined;
    try {
      do {
        const page = await this.ddb.send(
          new ScanCommand({ TableName: this.table, ExclusiveStartKey: start, ConsistentRead: true, Limit: Math.min(1000, maxItems - out.length) }),
        );
        out.push(...((page.Items ?? []) as AuditRecord[]));
        start = page.LastEvaluatedKey;
      } while (start && out.length < maxItems);
    } catch {
      throw new AuditUnavailableError();
    }
    // `next`: where a following page starts (the verifier reads every record, page by page).
    return { records: out, complete: !start, ...(start ? { next: { stream: String(start['stream']), seq: Number(start['seq']) } } : {}) };
  }

  async readAll(): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    let start: Record<string, unknown> | undefined;
    try {
      do {
        const page = await this.ddb.send(new ScanCommand({ TableName: this.table, ExclusiveStartKey: start, ConsistentRead: true }));
        out.push(...((page.Items ?? []) as AuditRecord[]));
        start = page.LastEvaluatedKey;
      } while (start);
    } catch {
      throw new AuditUnavailableError();
    }
    return out;
  }
}
