/**
 * Pre-published nonce commitments in DynamoDB, so any coordinator instance can sign
 * in one round trip. Taking a commitment is a conditional delete: two concurrent
 * requests can never both take the same one (and the node enforces single use anyway).
 */
import { BatchWriteCommand, DeleteCommand, QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { StorageError } from '../errors.js';
import type { CommitmentPool, PoolEntry, PooledCommitment } from '../ports.js';

const sk = (c: Pick<PooledCommitment, 'nodeId' | 'sessionId'>) => `${c.nodeId}#${c.sessionId}`;
/** The attributes a listing reads (all but `descriptor`). */
const LISTED = ['keyId', 'nodeId', 'sessionId', 'version', 'digest', 'threshold', 'commitment', 'expiresAt'] as const satisfies readonly (keyof PoolEntry)[];

export class DynamoCommitmentPool implements CommitmentPool {
  constructor(private readonly ddb: DynamoDBDocumentClient, private readonly table: string) {}

  async add(items: PooledCommitment[]): Promise<void> {
    for (let i = 0; i < items.length; i += 25) {
      const batch = items.slice(i, i + 25).map((c) => ({ PutRequest: { Item: { ...c, sk: sk(c) } } }));
      try {
        let pending: typeof batch | undefined = batch;
        // Unprocessed items are retried: a lost commitment only wastes a nonce, but keep them.
        for (let round = 0; pending && pending.length && round < 5; round++) {
          const r = await this.ddb.send(new BatchWriteCommand({ RequestItems: { [this.table]: pending } }));
          pending = r.UnprocessedItems?.[this.table] as typeof batch | undefined;
        }
      } catch {
        throw new StorageError('commitment pool unavailable');
      }
    }
  }

  async list(keyId: string): Promise<PoolEntry[]> {
    const now = Math.floor(Date.now() / 1000);
    try {
      const out: PoolEntry[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        // Everything but the descriptor: a pool holds many commitments of one key, and reading
        // the same descriptor with each of them made every one-round signature slower.
        const r = await this.ddb.send(
          new QueryCommand({
            TableName: this.table,
            KeyConditionExpression: 'keyId = :k',
            ExpressionAttributeValues: { ':k': keyId },
            ProjectionExpression: LISTED.map((_, i) => `#a${i}`).join(', '),
            ExpressionAttributeNames: Object.fromEntries(LISTED.map((a, i) => [`#a${i}`, a])),
            ExclusiveStartKey: start,
          }),
        );
        out.push(...((r.Items ?? []) as PoolEntry[]));
        start = r.LastEvaluatedKey;
      } while (start);
      // TTL deletion is lazy: filter expired ones here.
      return out.filter((c) => c.expiresAt > now);
    } catch {
      throw new StorageError('commitment pool unavailable');
    }
  }

  async take(item: PoolEntry): Promise<PooledCommitment | undefined> {
    try {
      const r = await this.ddb.send(
        new DeleteCommand({ TableName: this.table, Key: { keyId: item.keyId, sk: sk(item) }, ConditionExpression: 'attribute_exists(sk)', ReturnValues: 'ALL_OLD' }),
      );
      const { sk: _sk, ...taken } = (r.Attributes ?? {}) as PooledCommitment & { sk?: string };
      return taken;
    } catch (e) {
      if ((e as { name?: string }).name === 'ConditionalCheckFailedException') return undefined;
      throw new StorageError('commitment pool unavailable');
    }
  }

  async clear(keyId: string): Promise<void> {
    const items = await this.list(keyId).catch(() => []);
    await Promise.all(items.map((c) => this.take(c).catch(() => undefined)));
  }
}
