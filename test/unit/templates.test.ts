/**
 * Template tests for each stack, rendered in-process from the same renderers `serverless` runs
 * (deploy/node.cjs, deploy/coordinator.cjs, deploy/federation.cjs), with real generated secrets:
 * (a) a node stack's role reaches only that stack's resources;
 * (b) the coordinator stack reaches no node resource;
 * (c) no two stacks name the same resource (all deployed into one account and region, the worst case);
 * (d) a KMS key policy grants the account root no cryptographic use beyond what AWS requires;
 * (e) no secret value appears anywhere in any template, AWS or local.
 * test/integration/template.test.ts checks the same properties on `serverless package` output.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { generateSecrets, type Secrets } from '../../tools/local-stack';

const ROOT = path.resolve(__dirname, '../..');
const STAGE = 'ci';
const NODE_IDS = ['node1', 'node2', 'node3'];

type Statement = { Effect: string; Action: string[]; Resource: unknown; Principal?: unknown; Condition?: Record<string, Record<string, unknown>>; Sid?: string };
type Fn = { handler: string; reservedConcurrency?: number; environment: Record<string, unknown>; iamRoleStatements: Statement[]; events: { httpApi: { method: string; path: string; authorizer?: { type: string } } }[] };
type Res = { Type: string; DeletionPolicy?: string; Properties: Record<string, any> };
type Unit = { functions: Record<string, Fn>; resources: Record<string, Res>; names: Record<string, unknown> };
type AllInOne = { functions: Record<string, Fn>; resources: { Resources: Record<string, Res> } };

/* eslint-disable @typescript-eslint/no-require-imports */
const nodeStack = require('../../deploy/node.cjs') as { render: (stage: string, file: string, localFile?: string) => Unit; service: () => string };
const coordinatorStack = require('../../deploy/coordinator.cjs') as { render: (stage: string, file: string, localFile?: string) => Unit };
const federation = require('../../deploy/federation.cjs') as { render: (stage: string, configFile: string) => AllInOne };
const parts = require('../../deploy/parts.cjs') as { nodeUnit: (s: Record<string, unknown>) => Unit; KMS_ADMIN_ACTIONS: string[] };
/* eslint-enable @typescript-eslint/no-require-imports */

const asArray = <T>(x: T | T[]): T[] => (Array.isArray(x) ? x : [x]);
const writeJson = (file: string, v: unknown) => {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(v, null, 2));
  return file;
};

/**
 * What one IAM Resource entry points at, as `id:<logical id>`, `table:<name>`, `bucket:<name>`
 * or `secret:<name>`; anything else is returned as `?:<text>` so a test sees it.
 */
function targetsOf(r: unknown): string[] {
  if (typeof r === 'string') {
    const t = r.match(/:table\/([A-Za-z0-9_.-]+)$/);
    if (t) return [`table:${t[1]}`];
    const b = r.match(/^arn:aws:s3:::([a-z0-9.-]+)(\/\*)?$/);
    if (b) return [`bucket:${b[1]}`];
    const s = r.match(/:secret:(.+)-\*$/);
    if (s) return [`secret:${s[1]}`];
    return [`?:${r}`];
  }
  if (r && typeof r === 'object') {
    const o = r as Record<string, unknown>;
    if (typeof o['Ref'] === 'string') return o['Ref'].startsWith('AWS::') ? [] : [`id:${o['Ref']}`];
    const att = o['Fn::GetAtt'];
    if (Array.isArray(att)) return [`id:${String(att[0])}`];
    const sub = o['Fn::Sub'];
    if (typeof sub === 'string') {
      const ids = [...sub.matchAll(/\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}/g)].map((m) => `id:${m[1]}`);
      const rest = sub.replace(/\$\{[^}]+\}/g, '');
      if (ids.length && /^\/\*$/.test(rest)) return ids; // the objects of a bucket named by intrinsic
      if (ids.length) return [...ids, `?:${rest}`];
      return targetsOf(rest); // an ARN built from a name: arn:${AWS::Partition}:dynamodb:...:table/<name>
    }
  }
  return [`?:${JSON.stringify(r)}`];
}

const statementTargets = (s: Statement) => asArray(s.Resource).flatMap(targetsOf);

/** Everything a unit owns, in the same notation: its resources' logical ids, table names, bucket and secret names. */
function ownTargets(u: Unit): Set<string> {
  const own = new Set(Object.keys(u.resources).map((k) => `id:${k}`));
  for (const r of Object.values(u.resources)) if (r.Type === 'AWS::DynamoDB::Table') own.add(`table:${r.Properties['TableName'] as string}`);
  if (typeof u.names['bucket'] === 'string') own.add(`bucket:${u.names['bucket']}`);
  for (const k of ['secret', 'dashboardSecret']) if (typeof u.names[k] === 'string') own.add(`secret:${u.names[k] as string}`);
  return own;
}

