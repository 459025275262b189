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

/** A DynamoDB table as declared in the CloudFormation template (`AWS::DynamoDB::Table` properties). */
export interface TableDeclaration {
  TableName: string;
  AttributeDefinitions: { AttributeName: string; AttributeType: 'S' | 'N' | 'B' }[];
  KeySchema: { AttributeName: string; KeyType: 'HASH' | 'RANGE' }[];
}

/** Create the tables the deployment template declares, so local and cloud schemas cannot drift. */
export async function createTables(ddb: DynamoDBClient, tables: TableDeclaration[]): Promise<void> {
  for (const t of tables) {
    await ddb
      .send(new CreateTableCommand({ TableName: t.TableName, BillingMode: 'PAY_PER_REQUEST', AttributeDefinitions: t.AttributeDefinitions, KeySchema: t.KeySchema }))
      .catch((e: { name?: string }) => {
        if (e.name !== 'ResourceInUseException') throw e;
      });
  }
}
