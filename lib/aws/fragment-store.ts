/**
 * FragmentStore on one node's own S3 bucket: keys/<keyId>/v<version>.json.
 *
 * The bucket is versioned in AWS, where DeleteObject only adds a delete marker and keeps every
 * byte as a noncurrent version. So a share (or a session's nonces) is deleted here version by
 * version (ListObjectVersions, then DeleteObject with each VersionId, delete markers included):
 * once `delete` returns, no version of it can be read. The bucket's lifecycle rule (deploy/parts.cjs)
 * also expires noncurrent versions after a day, for anything overwritten rather than deleted.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { StorageError } from '../errors.js';
import type { DocKind, FragmentStore } from '../ports.js';

const objectKey = (keyId: string, version: number) => `keys/${keyId}/v${version}.json`;
const sessionKey = (kind: string, id: string) => `sessions/${kind}/${id}.json`;
const docKey = (kind: string, name: string) => `meta/${kind}/${name}.json`;
const KEY_RE = /^keys\/([a-z0-9][a-z0-9-]{0,62})\/v(\d+)\.json$/;

const isNotFound = (e: unknown) => {
  const name = (e as { name?: string }).name;
  return name === 'NoSuchKey' || name === 'NotFound' || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
};

/** A store with no object versions at all (the local S3 server, s3rver): ListObjectVersions is not served. */
const versionsUnsupported = (e: unknown) => {
  const name = (e as { name?: string }).name;
  const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return name === 'MethodNotAllowed' || name === 'NotImplemented' || status === 405 || status === 501;
};

async function storage<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new StorageError(`fragment storage unavailable (${what})`);
  }
}

export class S3FragmentStore implements FragmentStore {
  constructor(private readonly s3: S3Client, private readonly bucket: string) {}

  get(keyId: string, version: number): Promise<string | null> {
    return this.read(objectKey(keyId, version), 'get');
  }

  /** An object's text, or null when it does not exist. */
  private async read(Key: string, what: string): Promise<string | null> {
    try {
      const r = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return (await r.Body?.transformToString('utf8')) ?? null;
    } catch (e) {
      if (isNotFound(e)) return null;
      throw new StorageError(`fragment storage unavailable (${what})`);
    }
  }

  async create(keyId: string, version: number, body: string): Promise<boolean> {
    const Key = objectKey(keyId, version);
    const exists = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key })).then(
      () => true,
      (e) => {
        if (isNotFound(e)) return false;
        throw new StorageError('fragment storage unavailable (head)');
      },
    );
    if (exists) return false;
    await storage('put', () =>
      this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentType: 'application/json' })),
    );
    return true;
  }

  async delete(keyId: string, version: number): Promise<void> {
    await this.erase(objectKey(keyId, version), 'delete');
  }

  /** Every version of one object, delete markers included, so none can be read afterwards. */
  private async erase(Key: string, what: string): Promise<void> {
    const ids: string[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    try {
      for (;;) {
        const page = await this.s3.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: Key, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
        for (const v of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) if (v.Key === Key && v.VersionId) ids.push(v.VersionId);
        if (!page.IsTruncated) break;
        keyMarker = page.NextKeyMarker;
        versionMarker = page.NextVersionIdMarker;
      }
    } catch (e) {
      // Never in AWS S3 (it always serves ListObjectVersions): a store that keeps no versions,
      // where the plain delete removes the only copy. Any other failure is a storage error.
      if (!versionsUnsupported(e)) throw new StorageError(`fragment storage unavailable (${what})`);
      await storage(what, () => this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })));
      return;
    }
    for (const VersionId of ids) {
      await storage(what, () => this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key, VersionId })));
    }
  }

  async list(): Promise<{ keyId: string; versions: number[] }[]> {
    return this.listPrefix('keys/');
  }

  async versions(keyId: string): Promise<number[]> {
    return (await this.listPrefix(`keys/${keyId}/`)).find((k) => k.keyId === keyId)?.versions ?? [];
  }

  async ping(): Promise<void> {
    await storage('ping', () => this.s3.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  async putSession(kind: string, id: string, body: string): Promise<void> {
    await storage('put session', () =>
      this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: sessionKey(kind, id), Body: body, ContentType: 'application/json' })),
    );
  }

  getSession(kind: string, id: string): Promise<string | null> {
    return this.read(sessionKey(kind, id), 'get session');
  }

  async deleteSession(kind: string, id: string): Promise<void> {
    await this.erase(sessionKey(kind, id), 'delete session');
  }

  getDoc(kind: DocKind, name: string): Promise<string | null> {
    return this.read(docKey(kind, name), 'get doc');
  }

  async putDoc(kind: DocKind, name: string, body: string): Promise<void> {
    await storage('put doc', () =>
      this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: docKey(kind, name), Body: body, ContentType: 'application/json' })),
    );
  }

  async listDocs(kind: DocKind): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    const prefix = `meta/${kind}/`;
    do {
      const page = await storage('list docs', () => this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })));
      for (const o of page.Contents ?? []) if (o.Key?.endsWith('.json')) names.push(o.Key.slice(prefix.length, -5));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return names.sort();
  }

  private async listPrefix(prefix: string): Promise<{ keyId: string; versions: number[] }[]> {
    const keys = new Map<string, number[]>();
    let token: string | undefined;
    do {
      const page = await storage('list', () =>
        this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) {
        const m = KEY_RE.exec(o.Key ?? '');
        if (m) keys.set(m[1]!, [...(keys.get(m[1]!) ?? []), Number(m[2])]);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return [...keys.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([keyId, versions]) => ({ keyId, versions: versions.sort((a, b) => a - b) }));
  }
}
