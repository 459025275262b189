/**
 * The audit attacks of issue #13, on the real local stack: an attacker with write access to a
 * node operator's own DynamoDB table (as a compromised function has in AWS) edits that node's
 * chain directly. Each attack must be found by `GET /audit/verify`, `npx fedkms audit verify`
 * and `npm run audit:verify`, naming the component and the first bad position, and the two
 * commands must exit non-zero:
 *  - the newest records of a node chain deleted, a `fragment.release` among them (truncation);
 *  - a record rewritten with every later hash recomputed (without the node's key, and with it);
 *  - a whole chain deleted;
 *  - a chain planted that no witness ever saw registered.
 * After each attack the table is put back, and the federation verifies again.
 */
import path from 'node:path';
import { DeleteItemCommand, PutItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import type { LocalStack } from '../../tools/local-stack';
import { GENESIS_HASH, recordHash } from '../../lib/audit/chain';
import { signStatement } from '../../lib/crypto/identity';
import { fromB64 } from '../../lib/encoding';
import type { AuditRecord } from '../../lib/ports';
import { call, reconstructEndToEnd, scanAudit, testStack } from '../support/stack';
import { run } from '../support/run';

jest.setTimeout(300_000);

const ROOT = path.resolve(__dirname, '../..');
let stack: LocalStack;

type Raw = Record<string, AttributeValue>;

beforeAll(async () => {
  stack = await testStack();
  expect((await call(stack, 'POST', '/keys', { body: { keyId: 'audited', length: 16 } })).status).toBe(201);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
});

const verify = async () => {
  const r = await call(stack, 'GET', '/audit/verify');
  expect(r.status).toBe(200);
  return r.body;
};

/** One unit's chains as stored: stream → records in order (raw items kept, to put back). */
async function chainsOf(unit: string): Promise<Map<string, { record: AuditRecord; raw: Raw }[]>> {
  const out = new Map<string, { record: AuditRecord; raw: Raw }[]>();
  const table = stack.auditTableOf(unit);
  // scanAudit reads every unit's table; keep this unit's, by its stream names.
  for (const raw of await scanAudit(stack)) {
    const record = unmarshall(raw) as AuditRecord;
    if (!record.stream?.startsWith(`node#${unit}#`)) continue;
    out.set(record.stream, [...(out.get(record.stream) ?? []), { record, raw }]);
  }
  for (const list of out.values()) list.sort((a, b) => a.record.seq - b.record.seq);
  void table;
  return out;
}

const del = (unit: string, rs: AuditRecord[]) =>
  Promise.all(rs.map((r) => stack.dynamo(unit).send(new DeleteItemCommand({ TableName: stack.auditTableOf(unit), Key: { stream: { S: r.stream }, seq: { N: String(r.seq) } } }))));
const put = (unit: string, items: Raw[]) => Promise.all(items.map((Item) => stack.dynamo(unit).send(new PutItemCommand({ TableName: stack.auditTableOf(unit), Item }))));
const putRecords = (unit: string, rs: AuditRecord[]) => put(unit, rs.map((r) => marshall(r, { removeUndefinedValues: true })));

/** The newest witnessed checkpoint of a chain, as verification reports it (length 0 for none). */
const checkpointOf = (v: any, stream: string): number => v.streams?.find((s: any) => s.stream === stream)?.checkpoint?.length ?? 0;

/** What a compromised function holding `unit`'s identity key would write: a record signed with it. */
const signedBy = (unit: string) => (hash: string) => signStatement(fromB64(stack.secrets[unit]!['signingPrivate']!), { purpose: 'fedkms/audit-record/v1', hash });

/** Recompute every hash from index `from` on, as an attacker with the table would (signatures kept, or re-signed). */
function rehash(records: AuditRecord[], from: number, sign?: (hash: string) => string): AuditRecord[] {
  const out = records.map((r) => ({ ...r }));
  for (let i = from; i < out.length; i++) {
    const r = out[i]!;
    r.prevHash = i === 0 ? GENESIS_HASH : out[i - 1]!.hash;
    const { hash: _h, sig, ...body } = r as AuditRecord & { sig?: string };
    r.hash = recordHash(body as Omit<AuditRecord, 'hash'>);
    const resigned = sign ? sign(r.hash) : sig;
    if (resigned !== undefined) (r as AuditRecord & { sig?: string }).sig = resigned;
  }
  return out;
}

const cliEnv = () => ({
  ...process.env,
  FEDKMS_URL: stack.url,
  FEDKMS_CLIENT: 'admin',
  FEDKMS_CLIENT_KEY: stack.secrets['admin']!['privateKey'],
});
const cli = () => run(process.execPath, [path.join(ROOT, 'bin/fedkms'), 'audit', 'verify'], { cwd: ROOT, env: cliEnv() });
const script = () => run(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'scripts/audit-verify.ts')], { cwd: ROOT, env: cliEnv() });

