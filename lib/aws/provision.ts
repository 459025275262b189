/** Creates the buckets and tables a local federation needs (in AWS, CloudFormation does this). */
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';

export async function createBuckets(s3: S3Client, names: string[]): Promise<void> {
  for (const Bucket of names) {
    await s3.send(new CreateBucketCommand({ Bucket })).catch((e: { name?: string }) => {
      if (e.name !== 'BucketAlreadyOwnedByYou' && e.name !== 'BucketAlreadyExists') throw e;
    });
  }
}

export async function createTables(ddb: DynamoDBClient, tables: { audit: string; replay: string }): Promise<void> {
  const ignoreExists = (e: { name?: string }) => {
    if (e.name !== 'ResourceInUseException') throw e;
  };
  await ddb
    .send(
      new CreateTableCommand({
        TableName: tables.audit,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'stream', AttributeType: 'S' },
          { AttributeName: 'seq', AttributeType: 'N' },
        ],
        KeySchema: [
          { AttributeName: 'stream', KeyType: 'HASH' },
          { AttributeName: 'seq', KeyType: 'RANGE' },
        ],
      }),
    )
    .catch(ignoreExists);
  await ddb
    .send(
      new CreateTableCommand({
        TableName: tables.replay,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    )
    .catch(ignoreExists);
}
