/** Single-use request ids: one conditional put per id, with a TTL so the table stays small. */
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { StorageError } from '../errors.js';
import type { ReplayGuard } from '../ports.js';

export class DynamoReplayGuard implements ReplayGuard {
  constructor(private readonly ddb: DynamoDBDocumentClient, private readonly table: string) {}

  async claim(scope: string, id: string, expiresAtEpochS: number): Promise<boolean> {
    try {
      await this.ddb.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: `${scope}#${id}`, expiresAt: expiresAtEpochS },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (e) {
      if ((e as { name?: string }).name === 'ConditionalCheckFailedException') return false;
      throw new StorageError('replay guard unavailable');
    }
  }
}
