/**
 * Hash-chained audit log in DynamoDB. Appends are conditional puts on (stream, seq),
 * so two concurrent writers can never both take the same link: the loser re-reads the
 * head and retries. Any failure to append surfaces as AuditUnavailableError, which the
 * callers treat as "release nothing".
 */
import { PutCommand, QueryCommand, ScanCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { nextRecord } from '../audit/chain.js';
import { AuditUnavailableError } from '../errors.js';
import type { AuditEntry, AuditLog, AuditRecord } from '../ports.js';

const MAX_ATTEMPTS = 80;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class DynamoAuditLog implements AuditLog {
  constructor(private readonly ddb: DynamoDBDocumentClient, private readonly table: string) {}

  async append(stream: string, entry: AuditEntry): Promise<AuditRecord> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let head: AuditRecord | undefined;
      try {
        const q = await this.ddb.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: '#s = :s',
            ExpressionAttributeNames: { '#s': 'stream' },
            ExpressionAttributeValues: { ':s': stream },
            ScanIndexForward: false,
            Limit: 1,
            ConsistentRead: true,
          }),
        );
        head = q.Items?.[0] as AuditRecord | undefined;
        const record = nextRecord(stream, head, entry, new Date());
        await this.ddb.send(
          new PutCommand({ TableName: this.table, Item: record, ConditionExpression: 'attribute_not_exists(seq)' }),
        );
        return record;
      } catch (e) {
        if ((e as { name?: string }).name !== 'ConditionalCheckFailedException') throw new AuditUnavailableError();
        // Lost the race for this link; back off with jitter so contenders spread out.
        await sleep(Math.random() * Math.min(50, 2 + attempt * 2));
      }
    }
    throw new AuditUnavailableError();
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
