import { mockClient } from 'aws-sdk-client-mock';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DeleteCommand, DynamoDBDocumentClient, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoDBClient, ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { sdkStreamMixin } from '@smithy/util-stream';
import { Readable } from 'node:stream';
import { S3FragmentStore } from '../../lib/aws/fragment-store';
import { DynamoAuditLog } from '../../lib/aws/audit-log';
import { DynamoReplayGuard } from '../../lib/aws/replay-guard';
import { DynamoCommitmentPool } from '../../lib/aws/commitment-pool';
import { AuditUnavailableError, StorageError } from '../../lib/errors';

const s3 = mockClient(S3Client);
const ddb = mockClient(DynamoDBDocumentClient);
const notFound = () => Object.assign(new Error('nf'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
const conflict = () => new ConditionalCheckFailedException({ message: 'exists', $metadata: {} });

beforeEach(() => {
  s3.reset();
  ddb.reset();
});

describe('S3FragmentStore', () => {
  const store = () => new S3FragmentStore(new S3Client({ region: 'us-east-1' }), 'b');

  it('reads an object and maps a missing one to null', async () => {
    s3.on(GetObjectCommand, { Key: 'keys/k/v1.json' }).resolves({ Body: sdkStreamMixin(Readable.from([Buffer.from('{"a":1}')])) });
    s3.on(GetObjectCommand, { Key: 'keys/k/v2.json' }).rejects(Object.assign(new Error('x'), { name: 'NoSuchKey' }));
    expect(await store().get('k', 1)).toBe('{"a":1}');
    expect(await store().get('k', 2)).toBeNull();
  });

  it('never overwrites an existing version', async () => {
    s3.on(HeadObjectCommand).resolves({});
    expect(await store().create('k', 1, '{}')).toBe(false);
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(0);
    s3.on(HeadObjectCommand).rejects(notFound());
    s3.on(PutObjectCommand).resolves({});
    expect(await store().create('k', 1, '{}')).toBe(true);
    expect(s3.commandCalls(PutObjectCommand)[0]!.args[0].input).toMatchObject({ Bucket: 'b', Key: 'keys/k/v1.json' });
  });

  it('lists keys and versions, ignoring foreign objects', async () => {
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'keys/a/v2.json' }, { Key: 'keys/a/v10.json' }, { Key: 'keys/b/v1.json' }, { Key: 'junk' }] });
    expect(await store().list()).toEqual([{ keyId: 'a', versions: [2, 10] }, { keyId: 'b', versions: [1] }]);
  });

  it('reports storage failures as StorageError', async () => {
    s3.on(ListObjectsV2Command).rejects(new Error('boom'));
    await expect(store().list()).rejects.toBeInstanceOf(StorageError);
  });
});

describe('DynamoAuditLog', () => {
  const log = () => new DynamoAuditLog(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })), 't');

  it('appends to its own instance chain with one conditional put and no read', async () => {
    ddb.on(PutCommand).resolves({});
    const l = new DynamoAuditLog(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })), 't', 'inst1');
    const a = await l.append('s', { actor: 'x', action: 'y', outcome: 'success' });
    const b = await l.append('s', { actor: 'x', action: 'z', outcome: 'success' });
    expect(a).toMatchObject({ stream: 's#inst1', seq: 1 });
    expect(b).toMatchObject({ stream: 's#inst1', seq: 2, prevHash: a.hash });
    expect(ddb.commandCalls(QueryCommand)).toHaveLength(0);
    expect(ddb.commandCalls(PutCommand)[0]!.args[0].input.ConditionExpression).toBe('attribute_not_exists(seq)');
  });

  it('on a conflicting write, re-reads the head and appends after it (never forks)', async () => {
    const head = { stream: 's#inst2', seq: 7, hash: 'b'.repeat(64) };
    ddb.on(QueryCommand).resolves({ Items: [head] });
    ddb.on(PutCommand).rejectsOnce(conflict()).resolves({});
    const l = new DynamoAuditLog(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })), 't', 'inst2');
    const r = await l.append('s', { actor: 'x', action: 'y', outcome: 'success' });
    expect(r).toMatchObject({ seq: 8, prevHash: 'b'.repeat(64) });
    expect(ddb.commandCalls(PutCommand)).toHaveLength(2);
  });

  it('fails closed with AuditUnavailableError when DynamoDB errors', async () => {
    ddb.on(PutCommand).rejects(new Error('down'));
    await expect(log().append('s', { actor: 'x', action: 'y', outcome: 'success' })).rejects.toBeInstanceOf(AuditUnavailableError);
  });
});

describe('DynamoReplayGuard', () => {
  it('claims an id once', async () => {
    ddb.on(PutCommand).resolvesOnce({}).rejects(conflict());
    const g = new DynamoReplayGuard(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })), 'r');
    expect(await g.claim('node1', 'id', 1)).toBe(true);
    expect(await g.claim('node1', 'id', 1)).toBe(false);
  });
});

describe('DynamoCommitmentPool', () => {
  const pool = () => new DynamoCommitmentPool(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'us-east-1' })), 'pool');
  const entry = { keyId: 'k', nodeId: 'node1', sessionId: 's1', version: 1, digest: 'd'.repeat(64), threshold: 2, commitment: { identifier: 'i', hiding: 'h', binding: 'b' }, expiresAt: 4_000_000_000 };

  it('lists without the descriptor, and drops expired entries', async () => {
    ddb.on(QueryCommand).resolves({ Items: [entry, { ...entry, sessionId: 's2', expiresAt: 1 }] });
    expect(await pool().list('k')).toEqual([entry]);
    const input = ddb.commandCalls(QueryCommand)[0]!.args[0].input;
    expect(Object.values(input.ExpressionAttributeNames ?? {})).not.toContain('descriptor');
    expect(Object.values(input.ExpressionAttributeNames ?? {})).toEqual(expect.arrayContaining(['nodeId', 'sessionId', 'threshold', 'commitment']));
  });

  it('takes a commitment once, atomically, and hands back the whole item', async () => {
    ddb.on(DeleteCommand).resolvesOnce({ Attributes: { ...entry, descriptor: '{}', sk: 'node1#s1' } }).rejects(conflict());
    expect(await pool().take(entry)).toEqual({ ...entry, descriptor: '{}' });
    expect(await pool().take(entry)).toBeUndefined();
    const input = ddb.commandCalls(DeleteCommand)[0]!.args[0].input;
    expect(input).toMatchObject({ Key: { keyId: 'k', sk: 'node1#s1' }, ConditionExpression: 'attribute_exists(sk)', ReturnValues: 'ALL_OLD' });
  });

  it('reports a storage failure as StorageError, not as a commitment already taken', async () => {
    ddb.on(DeleteCommand).rejects(new Error('down'));
    await expect(pool().take(entry)).rejects.toBeInstanceOf(StorageError);
  });
});
