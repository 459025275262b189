/**
 * Destroy is destruction in a versioned bucket (issue #13): the node's S3 store deletes every
 * version of a share, delete markers included, so no version of a destroyed key can be read
 * afterwards. The local S3 server (s3rver) keeps no versions (ListObjectVersions answers 405),
 * so the versioned path is tested here against an in-memory versioned bucket behind
 * aws-sdk-client-mock; test/integration/attack-reads.test.ts covers the local stack.
 */
import { mockClient } from 'aws-sdk-client-mock';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, ListObjectVersionsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { sdkStreamMixin } from '@smithy/util-stream';
import { Readable } from 'node:stream';
import { S3FragmentStore } from '../../lib/aws/fragment-store';
import { StorageError } from '../../lib/errors';

const s3 = mockClient(S3Client);

interface Version {
  id: string;
  body: string | null; // null: a delete marker
}

/** A versioned bucket as S3 keeps one: every put a new version, a plain delete a marker, a versioned delete removes that version. */
function versionedBucket(pageSize = 1000) {
  const objects = new Map<string, Version[]>();
  let n = 0;
  const notFound = () => Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
  const latest = (key: string) => objects.get(key)?.at(-1);
  s3.on(PutObjectCommand).callsFake((i) => {
    objects.set(i.Key, [...(objects.get(i.Key) ?? []), { id: `v${++n}`, body: String(i.Body) }]);
    return {};
  });
  s3.on(HeadObjectCommand).callsFake((i) => {
    const v = latest(i.Key);
    if (!v || v.body === null) throw Object.assign(new Error('NotFound'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
    return {};
  });
  s3.on(GetObjectCommand).callsFake((i) => {
    const v = i.VersionId ? objects.get(i.Key)?.find((x) => x.id === i.VersionId) : latest(i.Key);
    if (!v || v.body === null) throw notFound();
    return { Body: sdkStreamMixin(Readable.from([Buffer.from(v.body)])) };
  });
  s3.on(DeleteObjectCommand).callsFake((i) => {
    if (i.VersionId) objects.set(i.Key, (objects.get(i.Key) ?? []).filter((x) => x.id !== i.VersionId));
    else objects.set(i.Key, [...(objects.get(i.Key) ?? []), { id: `v${++n}`, body: null }]);
    return {};
  });
  s3.on(ListObjectsV2Command).callsFake((i) => ({
    Contents: [...objects.entries()].filter(([k, vs]) => k.startsWith(i.Prefix ?? '') && vs.length && vs.at(-1)!.body !== null).map(([Key]) => ({ Key })),
    IsTruncated: false,
  }));
  s3.on(ListObjectVersionsCommand).callsFake((i) => {
    const all = [...objects.entries()]
      .filter(([k]) => k.startsWith(i.Prefix ?? ''))
      .flatMap(([Key, vs]) => vs.map((v) => ({ Key, VersionId: v.id, marker: v.body === null })));
    const start = i.KeyMarker ? all.findIndex((x) => x.Key === i.KeyMarker && x.VersionId === i.VersionIdMarker) + 1 : 0;
    const page = all.slice(start, start + pageSize);
    const last = page.at(-1);
    const truncated = start + pageSize < all.length;
    return {
      Versions: page.filter((x) => !x.marker).map(({ Key, VersionId }) => ({ Key, VersionId })),
      DeleteMarkers: page.filter((x) => x.marker).map(({ Key, VersionId }) => ({ Key, VersionId })),
      IsTruncated: truncated,
      ...(truncated ? { NextKeyMarker: last!.Key, NextVersionIdMarker: last!.VersionId } : {}),
    };
  });
  return objects;
}

const client = new S3Client({ region: 'us-east-1' });
const store = () => new S3FragmentStore(client, 'b');

beforeEach(() => s3.reset());

describe('a deleted share leaves no readable version behind', () => {
  it('destroying a key (every stored version deleted) erases every object version, delete markers included', async () => {
    const objects = versionedBucket();
    const st = store();
    expect(await st.create('k', 1, 'share-v1')).toBe(true);
    expect(await st.create('k', 2, 'share-v2')).toBe(true);
    // An old share rewritten in place (as a restore would) and an earlier plain delete leave more versions.
    await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'keys/k/v1.json', Body: 'share-v1-again' }));
    await client.send(new DeleteObjectCommand({ Bucket: 'b', Key: 'keys/k/v2.json' }));
    await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'keys/k/v2.json', Body: 'share-v2-again' }));
    await st.create('other', 1, 'other-share');
    const before = [...objects.entries()].filter(([k]) => k.startsWith('keys/k/')).flatMap(([Key, vs]) => vs.map((v) => ({ Key, VersionId: v.id })));
    expect(before.length).toBe(5);

    // What NodeLifecycle.transition(…, 'destroyed') does: delete each stored version.
    for (const v of await st.versions('k')) await st.delete('k', v);

    for (const { Key, VersionId } of before) {
      await expect(client.send(new GetObjectCommand({ Bucket: 'b', Key, VersionId }))).rejects.toMatchObject({ name: 'NoSuchKey' });
    }
    const left = await client.send(new ListObjectVersionsCommand({ Bucket: 'b', Prefix: 'keys/k/' }));
    expect([...(left.Versions ?? []), ...(left.DeleteMarkers ?? [])]).toEqual([]);
    // Another key, and a key whose id merely starts the same way, are untouched.
    expect(await st.get('other', 1)).toBe('other-share');
  });

  it('follows ListObjectVersions pages, and spares keys that share the prefix', async () => {
    const objects = versionedBucket(2);
    const st = store();
    for (let i = 0; i < 5; i++) await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'keys/k/v1.json', Body: `s${i}` }));
    await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'keys/k/v1.json.bak', Body: 'not ours' }));
    await st.delete('k', 1);
    expect(objects.get('keys/k/v1.json')).toEqual([]);
    expect(objects.get('keys/k/v1.json.bak')).toHaveLength(1);
  });

  it('erases a used signing session (its nonces) version by version too', async () => {
    const objects = versionedBucket();
    const st = store();
    await st.putSession('sign', 'session-0123456789abcdef', 'sealed nonces');
    await st.deleteSession('sign', 'session-0123456789abcdef');
    expect(objects.get('sessions/sign/session-0123456789abcdef.json')).toEqual([]);
  });

  it('a store with no versions (s3rver answers 405) gets the plain delete; any other listing failure is a storage error, never a silent fallback', async () => {
    s3.on(ListObjectVersionsCommand).rejects(Object.assign(new Error('not allowed'), { name: 'MethodNotAllowed', $metadata: { httpStatusCode: 405 } }));
    s3.on(DeleteObjectCommand).resolves({});
    await store().delete('k', 1);
    expect(s3.commandCalls(DeleteObjectCommand).map((c) => c.args[0].input)).toEqual([{ Bucket: 'b', Key: 'keys/k/v1.json' }]);

    s3.reset();
    s3.on(ListObjectVersionsCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }));
    s3.on(DeleteObjectCommand).resolves({});
    await expect(store().delete('k', 1)).rejects.toBeInstanceOf(StorageError);
    expect(s3.commandCalls(DeleteObjectCommand)).toHaveLength(0);
  });
});