const ACCOUNT = '111122223333';
const REGION = 'us-east-1';
/** A name as CloudFormation would resolve it in one account and region. */
const resolved = (v: unknown): string =>
  typeof v === 'string' ? v : String((v as { 'Fn::Sub': string })['Fn::Sub']).replace(/\$\{AWS::AccountId\}/g, ACCOUNT).replace(/\$\{AWS::Region\}/g, REGION).replace(/\$\{AWS::Partition\}/g, 'aws');

let dir: string;
let secrets: Secrets;
const nodeFile: Record<string, string> = {};
const nodeLocalFile: Record<string, string> = {};
let coordinatorFile: string;
let coordinatorLocalFile: string;
let configFile: string;
let publicKeysFile: string;
const savedEnv: Record<string, string | undefined> = {};

/** The exact private values: none of them may appear in a template, in any encoding. */
function secretValues(): string[] {
  const out: string[] = [];
  for (const id of NODE_IDS) out.push(secrets[id]!['wrapKey']!, secrets[id]!['x25519Private']!, secrets[id]!['signingPrivate']!);
  out.push(secrets['coordinator']!['privateKey']!, secrets['dashboard']!['privateKey']!, secrets['dashboard']!['viewerToken']!, secrets['admin']!['privateKey']!);
  return out.flatMap((v) => {
    const raw = Buffer.from(v, v === secrets['dashboard']!['viewerToken'] ? 'base64url' : 'base64');
    return [v, raw.toString('hex'), raw.toString('base64url'), raw.toString('base64')];
  });
}

beforeAll(() => {
  for (const k of ['FEDKMS_LOCAL_STACK', 'FEDKMS_OPERATOR_CONFIG', 'FEDKMS_PUBLIC_KEYS', 'FEDKMS_CONFIG']) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-templates-'));
  secrets = generateSecrets(NODE_IDS);
  const example = JSON.parse(readFileSync(path.join(ROOT, 'deploy/examples/node.json'), 'utf8')) as Record<string, unknown>;
  for (const [i, id] of NODE_IDS.entries()) {
    const unitDir = path.join(dir, 'nodes', id);
    nodeFile[id] = writeJson(path.join(unitDir, 'operator.json'), { ...example, id, coordinatorPublicKey: secrets['coordinator']!['publicKey'], adminPublicKey: secrets['admin']!['publicKey'] });
    // Where a local stack keeps this operator's secret: its own data directory.
    const secretsFile = writeJson(path.join(unitDir, 'secrets.json'), secrets[id]);
    nodeLocalFile[id] = writeJson(path.join(unitDir, 'local.json'), { endpoint: `http://127.0.0.1:${4100 + i}`, secretsFile, s3Endpoint: `http://127.0.0.1:${5100 + i}`, dynamoEndpoint: `http://127.0.0.1:${6100 + i}` });
  }
  const coordExample = JSON.parse(readFileSync(path.join(ROOT, 'deploy/examples/coordinator.json'), 'utf8')) as Record<string, unknown>;
  const coordDir = path.join(dir, 'coordinator');
  coordinatorFile = writeJson(path.join(coordDir, 'operator.json'), {
    ...coordExample,
    seeds: NODE_IDS.map((id, i) => ({ id, url: `https://api${i}.execute-api.eu-west-1.amazonaws.com/nodes/${id}` })),
    dashboardPublicKey: secrets['dashboard']!['publicKey'],
  });
  const cs = writeJson(path.join(coordDir, 'secrets.json'), { signingPrivate: secrets['coordinator']!['privateKey'], publicKey: secrets['coordinator']!['publicKey'] });
  const ds = writeJson(path.join(coordDir, 'dashboard-secrets.json'), { signingPrivate: secrets['dashboard']!['privateKey'], publicKey: secrets['dashboard']!['publicKey'], viewerToken: secrets['dashboard']!['viewerToken'] });
  coordinatorLocalFile = writeJson(path.join(coordDir, 'local.json'), { url: 'http://127.0.0.1:4000', secretsFile: cs, dashboardSecretsFile: ds, s3Endpoint: 'http://127.0.0.1:5000', dynamoEndpoint: 'http://127.0.0.1:6000' });
  configFile = writeJson(path.join(dir, 'fedkms.config.json'), { threshold: 2, nodes: NODE_IDS.map((id) => ({ id })), concurrency: { coordinator: 4, node: 6, dashboard: 2 } });
  // What `npm run secrets:aws -- --all` writes: public keys only.
  publicKeysFile = writeJson(path.join(dir, `${STAGE}.public-keys.json`), { coordinator: secrets['coordinator']!['publicKey'], admin: secrets['admin']!['publicKey'], dashboard: secrets['dashboard']!['publicKey'] });
  process.env['FEDKMS_PUBLIC_KEYS'] = publicKeysFile;
});

afterAll(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(dir, { recursive: true, force: true });
});

