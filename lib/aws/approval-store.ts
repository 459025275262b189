/** Approvals of reconstruction requests in DynamoDB: one item per request, keyed by key id and request digest. */
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { StorageError } from '../errors.js';
import type { ApprovalRecord, ApprovalStore } from '../ports.js';

const conditionFailed = (e: unknown) => (e as { name?: string }).name === 'ConditionalCheckFailedException';

export class DynamoApprovalStore implements ApprovalStore {
  constructor(private readonly ddb: DynamoDBDocumentClient, private readonly table: string) {}

  async open(record: ApprovalRecord): Promise<boolean> {
    try {
      await this.ddb.send(
        new PutCommand({
          TableName: this.table,
          // The TTL removes expired requests; readers also ignore them.
          Item: { ...record, expiresAt: Math.ceil(record.request.expiresAt / 1000) },
          ConditionExpression: 'attribute_not_exists(digest)',
        }),
      );
      return true;
    } catch (e) {
      if (conditionFailed(e)) return false;
      throw new StorageError('approval store unavailable');
    }
  }

  async get(keyId: string, digest: string): Promise<ApprovalRecord | null> {
    try {
      const r = await this.ddb.send(new GetCommand({ TableName: this.table, Key: { keyId, digest } }));
      return r.Item ? toRecord(r.Item) : null;
    } catch {
      throw new StorageError('approval store unavailable');
    }
  }

  async approve(keyId: string, digest: string, approver: string, signature: string): Promise<boolean> {
    try {
      await this.ddb.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { keyId, digest },
          UpdateExpression: 'SET approvals.#a = :s',
          ConditionExpression: 'attribute_exists(digest)',
          ExpressionAttributeNames: { '#a': approver },
          ExpressionAttributeValues: { ':s': signature },
        }),
      );
      return true;
    } catch (e) {
      if (conditionFailed(e)) return false;
      throw new StorageError('approval store unavailable');
    }
  }

  async list(keyId: string): Promise<ApprovalRecord[]> {
    const out: ApprovalRecord[] = [];
    let start: Record<string, unknown> | undefined;
    try {
      do {
        const r = await this.ddb.send(new QueryCommand({ TableName: this.table, KeyConditionExpression: 'keyId = :k', ExpressionAttributeValues: { ':k': keyId }, ExclusiveStartKey: start }));
        out.push(...(r.Items ?? []).map(toRecord));
        start = r.LastEvaluatedKey;
      } while (start && out.length < 1000);
    } catch {
      throw new StorageError('approval store unavailable');
    }
    return out;
  }
}

function toRecord(item: Record<string, unknown>): ApprovalRecord {
  return {
    keyId: item['keyId'] as string,
    digest: item['digest'] as string,
    request: item['request'] as ApprovalRecord['request'],
    approvals: (item['approvals'] as Record<string, string> | undefined) ?? {},
    createdAt: item['createdAt'] as string,
  };
}