/** Verification, the CLI and the script all find it: non-zero exits, and the finding named. */
async function expectFound(finding: { kind: string; component: string; stream: string; seq: number }) {
  const v = await verify();
  expect(v.ok).toBe(false);
  expect(v.problems).toContainEqual(expect.objectContaining(finding));
  const line = new RegExp(`${finding.component}: ${finding.kind.toUpperCase()} in ${finding.stream} at seq ${finding.seq}\\b`);
  const c = await cli();
  expect(c.code).not.toBe(0);
  expect(c.stdout).toMatch(line);
  const s = await script();
  expect(s.code).toBe(1);
  expect(s.stdout).toMatch(line);
}

it('a clean federation verifies: every chain signed and registered with witnesses', async () => {
  for (let i = 0; i < 2; i++) expect((await reconstructEndToEnd(stack, 'audited')).status).toBe(200);
  const v = await verify();
  expect(v).toMatchObject({ ok: true, complete: true, problems: [] });
  expect((await cli()).code).toBe(0);
  // Every chain has a witnessed checkpoint, by witnesses other than its writer.
  for (const s of v.streams) expect(s.checkpoint?.witnesses?.length ?? 0).toBeGreaterThan(0);
  for (const s of v.streams.filter((x: any) => x.stream.startsWith('node#'))) expect(s.checkpoint.witnesses).not.toContain(s.stream.split('#')[1]);
});

it('truncation: the newest records of node1\'s chain deleted, a fragment.release among them', async () => {
  // Releases until a witnessed checkpoint covers one of node1's fragment.release records.
  let target: { stream: string; seq: number } | undefined;
  for (let i = 0; i < 16 && !target; i++) {
    expect((await reconstructEndToEnd(stack, 'audited')).status).toBe(200);
    const v = await verify();
    for (const [stream, list] of await chainsOf('node1')) {
      const covered = checkpointOf(v, stream);
      const release = list.filter((x) => x.record.action === 'fragment.release' && x.record.outcome === 'success' && x.record.seq <= covered).at(-1);
      if (release) target = { stream, seq: release.record.seq };
    }
  }
  // (Without checkpoints, today's main: the newest release.)
  if (!target) {
    const all = [...(await chainsOf('node1')).values()].flat().filter((x) => x.record.action === 'fragment.release');
    target = { stream: all.at(-1)!.record.stream, seq: all.at(-1)!.record.seq };
  }
  const chain = (await chainsOf('node1')).get(target.stream)!;
  const gone = chain.filter((x) => x.record.seq >= target!.seq);
  expect(gone.some((x) => x.record.action === 'fragment.release')).toBe(true);
  await del('node1', gone.map((x) => x.record));
  try {
    await expectFound({ kind: 'truncated', component: 'node1', stream: target.stream, seq: target.seq });
  } finally {
    await put('node1', gone.map((x) => x.raw));
  }
  expect((await verify()).ok).toBe(true);
});

it('rewrite: a record of node2 changed and every later hash recomputed, without and with node2\'s key', async () => {
  const v0 = await verify();
  const [stream, list] = [...(await chainsOf('node2'))].find(([s]) => checkpointOf(v0, s) >= 1)!;
  const records = list.map((x) => x.record);
  // The first record (covered by the chain's registration) now says someone else did it.
  const edited = records.map((r, i) => (i === 0 ? { ...r, actor: 'client:nobody' } : r));
  try {
    // Without the key: every recomputed record keeps a signature that no longer verifies.
    await putRecords('node2', rehash(edited, 0));
    await expectFound({ kind: 'bad_signature', component: 'node2', stream, seq: 1 });
    // With the key (a compromised function): signatures verify; the witnessed head does not.
    await putRecords('node2', rehash(edited, 0, signedBy('node2')));
    await expectFound({ kind: 'rewritten', component: 'node2', stream, seq: 1 });
  } finally {
    await put('node2', list.map((x) => x.raw));
  }
  expect((await verify()).ok).toBe(true);
});

it('a whole chain of node3 deleted', async () => {
  const v0 = await verify();
  const [stream, list] = [...(await chainsOf('node3'))].find(([s]) => checkpointOf(v0, s) >= 1)!;
  await del('node3', list.map((x) => x.record));
  try {
    await expectFound({ kind: 'deleted', component: 'node3', stream, seq: 1 });
  } finally {
    await put('node3', list.map((x) => x.raw));
  }
  expect((await verify()).ok).toBe(true);
});

it('a planted chain in node1\'s table, signed with node1\'s own key, that no witness saw registered', async () => {
  const stream = 'node#node1#planted';
  const sign = signedBy('node1');
  const planted: AuditRecord[] = [];
  for (let seq = 1; seq <= 3; seq++) {
    const body = { stream, seq, time: new Date().toISOString(), prevHash: planted.at(-1)?.hash ?? GENESIS_HASH, actor: 'client:bob', action: 'fragment.release', outcome: 'success' as const, keyId: 'audited', details: {} };
    const hash = recordHash(body);
    planted.push({ ...body, hash, sig: sign(hash) } as AuditRecord);
  }
  await putRecords('node1', planted);
  try {
    await expectFound({ kind: 'unregistered', component: 'node1', stream, seq: 1 });
  } finally {
    await del('node1', planted);
  }
  expect((await verify()).ok).toBe(true);
});