const nodeAws = (id: string) => nodeStack.render(STAGE, nodeFile[id]!);
const nodeLocal = (id: string) => nodeStack.render(STAGE, nodeFile[id]!, nodeLocalFile[id]!);
const coordAws = () => coordinatorStack.render(STAGE, coordinatorFile);
const coordLocal = () => coordinatorStack.render(STAGE, coordinatorFile, coordinatorLocalFile);
const allInOne = () => federation.render(STAGE, configFile);
/** The node unit exactly as the all-in-one template builds it. */
const nodeUnitInAllInOne = (id: string) => parts.nodeUnit({ stage: STAGE, id, coordinatorPublicKey: secrets['coordinator']!['publicKey'], adminPublicKey: secrets['admin']!['publicKey'], concurrency: 6 });

describe('(a) a node stack: its role reaches only its own resources', () => {
  it.each(NODE_IDS)('%s (AWS): every statement names only its bucket, tables, KMS key and secret, and each service only its own resource', (id) => {
    const u = nodeAws(id);
    expect(Object.keys(u.functions)).toEqual([id]);
    const own = ownTargets(u);
    const L = id.charAt(0).toUpperCase() + id.slice(1);
    const reached = new Set<string>();
    for (const s of u.functions[id]!.iamRoleStatements) {
      expect(s.Effect).toBe('Allow');
      expect(s.Action.filter((a) => a === '*' || a.includes('*'))).toEqual([]);
      const targets = statementTargets(s);
      expect(targets.length).toBeGreaterThan(0);
      expect(targets.filter((t) => !own.has(t))).toEqual([]);
      targets.forEach((t) => reached.add(t));
      // Each service's actions on that service's resource only.
      const service = s.Action[0]!.split(':')[0];
      expect(s.Action.every((a) => a.startsWith(`${service}:`))).toBe(true);
      const expected = { s3: [`id:FragmentBucket${L}`], dynamodb: [`table:fedkms-${STAGE}-${id}-audit`, `table:fedkms-${STAGE}-${id}-replay`], kms: [`id:NodeKey${L}`], secretsmanager: [`id:NodeSecret${L}`] }[service as 's3'];
      expect(expected).toBeDefined();
      expect(targets.every((t) => expected!.includes(t))).toBe(true);
    }
    expect([...reached].sort()).toEqual([`id:FragmentBucket${L}`, `id:NodeKey${L}`, `id:NodeSecret${L}`, `table:fedkms-${STAGE}-${id}-audit`, `table:fedkms-${STAGE}-${id}-replay`].sort());
    // Objects of its own bucket, by intrinsic: never a bucket name pattern.
    const objects = u.functions[id]!.iamRoleStatements.find((s) => s.Action.includes('s3:GetObject'))!;
    expect(objects.Resource).toEqual([{ 'Fn::Sub': `\${FragmentBucket${L}.Arn}/*` }]);
    expect(u.functions[id]!.iamRoleStatements.flatMap((s) => s.Action).sort()).toEqual(
      ['dynamodb:PutItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:Scan', 'kms:Decrypt', 'kms:GenerateDataKey', 's3:DeleteObject', 's3:DeleteObjectVersion', 's3:GetObject', 's3:ListBucket', 's3:ListBucketVersions', 's3:PutObject', 'secretsmanager:GetSecretValue'].sort(),
    );
  });

  it('the stack holds exactly its own unit: one function, bucket, KMS key, audit and replay tables, secret', () => {
    const u = nodeAws('node2');
    expect(Object.entries(u.resources).map(([k, r]) => `${k}:${r.Type}`).sort()).toEqual(
      ['AuditTableNode2:AWS::DynamoDB::Table', 'FragmentBucketNode2:AWS::S3::Bucket', 'NodeKeyNode2:AWS::KMS::Key', 'NodeSecretNode2:AWS::SecretsManager::Secret', 'ReplayTableNode2:AWS::DynamoDB::Table'].sort(),
    );
    // Its bucket and secret are encrypted under its own key, not the account's default key.
    const bucket = u.resources['FragmentBucketNode2']!.Properties;
    expect(bucket['BucketEncryption'].ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault).toEqual({ SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': ['NodeKeyNode2', 'Arn'] } });
    expect(bucket['PublicAccessBlockConfiguration']).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    expect(u.resources['NodeSecretNode2']!.Properties['KmsKeyId']).toEqual({ Ref: 'NodeKeyNode2' });
    // Versioned, but a share deleted by refresh or reshare does not survive as an old version for long.
    expect(bucket['VersioningConfiguration']).toEqual({ Status: 'Enabled' });
    expect(bucket['LifecycleConfiguration'].Rules).toContainEqual(expect.objectContaining({ Status: 'Enabled', NoncurrentVersionExpiration: { NoncurrentDays: 1 } }));
    expect(bucket['LifecycleConfiguration'].Rules).toContainEqual(expect.objectContaining({ Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }));
    // It trusts no other account: no resource policy names another principal.
    expect(JSON.stringify(u)).not.toMatch(/iam::\d{12}:|"Principal":"\*"/);
  });

  it.each(NODE_IDS)('%s (local): its role names only its own bucket and tables', (id) => {
    const u = nodeLocal(id);
    const own = ownTargets(u);
    const targets = u.functions[id]!.iamRoleStatements.flatMap(statementTargets);
    expect(targets.filter((t) => !own.has(t))).toEqual([]);
    expect(new Set(targets)).toEqual(new Set([`bucket:fedkms-${STAGE}-${id}`, `table:fedkms-${STAGE}-${id}-audit`, `table:fedkms-${STAGE}-${id}-replay`]));
  });

  it("in the all-in-one template each node function is the same unit, and reaches no other unit's resource", () => {
    const t = allInOne();
    const units = Object.fromEntries(NODE_IDS.map((id) => [id, nodeUnitInAllInOne(id)]));
    for (const id of NODE_IDS) {
      const u = units[id]!;
      expect(t.functions[id]).toEqual(u.functions[id]);
      for (const [k, r] of Object.entries(u.resources)) expect(t.resources.Resources[k]).toEqual(r);
      const own = ownTargets(u);
      const targets = t.functions[id]!.iamRoleStatements.flatMap(statementTargets);
      expect(targets.filter((x) => !own.has(x))).toEqual([]);
      // And every resource of the merged template it names exists there.
      for (const x of targets.filter((x) => x.startsWith('id:'))) expect(t.resources.Resources[x.slice(3)]).toBeDefined();
    }
  });
});

describe('(b) the coordinator stack reaches no node resource', () => {
  const nodeTargets = () => new Set(NODE_IDS.flatMap((id) => [...ownTargets(nodeAws(id)), ...ownTargets(nodeLocal(id))]));

  it.each([['AWS', coordAws], ['local', coordLocal]] as const)('%s: only its own tables, secrets and key; no S3 at all', (_mode, render) => {
    const u = render();
    const own = ownTargets(u);
    const theirs = nodeTargets();
    for (const fn of Object.values(u.functions)) {
      expect(fn.iamRoleStatements.flatMap((s) => s.Action).filter((a) => a.startsWith('s3:') || a.includes('*'))).toEqual([]);
      const targets = fn.iamRoleStatements.flatMap(statementTargets);
      expect(targets.filter((t) => !own.has(t))).toEqual([]);
      expect(targets.filter((t) => theirs.has(t))).toEqual([]);
      // Nodes are HTTPS endpoints to it: no node bucket, table or secret is even named.
      const env = JSON.stringify(fn.environment);
      expect(env).not.toMatch(/FRAGMENT_BUCKET|NODE_SECRET|fedkms\/ci\/node|fedkms-ci-node\d/);
    }
    expect(JSON.stringify(u.resources)).not.toMatch(/node\d/i);
  });

  it('AWS: the coordinator reaches its four tables, its secret and key; the dashboard only its own secret', () => {
    const u = coordAws();
    const reach = (fn: string) => [...new Set(u.functions[fn]!.iamRoleStatements.flatMap(statementTargets))].sort();
    expect(reach('reconstruct')).toEqual(['id:CoordinatorKey', 'id:CoordinatorSecret', ...['approvals', 'audit', 'commitments', 'replay'].map((t) => `table:fedkms-${STAGE}-coordinator-${t}`)].sort());
    expect(reach('dashboard')).toEqual(['id:CoordinatorKey', 'id:DashboardSecret']);
    const sm = (fn: string) => u.functions[fn]!.iamRoleStatements.filter((s) => s.Action.some((a) => a.startsWith('secretsmanager:')));
    expect(sm('dashboard').flatMap(statementTargets)).toEqual(['id:DashboardSecret']);
    expect(sm('reconstruct').flatMap(statementTargets)).toEqual(['id:CoordinatorSecret']);
    expect(Object.keys(u.functions['dashboard']!.environment).sort()).toEqual(['COORDINATOR_URL', 'DASHBOARD_SECRET_ID']);
    expect(u.functions['reconstruct']!.environment['API_TOKEN']).toBeUndefined();
  });

  it('in the all-in-one template, the coordinator and dashboard name no node resource', () => {
    const t = allInOne();
    const coord = ownTargets(coordAws());
    const theirs = new Set(NODE_IDS.flatMap((id) => [...ownTargets(nodeUnitInAllInOne(id))]));
    for (const fn of ['reconstruct', 'dashboard']) {
      const st = t.functions[fn]!.iamRoleStatements;
      expect(st.flatMap((s) => s.Action).filter((a) => a.startsWith('s3:'))).toEqual([]);
      const targets = st.flatMap(statementTargets);
      expect(targets.filter((x) => !coord.has(x))).toEqual([]);
      expect(targets.filter((x) => theirs.has(x))).toEqual([]);
    }
    // Its seeds are the nodes' endpoints under this stack's API: URLs, not resources.
    expect(JSON.stringify(t.functions['reconstruct']!.environment['FEDKMS_SEEDS'])).toContain('/nodes/node3');
  });
});

describe('(c) no two stacks name the same resource', () => {
  type Named = { stack: string; buckets: string[]; tables: string[]; secrets: string[]; logicalIds: string[]; functions: string[]; stackName: string[] };
  const coordinatorService = () => (parseYaml(readFileSync(path.join(ROOT, 'serverless.coordinator.yml'), 'utf8')) as { service: string }).service;
  const nodeService = (id: string) => {
    process.env['FEDKMS_OPERATOR_CONFIG'] = nodeFile[id]!;
    try {
      return nodeStack.service();
    } finally {
      delete process.env['FEDKMS_OPERATOR_CONFIG'];
    }
  };
  function named(stack: string, service: string, u: Unit): Named {
    const rs = Object.values(u.resources);
    const env = Object.values(u.functions).map((f) => f.environment);
    return {
      stack,
      // Declared resources and the names the functions are told (the local stack creates buckets from FRAGMENT_BUCKET).
      buckets: [...new Set([...rs.filter((r) => r.Type === 'AWS::S3::Bucket').map((r) => resolved(r.Properties['BucketName'])), ...env.filter((e) => e['FRAGMENT_BUCKET']).map((e) => resolved(e['FRAGMENT_BUCKET']))])],
      tables: [...new Set([...rs.filter((r) => r.Type === 'AWS::DynamoDB::Table').map((r) => r.Properties['TableName'] as string), ...env.flatMap((e) => Object.entries(e).filter(([k]) => k.endsWith('_TABLE')).map(([, v]) => v as string))])],
      secrets: [...new Set([...rs.filter((r) => r.Type === 'AWS::SecretsManager::Secret').map((r) => r.Properties['Name'] as string), ...env.flatMap((e) => Object.entries(e).filter(([k]) => k.endsWith('_SECRET_ID') || k.endsWith('_SECRETS_FILE')).map(([, v]) => v as string))])],
      logicalIds: Object.keys(u.resources),
      functions: Object.keys(u.functions).map((f) => `${service}-${STAGE}-${f}`),
      stackName: [`${service}-${STAGE}`],
    };
  }
  const kinds = ['buckets', 'tables', 'secrets', 'logicalIds', 'functions', 'stackName'] as const;

  function expectDisjoint(all: Named[]) {
    for (const kind of kinds) {
      const seen = new Map<string, string>();
      for (const n of all) {
        for (const v of n[kind]) {
          expect(`${kind} ${v}: ${seen.get(v) ?? n.stack}`).toBe(`${kind} ${v}: ${n.stack}`);
          seen.set(v, n.stack);
        }
      }
    }
  }

  it.each([['AWS', false], ['local', true]] as const)('%s: node1, node2, node3 and the coordinator, deployed side by side in one account and region', (_mode, local) => {
    const stacks = [
      ...NODE_IDS.map((id) => named(id, nodeService(id), local ? nodeLocal(id) : nodeAws(id))),
      named('coordinator', coordinatorService(), local ? coordLocal() : coordAws()),
    ];
    for (const s of stacks) expect(s.tables.length + s.secrets.length + s.functions.length).toBeGreaterThan(0);
    expect(stacks.filter((s) => s.stack !== 'coordinator').every((s) => s.buckets.length === 1)).toBe(true);
    expectDisjoint(stacks);
  });

  it('all-in-one: every unit keeps its own names, functions and routes inside the one stack', () => {
    const t = allInOne();
    const units: Unit[] = [...NODE_IDS.map(nodeUnitInAllInOne), coordAws()];
    const perUnit = units.map((u, i) => {
      const n = named(i < NODE_IDS.length ? NODE_IDS[i]! : 'coordinator', 'fedkms', u);
      return { ...n, stackName: [] as string[] };
    });
    expectDisjoint(perUnit);
    // The merged template is exactly the units' resources: nothing shared was added.
    expect(Object.keys(t.resources.Resources).sort()).toEqual(units.flatMap((u) => Object.keys(u.resources)).sort());
    // One HTTP API for all: no two functions declare the same route.
    const routes = Object.values(t.functions).flatMap((f) => f.events.map((e) => `${e.httpApi.method} ${e.httpApi.path}`));
    expect(new Set(routes).size).toBe(routes.length);
    // Tables, buckets and secrets unique across the whole template.
    for (const type of ['AWS::DynamoDB::Table', 'AWS::S3::Bucket', 'AWS::SecretsManager::Secret']) {
      const names = Object.values(t.resources.Resources).filter((r) => r.Type === type).map((r) => resolved(r.Properties['TableName'] ?? r.Properties['BucketName'] ?? r.Properties['Name']));
      expect(new Set(names).size).toBe(names.length);
    }
  });

  it('refuses node ids that would take the name of a coordinator resource, or collide in the all-in-one template', () => {
    for (const id of ['coordinator', 'dashboard', 'reconstruct']) {
      const f = writeJson(path.join(dir, 'reserved', `${id}.json`), { ...JSON.parse(readFileSync(nodeFile['node1']!, 'utf8')), id });
      expect(() => nodeStack.render(STAGE, f)).toThrow(/id must/);
      const cfg = writeJson(path.join(dir, 'reserved', `${id}.config.json`), { threshold: 2, nodes: [{ id: 'node1' }, { id }] });
      expect(() => federation.render(STAGE, cfg)).toThrow(/unique ids/);
    }
    // node-1 and node1 would share logical ids (Node1) in one template: refused, not silently merged.
    const clash = writeJson(path.join(dir, 'reserved', 'clash.config.json'), { threshold: 2, nodes: [{ id: 'node1' }, { id: 'node-1' }] });
    expect(() => federation.render(STAGE, clash)).toThrow(/two units declare/);
  });
});

describe('(d) KMS key policies: the account root keeps administration, and use only through IAM via the services that hold the data', () => {
  const CRYPTO = ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:GenerateDataKeyPair', 'kms:GenerateDataKeyPairWithoutPlaintext', 'kms:GenerateRandom', 'kms:Sign', 'kms:Verify', 'kms:GenerateMac', 'kms:VerifyMac', 'kms:DeriveSharedSecret', 'kms:GetPublicKey', 'kms:CreateGrant', 'kms:RetireGrant', 'kms:ImportKeyMaterial'];
  // What CloudFormation and an operator need to manage the key (create, rotate, tag, describe, delete), and nothing else.
  const ADMIN = ['kms:CancelKeyDeletion', 'kms:DescribeKey', 'kms:DisableKey', 'kms:DisableKeyRotation', 'kms:EnableKey', 'kms:EnableKeyRotation', 'kms:GetKeyPolicy', 'kms:GetKeyRotationStatus', 'kms:ListResourceTags', 'kms:PutKeyPolicy', 'kms:ScheduleKeyDeletion', 'kms:TagResource', 'kms:UntagResource', 'kms:UpdateKeyDescription'];
  const root = { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } };
  const keysOf = (resources: Record<string, Res>) => Object.entries(resources).filter(([, r]) => r.Type === 'AWS::KMS::Key');

  const templates = (): [string, Record<string, Res>][] => [
    ...NODE_IDS.map((id) => [`node stack ${id}`, nodeAws(id).resources] as [string, Record<string, Res>]),
    ['coordinator stack', coordAws().resources],
    ['all-in-one', allInOne().resources.Resources],
  ];

  it('every key: exactly two statements, both for this account only; administration has no cryptographic action', () => {
    expect([...parts.KMS_ADMIN_ACTIONS].sort()).toEqual(ADMIN);
    let keys = 0;
    for (const [, resources] of templates()) {
      for (const [, key] of keysOf(resources)) {
        keys++;
        expect(key.Properties['EnableKeyRotation']).toBe(true);
        const st = key.Properties['KeyPolicy'].Statement as Statement[];
        expect(st.map((s) => s.Sid)).toEqual(['AccountAdministersOnly', 'UseThroughIamPolicies']);
        for (const s of st) {
          expect(s.Effect).toBe('Allow');
          expect(s.Principal).toEqual(root);
          expect(s.Resource).toBe('*'); // in a key policy: this key
          expect(asArray(s.Action).filter((a) => a.includes('*'))).toEqual([]);
        }
        expect([...st[0]!.Action].sort()).toEqual(ADMIN);
        expect(st[0]!.Action.filter((a) => CRYPTO.includes(a))).toEqual([]);
        expect(st[0]!.Condition).toBeUndefined();
      }
    }
    expect(keys).toBe(NODE_IDS.length + 1 + NODE_IDS.length + 1);
  });

  it('cryptographic use: only Decrypt and GenerateDataKey, only by callers of this account, only through S3 or Secrets Manager', () => {
    const via = (svc: string) => ({ 'Fn::Sub': `${svc}.\${AWS::Region}.amazonaws.com` });
    for (const [, resources] of templates()) {
      for (const [id, key] of keysOf(resources)) {
        const use = (key.Properties['KeyPolicy'].Statement as Statement[])[1]!;
        expect(use.Action).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
        // A node's key protects its bucket and its secret; the coordinator's key only its secrets.
        const services = id === 'CoordinatorKey' ? ['secretsmanager'] : ['s3', 'secretsmanager'];
        expect(use.Condition).toEqual({ StringEquals: { 'kms:CallerAccount': { 'Fn::Sub': '${AWS::AccountId}' }, 'kms:ViaService': services.map(via) } });
        // No grants, no direct Encrypt/Decrypt from the console or CLI, no re-encryption elsewhere.
        const all = (key.Properties['KeyPolicy'].Statement as Statement[]).flatMap((s) => s.Action);
        expect(all.filter((a) => CRYPTO.includes(a)).sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
      }
    }
  });
});

describe('(e) no secret value anywhere in any template', () => {
  const rendered = (): [string, unknown][] => [
    ...NODE_IDS.flatMap((id) => [[`node ${id} (AWS)`, nodeAws(id)], [`node ${id} (local)`, nodeLocal(id)]] as [string, unknown][]),
    ['coordinator (AWS)', coordAws()],
    ['coordinator (local)', coordLocal()],
    ['all-in-one', allInOne()],
  ];

  it('the generated secrets were written where a local stack keeps them, and never into a template', () => {
    // The test can fail: the values are real and on disk.
    const onDisk = readFileSync(path.join(dir, 'nodes', 'node1', 'secrets.json'), 'utf8');
    expect(onDisk).toContain(secrets['node1']!['wrapKey']);
    const values = secretValues();
    expect(values.length).toBeGreaterThanOrEqual(4 * (3 * NODE_IDS.length + 4));
    for (const [name, t] of rendered()) {
      const text = JSON.stringify(t);
      const found = values.filter((v) => text.includes(v));
      expect(`${name}: ${found.length} secret values`).toBe(`${name}: 0 secret values`);
    }
  });

  it('functions are told where their secret is (a secret id or file), never what it is', () => {
    const forbidden = /WRAP_KEY|PRIVATE|SIGNING_KEY|CLIENT_KEY|_TOKEN$|^API_TOKEN|SECRET$|PASSWORD/;
    const allowed = /_SECRET_ID$|_SECRETS_FILE$/;
    for (const [name, t] of rendered()) {
      const fns = (t as { functions: Record<string, Fn> }).functions;
      for (const [fn, f] of Object.entries(fns)) {
        const bad = Object.keys(f.environment).filter((k) => forbidden.test(k) && !allowed.test(k));
        expect(`${name} ${fn}: ${bad.join(',')}`).toBe(`${name} ${fn}: `);
        // No dynamic reference to a secret's value either ({{resolve:secretsmanager:...}}).
        expect(JSON.stringify(f.environment)).not.toMatch(/resolve:secretsmanager|resolve:ssm-secure/);
        const where = Object.keys(f.environment).filter((k) => allowed.test(k));
        expect(where.length).toBeGreaterThan(0);
        for (const k of where) {
          const v = f.environment[k] as string;
          expect(k.endsWith('_SECRET_ID') ? v : path.relative(dir, v)).toMatch(k.endsWith('_SECRET_ID') ? /^fedkms\/ci\/[a-z0-9-]+$/ : /^(nodes\/[a-z0-9-]+|coordinator)\/[a-z-]*secrets\.json$/);
        }
      }
    }
  });

  it('a secret resource holds only a generated placeholder under its own key: the operator sets the value after deploy', () => {
    for (const [, t] of rendered()) {
      const u = t as Unit | AllInOne;
      const resources = 'Resources' in u.resources ? (u.resources as { Resources: Record<string, Res> }).Resources : (u.resources as Record<string, Res>);
      for (const r of Object.values(resources).filter((x) => x.Type === 'AWS::SecretsManager::Secret')) {
        expect(r.Properties['SecretString']).toBeUndefined();
        expect(r.Properties['GenerateSecretString']).toEqual({ PasswordLength: 32, ExcludePunctuation: true });
        expect(resources[(r.Properties['KmsKeyId'] as { Ref: string }).Ref]?.Type).toBe('AWS::KMS::Key');
        expect(r.DeletionPolicy).toBe('Retain');
      }
    }
  });

  it('npm run secrets:aws -- --all: its printed secrets appear in no template; the file it writes holds the three public keys only', () => {
    const file = path.join(dir, 'bootstrap', 'ci.public-keys.json');
    mkdirSync(path.dirname(file), { recursive: true });
    const env: NodeJS.ProcessEnv = { ...process.env, FEDKMS_CONFIG: configFile, FEDKMS_PUBLIC_KEYS: file };
    const out = execFileSync(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'scripts/aws-bootstrap.ts'), '--stage', STAGE, '--all'], { cwd: ROOT, env, encoding: 'utf8' });
    const printed = [...out.matchAll(/--secret-id (\S+) --secret-string '([^']+)'/g)].map((m) => [m[1]!, JSON.parse(m[2]!) as Record<string, string>] as const);
    expect(printed.map(([id]) => id)).toEqual(['fedkms/ci/coordinator', 'fedkms/ci/dashboard', ...NODE_IDS.map((id) => `fedkms/ci/${id}`)]);
    const adminKey = out.match(/FEDKMS_CLIENT_KEY='([^']+)'/)![1]!;
    const values = [adminKey, ...printed.flatMap(([, v]) => Object.entries(v).filter(([k]) => k !== 'publicKey').map(([, x]) => x))];
    expect(values).toHaveLength(1 + 1 + 2 + 3 * NODE_IDS.length); // admin; coordinator; dashboard key and viewer token; each node's three
    const keysFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    expect(Object.keys(keysFile).sort()).toEqual(['admin', 'coordinator', 'dashboard']);
    expect(keysFile['coordinator']).toBe(printed[0]![1]['publicKey']);
    expect(keysFile['dashboard']).toBe(printed[1]![1]['publicKey']);
    process.env['FEDKMS_PUBLIC_KEYS'] = file;
    try {
      const text = JSON.stringify(allInOne()) + readFileSync(file, 'utf8');
      expect(text).toContain(keysFile['admin']);
      expect(values.filter((v) => text.includes(v))).toEqual([]);
    } finally {
      process.env['FEDKMS_PUBLIC_KEYS'] = publicKeysFile;
    }
    // It refuses to replace the keys a deployment may already trust.
    expect(() => execFileSync(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'scripts/aws-bootstrap.ts'), '--stage', STAGE, '--all'], { cwd: ROOT, env, stdio: 'pipe' })).toThrow(/--force/);
  }, 60_000);

  it('the public keys a unit trusts are the public halves only', () => {
    const n = nodeAws('node1').functions['node1']!.environment;
    expect(n['COORDINATOR_PUBLIC_KEY']).toBe(secrets['coordinator']!['publicKey']);
    expect(n['FEDKMS_ADMIN_PUBLIC_KEY']).toBe(secrets['admin']!['publicKey']);
    expect(coordAws().functions['reconstruct']!.environment['DASHBOARD_PUBLIC_KEY']).toBe(secrets['dashboard']!['publicKey']);
    // Only the coordinator knows the dashboard's key; nodes accept the coordinator only.
    for (const id of NODE_IDS) expect(nodeAws(id).functions[id]!.environment['DASHBOARD_PUBLIC_KEY']).toBeUndefined();
  });
});

