/**
 * Scans a stack's sls offline log (every function's log lines and EMF metrics) for
 * key and share material: known secrets (hex in any case, and base64), the stack's
 * private secrets, and every node's plaintext share, recovered here from the buckets
 * with the node's wrapping key. Sealed or encrypted forms are fine; plaintext is not.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ListTablesCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import type { LocalStack } from '../../tools/local-stack';
import { aesGcmOpen } from '../../lib/crypto/aead';
import { fromB64 } from '../../lib/encoding';
import { atRestAad } from '../../lib/node/service';
import { readObject } from './stack';

const PUBLIC_FIELDS = new Set(['x25519Public', 'publicKey', 'signingPublic']);

async function plaintextShares(stack: LocalStack): Promise<Uint8Array[]> {
  const shares: Uint8Array[] = [];
  for (const nodeId of stack.proxies.keys()) {
    const list = await stack.s3(nodeId).send(new ListObjectsV2Command({ Bucket: stack.bucketOf(nodeId), Prefix: 'keys/' }));
    for (const o of list.Contents ?? []) {
      try {
        const obj = JSON.parse(await readObject(stack, nodeId, o.Key!));
        const wrapKey = fromB64(stack.secrets[nodeId]!['wrapKey']!);
        shares.push(aesGcmOpen(wrapKey, obj.share, atRestAad(nodeId, obj.identifier, obj.descriptor)));
      } catch {
        // A fragment the test tampered with no longer opens; it has nothing to leak.
      }
    }
  }
  return shares;
}

export interface Leak {
  what: string;
  line: number;
}

/** Every place the log holds one of `secrets` (bytes), a private stack secret, or a plaintext share. */
export async function scanLogForSecrets(stack: LocalStack, secrets: { name: string; bytes: Uint8Array }[]): Promise<{ leaks: Leak[]; needles: number; lines: number; shares: number }> {
  // Every operator's log: each node and the coordinator run in their own sls offline.
  const lines = [...stack.units.values()].flatMap((u) => (existsSync(u.logFile) ? readFileSync(u.logFile, 'utf8').split('\n') : []));
  return scanLinesForSecrets(stack, secrets, lines);
}

/** Every item of every DynamoDB table (audit, replay, commitments, approvals), one line each, scanned the same way. */
export async function scanTablesForSecrets(stack: LocalStack, secrets: { name: string; bytes: Uint8Array }[]) {
  const lines: string[] = [];
  const tables: string[] = [];
  // Every operator's own DynamoDB server.
  for (const unit of stack.units.keys()) {
  const ddb = stack.dynamo(unit);
  const own = (await ddb.send(new ListTablesCommand({}))).TableNames ?? [];
  tables.push(...own);
  for (const TableName of own) {
    let start: Record<string, any> | undefined;
    do {
      const page = await ddb.send(new ScanCommand({ TableName, ExclusiveStartKey: start }));
      for (const item of page.Items ?? []) lines.push(`${TableName} ${JSON.stringify(item)}`);
      start = page.LastEvaluatedKey;
    } while (start);
  }
  }
  return { tables, ...(await scanLinesForSecrets(stack, secrets, lines)) };
}

async function scanLinesForSecrets(stack: LocalStack, secrets: { name: string; bytes: Uint8Array }[], lines: string[]): Promise<{ leaks: Leak[]; needles: number; lines: number; shares: number }> {
  const needles: { what: string; re: RegExp }[] = [];
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const addBytes = (what: string, b: Uint8Array) => {
    const hex = Buffer.from(b).toString('hex');
    needles.push({ what: `${what} (hex)`, re: new RegExp(escape(hex), 'i') });
    // Base64 without padding, so it also matches inside longer encodings of the same bytes.
    const b64 = Buffer.from(b).toString('base64').replace(/=+$/, '');
    if (b64.length >= 8) needles.push({ what: `${what} (base64)`, re: new RegExp(escape(b64)) });
  };
  for (const s of secrets) addBytes(s.name, s.bytes);
  for (const [owner, fields] of Object.entries(stack.secrets)) {
    for (const [field, value] of Object.entries(fields)) {
      if (!PUBLIC_FIELDS.has(field)) needles.push({ what: `${owner}.${field}`, re: new RegExp(escape(value)) });
    }
  }
  const shares = await plaintextShares(stack);
  shares.forEach((share, i) => addBytes(`plaintext share #${i + 1}`, share));
  const leaks: Leak[] = [];
  lines.forEach((l, i) => {
    for (const n of needles) if (n.re.test(l)) leaks.push({ what: n.what, line: i + 1 });
  });
  return { leaks, needles: needles.length, lines: lines.length, shares: shares.length };
}