describe('per-operator settings', () => {
  const variant = (base: string, change: Record<string, unknown>) => writeJson(path.join(dir, 'variants', `${Math.random().toString(36).slice(2)}.json`), { ...JSON.parse(readFileSync(base, 'utf8')), ...change });

  it('reserved concurrency comes from each operator config', () => {
    expect(nodeAws('node1').functions['node1']!.reservedConcurrency).toBe(6);
    expect(nodeStack.render(STAGE, variant(nodeFile['node1']!, { concurrency: 9 })).functions['node1']!.reservedConcurrency).toBe(9);
    const c = coordinatorStack.render(STAGE, variant(coordinatorFile, { concurrency: { coordinator: 10 } })).functions;
    expect([c['reconstruct']!.reservedConcurrency, c['dashboard']!.reservedConcurrency]).toEqual([10, 2]);
  });

  it('refuses bad values, naming the file', () => {
    const bad: [string, Record<string, unknown>, RegExp][] = [
      [nodeFile['node1']!, { concurrency: 0 }, /concurrency/],
      [nodeFile['node1']!, { concurrency: 2.5 }, /concurrency/],
      [nodeFile['node1']!, { id: 'Node_1' }, /id must/],
      [nodeFile['node1']!, { coordinatorPublicKey: 'not-a-key' }, /coordinatorPublicKey/],
      [nodeFile['node1']!, { adminPublicKey: undefined }, /adminPublicKey/],
      [coordinatorFile, { seeds: [] }, /seeds/],
      [coordinatorFile, { seeds: [{ id: 'node1', url: 'ftp://x' }] }, /seeds/],
      [coordinatorFile, { apiAuthorizer: 'jwt' }, /apiAuthorizer/],
      [coordinatorFile, { requestBudgetMs: 5 }, /requestBudgetMs/],
      [coordinatorFile, { concurrency: { dashboard: -1 } }, /concurrency/],
      [coordinatorFile, { dashboardPublicKey: secrets['dashboard']!['privateKey'] + 'x' }, /dashboardPublicKey/],
    ];
    for (const [base, change, message] of bad) {
      const f = variant(base, change);
      const render = base === coordinatorFile ? coordinatorStack.render : nodeStack.render;
      expect(() => render(STAGE, f)).toThrow(message);
      expect(() => render(STAGE, f)).toThrow(f);
    }
    expect(() => nodeStack.render(STAGE, path.join(dir, 'missing.json'))).toThrow(/cannot read the operator config/);
  });

  it('the example operator configs render as they are', () => {
    expect(Object.keys(nodeStack.render('prod', path.join(ROOT, 'deploy/examples/node.json')).functions)).toEqual(['node1']);
    const c = coordinatorStack.render('prod', path.join(ROOT, 'deploy/examples/coordinator.json'));
    expect(Object.keys(c.functions).sort()).toEqual(['dashboard', 'reconstruct']);
    expect(JSON.parse(c.functions['reconstruct']!.environment['FEDKMS_SEEDS'] as string)).toHaveLength(2);
  });

  it('an IAM authorizer on every coordinator route but the public ones (status, a key\'s public key) and the dashboard routes, when asked', () => {
    const events = coordinatorStack.render(STAGE, variant(coordinatorFile, { apiAuthorizer: 'aws_iam' })).functions['reconstruct']!.events.map((e) => e.httpApi);
    const open = (p: string) => p === '/status' || p === '/keys/{keyId}/public' || p.startsWith('/federation/');
    for (const e of events) expect(e.authorizer).toEqual(open(e.path) ? undefined : { type: 'aws_iam' });
    expect(coordAws().functions['reconstruct']!.events.every((e) => e.httpApi.authorizer === undefined)).toBe(true);
  });
});
