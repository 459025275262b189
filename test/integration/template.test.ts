/**
 * The packaged CloudFormation templates (`serverless package`, offline), one run per template:
 * serverless.yml (every unit in one stack, 3 nodes), serverless.node.yml (node2's operator) and
 * serverless.coordinator.yml. What the framework and serverless-iam-roles-per-function make of
 * the units: one function and one role per unit, each role reaching only its own unit's
 * resources and log group, no secret in any template. The renderers alone are checked in depth
 * in test/unit/templates.test.ts; here also the all-in-one options (authorizer, concurrency, a
 * 5-node federation by configuration alone), rendered in-process.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateSigningKey } from '../../lib/crypto/request-signing';
import { toB64 } from '../../lib/encoding';

const ROOT = path.resolve(__dirname, '../..');
const NODE_IDS = ['node1', 'node2', 'node3'];

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
type Template = { Resources: Record<string, { Type: string; Properties: any }> };

const logical = (id: string) => id.replace(/(^|-)([a-z0-9])/g, (_m, _d, c: string) => c.toUpperCase());
const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const statementsOf = (t: Template, role: string): Statement[] =>
  t.Resources[role]!.Properties.Policies.flatMap((p: { PolicyDocument: { Statement: Statement[] } }) => p.PolicyDocument.Statement);

/** What an IAM Resource entry points at: `id:<logical id>`, `table:<name>`, `logs:<log group>`, or `?:<text>`. */
function targetsOf(r: unknown): string[] {
  if (typeof r === 'string') {
    const t = r.match(/:table\/([A-Za-z0-9_.-]+)$/);
    if (t) return [`table:${t[1]}`];
    const l = r.match(/:log-group:([^:*]+):\*:\*$/);
    if (l) return [`logs:${l[1]}`];
    return [`?:${r}`];
  }
  const o = (r ?? {}) as Record<string, unknown>;
  if (typeof o['Ref'] === 'string') return [`id:${o['Ref']}`];
  if (Array.isArray(o['Fn::GetAtt'])) return [`id:${String(o['Fn::GetAtt'][0])}`];
  if (typeof o['Fn::Sub'] === 'string') {
    const sub = o['Fn::Sub'];
    const ids = [...sub.matchAll(/\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}/g)].map((m) => `id:${m[1]}`);
    const rest = sub.replace(/\$\{[^}]+\}/g, '');
    return ids.length ? (rest === '/*' ? ids : [...ids, `?:${rest}`]) : targetsOf(rest);
  }
  return [`?:${JSON.stringify(r)}`];
}
const roleTargets = (t: Template, role: string) => [...new Set(statementsOf(t, role).flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).flatMap(targetsOf)))].sort();

/** A fresh key pair; only the public half goes to any template. */
const keyPair = () => {
  const k = generateSigningKey();
  return { privateKey: toB64(k.privateKey), publicKey: toB64(k.publicKey) };
};

let dir: string;
const keys = { coordinator: keyPair(), admin: keyPair(), dashboard: keyPair() };
let publicKeysFile: string;

function writeJson(name: string, v: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(v));
  return file;
}

/** `serverless package --config <file> --stage ci` into a fresh folder; returns the update template and the folder. */
function packageTemplate(config: string, env: Record<string, string>): { t: Template; out: string } {
  const out = mkdtempSync(path.join(dir, 'out-'));
  const full: NodeJS.ProcessEnv = { ...process.env, ...env, FEDKMS_BUILD_DIR: path.relative(ROOT, path.join(out, 'build')) };
  delete full['FEDKMS_LOCAL_STACK'];
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/serverless/bin/serverless.js'), 'package', '--config', config, '--stage', 'ci', '--package', path.join(out, 'pkg')], { cwd: ROOT, env: full, stdio: 'pipe' });
  return { t: JSON.parse(readFileSync(path.join(out, 'pkg', 'cloudformation-template-update-stack.json'), 'utf8')) as Template, out: path.join(out, 'pkg') };
}

let all: { t: Template; out: string };
let node: { t: Template; out: string };
let coord: { t: Template; out: string };

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-pkg-'));
  publicKeysFile = writeJson('ci.public-keys.json', { coordinator: keys.coordinator.publicKey, admin: keys.admin.publicKey, dashboard: keys.dashboard.publicKey });
  const configFile = writeJson('fedkms.config.json', { threshold: 2, nodes: NODE_IDS.map((id) => ({ id })) });
  all = packageTemplate('serverless.yml', { FEDKMS_CONFIG: configFile, FEDKMS_PUBLIC_KEYS: publicKeysFile });
  node = packageTemplate('serverless.node.yml', { FEDKMS_OPERATOR_CONFIG: writeJson('node2.json', { id: 'node2', coordinatorPublicKey: keys.coordinator.publicKey, adminPublicKey: keys.admin.publicKey, concurrency: 5 }) });
  coord = packageTemplate('serverless.coordinator.yml', {
    FEDKMS_OPERATOR_CONFIG: writeJson('coordinator.json', { seeds: NODE_IDS.map((id) => ({ id, url: `https://${id}.example.org/nodes/${id}` })), dashboardPublicKey: keys.dashboard.publicKey }),
  });
}, 240_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Checks that hold for each node unit, wherever it is packaged. */
function expectNodeUnit(t: Template, id: string, service: string) {
  const L = logical(id);
  expect(t.Resources[`${L}LambdaFunction`]?.Type).toBe('AWS::Lambda::Function');
  expect(t.Resources[`FragmentBucket${L}`]?.Type).toBe('AWS::S3::Bucket');
  expect(t.Resources[`NodeKey${L}`]?.Type).toBe('AWS::KMS::Key');
  expect(t.Resources[`NodeSecret${L}`]?.Type).toBe('AWS::SecretsManager::Secret');
  expect(t.Resources[`${L}IamRoleLambdaExecution`]?.Type).toBe('AWS::IAM::Role');
  const fn = t.Resources[`${L}LambdaFunction`]!.Properties;
  expect(fn.Role).toEqual({ 'Fn::GetAtt': [`${L}IamRoleLambdaExecution`, 'Arn'] });
  expect(fn.FunctionName).toBe(`${service}-ci-${id}`);
  // Its role: its own log group, bucket, tables, key and secret. Nothing else.
  expect(roleTargets(t, `${L}IamRoleLambdaExecution`)).toEqual(
    [`id:FragmentBucket${L}`, `id:NodeKey${L}`, `id:NodeSecret${L}`, `logs:/aws/lambda/${service}-ci-${id}`, `table:fedkms-ci-${id}-audit`, `table:fedkms-ci-${id}-replay`].sort(),
  );
  const s3 = statementsOf(t, `${L}IamRoleLambdaExecution`).filter((s) => actions(s).some((a) => a.startsWith('s3:')));
  expect(s3.flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]))).toEqual([{ 'Fn::Sub': `\${FragmentBucket${L}.Arn}/*` }, { 'Fn::GetAtt': [`FragmentBucket${L}`, 'Arn'] }]);
  const vars = fn.Environment.Variables as Record<string, unknown>;
  expect(vars['NODE_SECRET_ID']).toBe(`fedkms/ci/${id}`);
  expect(vars['FEDKMS_ADMIN_PUBLIC_KEY']).toBe(keys.admin.publicKey);
  expect(vars['COORDINATOR_PUBLIC_KEY']).toBe(keys.coordinator.publicKey);
  expect(vars['DASHBOARD_PUBLIC_KEY']).toBeUndefined();
  expect(Object.keys(vars).filter((k) => /WRAP_KEY|PRIVATE|SIGNING_KEY|TOKEN/.test(k))).toEqual([]);
}

/** Checks that hold for the coordinator unit (coordinator and dashboard functions). */
function expectCoordinatorUnit(t: Template, service: string) {
  const nodeish = /FragmentBucket|NodeKey|NodeSecret|fedkms-ci-node|fedkms\/ci\/node/;
  expect(roleTargets(t, 'ReconstructIamRoleLambdaExecution')).toEqual(
    ['id:CoordinatorKey', 'id:CoordinatorSecret', `logs:/aws/lambda/${service}-ci-reconstruct`, ...['approvals', 'audit', 'commitments', 'replay'].map((x) => `table:fedkms-ci-coordinator-${x}`)].sort(),
  );
  const st = statementsOf(t, 'ReconstructIamRoleLambdaExecution');
  expect(st.flatMap(actions).filter((a) => a.startsWith('s3:'))).toEqual([]);
  expect(JSON.stringify(st)).not.toMatch(nodeish);
  // The replay table takes writes only; approvals are collected, and every node re-checks them.
  expect(st.filter((s) => JSON.stringify(s.Resource).includes('-replay')).flatMap(actions)).toEqual(['dynamodb:PutItem']);
  const vars = t.Resources['ReconstructLambdaFunction']!.Properties.Environment.Variables as Record<string, unknown>;
  expect(vars['API_TOKEN']).toBeUndefined();
  expect(vars['COORDINATOR_SECRET_ID']).toBe('fedkms/ci/coordinator');
  expect(vars['DASHBOARD_PUBLIC_KEY']).toBe(keys.dashboard.publicKey);
  expect(JSON.stringify(vars)).not.toMatch(nodeish);
  // The dashboard: its logs, its own secret and the key under it; it reaches no node, bucket or table.
  expect(roleTargets(t, 'DashboardIamRoleLambdaExecution')).toEqual(['id:CoordinatorKey', 'id:DashboardSecret', `logs:/aws/lambda/${service}-ci-dashboard`]);
  const dv = t.Resources['DashboardLambdaFunction']!.Properties.Environment.Variables as Record<string, unknown>;
  expect(Object.keys(dv).sort()).toEqual(['COORDINATOR_URL', 'DASHBOARD_SECRET_ID', 'FEDKMS_STAGE', 'FEDKMS_VERSION', 'POWERTOOLS_LOG_LEVEL']);
  expect(dv['DASHBOARD_SECRET_ID']).toBe('fedkms/ci/dashboard');
  expect(JSON.stringify(dv['COORDINATOR_URL'])).toContain('execute-api');
}

/** No wildcard action or resource in any role; one role per function plus the framework's default (log permissions only, no function uses it). */
function expectNoWildcards(t: Template) {
  const roles = Object.entries(t.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Role');
  const fns = Object.values(t.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
  expect(roles.length).toBe(fns.length + 1);
  for (const [name] of roles) {
    for (const s of statementsOf(t, name)) {
      expect(actions(s).filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
      const res = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
      expect(res.filter((r) => r === '*')).toEqual([]);
    }
  }
  const defaultRole = statementsOf(t, 'IamRoleLambdaExecution');
  expect(defaultRole.flatMap(actions).filter((a) => !a.startsWith('logs:'))).toEqual([]);
  expect(fns.map((f) => JSON.stringify(f.Properties.Role))).not.toContain(JSON.stringify({ 'Fn::GetAtt': ['IamRoleLambdaExecution', 'Arn'] }));
  // In a KMS key policy, Resource "*" means "this key"; the actions are still named one by one.
  for (const key of Object.values(t.Resources).filter((r) => r.Type === 'AWS::KMS::Key')) {
    for (const s of key.Properties.KeyPolicy.Statement as Statement[]) expect(actions(s).filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
  }
}

/** No private value in anything `serverless package` wrote as JSON (templates, service state). */
function expectNoPrivateValues(out: string, publicKey: string) {
  const text = readdirSync(out).filter((f) => f.endsWith('.json')).map((f) => readFileSync(path.join(out, f), 'utf8')).join('\n');
  // The public halves are there (the check reads the right files); the private halves never are.
  expect(text).toContain(publicKey);
  for (const k of Object.values(keys)) expect(text).not.toContain(k.privateKey);
  expect(text).not.toMatch(/resolve:secretsmanager|NODE_WRAP_KEY|NODE_X25519_PRIVATE|DASHBOARD_TOKEN|SIGNING_KEY"/);
}

describe('serverless.yml packaged (all in one, 3 nodes)', () => {
  it('has one function, bucket, KMS key, secret and role per node, each role reaching only its own unit', () => {
    for (const id of NODE_IDS) expectNodeUnit(all.t, id, 'fedkms');
  });

  it('gives the coordinator and the dashboard no node resource and no bucket access at all', () => {
    expectCoordinatorUnit(all.t, 'fedkms');
    const seeds = all.t.Resources['ReconstructLambdaFunction']!.Properties.Environment.Variables.FEDKMS_SEEDS;
    expect(JSON.stringify(seeds)).toContain(`/nodes/${NODE_IDS.at(-1)}`);
  });

  it('has no wildcard action or resource in any role', () => expectNoWildcards(all.t));
  it('holds no secret value: only public keys and secret names', () => expectNoPrivateValues(all.out, keys.admin.publicKey));
});

describe("serverless.node.yml packaged (node2's own stack)", () => {
  it('is node2 alone: its unit, its stack name, nothing of another node or of the coordinator', () => {
    expectNodeUnit(node.t, 'node2', 'fedkms-node2');
    expect(node.t.Resources['Node2LambdaFunction']!.Properties.ReservedConcurrentExecutions).toBe(5);
    expect(JSON.stringify(node.t)).not.toMatch(/node1|node3|Node1|Node3|Coordinator|coordinator-|Dashboard/);
    expect(Object.values(node.t.Resources).filter((r) => r.Type === 'AWS::Lambda::Function')).toHaveLength(1);
  });

  it('has no wildcard action or resource in any role', () => expectNoWildcards(node.t));
  it('holds no secret value', () => expectNoPrivateValues(node.out, keys.coordinator.publicKey));
});

describe('serverless.coordinator.yml packaged', () => {
  it('is the coordinator and the dashboard: no node resource, no S3', () => {
    expectCoordinatorUnit(coord.t, 'fedkms-coordinator');
    expect(Object.values(coord.t.Resources).filter((r) => r.Type === 'AWS::S3::Bucket').map((r) => r.Properties?.BucketName)).toEqual([undefined]); // the framework's deployment bucket only
    expect(JSON.stringify(coord.t.Resources)).not.toMatch(/FragmentBucket|NodeKey|NodeSecret|fedkms-ci-node/);
  });

  it('shares no function, role, log group or table name with a node stack', () => {
    const names = (t: Template) => Object.values(t.Resources).flatMap((r) =>
      [r.Properties?.FunctionName, r.Properties?.TableName, r.Properties?.Name, r.Properties?.LogGroupName, r.Properties?.RoleName].filter((x) => x !== undefined).map((x) => JSON.stringify(x)));
    const a = names(node.t);
    const b = names(coord.t);
    expect(a.length).toBeGreaterThan(5);
    expect(a.filter((x) => b.includes(x))).toEqual([]);
  });

  it('has no wildcard action or resource in any role', () => expectNoWildcards(coord.t));
  it('holds no secret value', () => expectNoPrivateValues(coord.out, keys.dashboard.publicKey));
});

/** A federation config file with `extra` settings, for the renderer alone. */
function withConfig(extra: Record<string, unknown>, nodeIds = NODE_IDS): string {
  return writeJson(`cfg-${Math.random().toString(36).slice(2)}.json`, { threshold: 2, nodes: nodeIds.map((id) => ({ id })), ...extra });
}

type Rendered = { functions: Record<string, { reservedConcurrency?: number; iamRoleStatements: Statement[]; events: { httpApi: { path: string; authorizer?: { type: string } } }[] }>; resources: Template };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { render } = require('../../deploy/federation.cjs') as { render: (stage: string, file: string) => Rendered };
const renderAll = (file: string): Rendered => {
  const saved = process.env['FEDKMS_PUBLIC_KEYS'];
  process.env['FEDKMS_PUBLIC_KEYS'] = publicKeysFile;
  try {
    return render('ci', file);
  } finally {
    if (saved === undefined) delete process.env['FEDKMS_PUBLIC_KEYS'];
    else process.env['FEDKMS_PUBLIC_KEYS'] = saved;
  }
};

describe('all-in-one by configuration alone (rendered)', () => {
  it('a 5-node federation: five node units, each role reaching only its own', () => {
    const ids = ['node1', 'node2', 'node3', 'node4', 'node5'];
    const r = renderAll(withConfig({ threshold: 3 }, ids));
    expect(Object.keys(r.functions).sort()).toEqual([...ids, 'dashboard', 'reconstruct'].sort());
    for (const id of ids) {
      const L = logical(id);
      const targets = r.functions[id]!.iamRoleStatements.flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).flatMap(targetsOf));
      expect([...new Set(targets)].sort()).toEqual([`id:FragmentBucket${L}`, `id:NodeKey${L}`, `id:NodeSecret${L}`, `table:fedkms-ci-${id}-audit`, `table:fedkms-ci-${id}-replay`].sort());
    }
  });

  it('refuses to render without the public keys file, and says how to make it', () => {
    const saved = process.env['FEDKMS_PUBLIC_KEYS'];
    process.env['FEDKMS_PUBLIC_KEYS'] = path.join(dir, 'absent.json');
    try {
      expect(() => render('ci', withConfig({}))).toThrow(/secrets:aws/);
    } finally {
      if (saved === undefined) delete process.env['FEDKMS_PUBLIC_KEYS'];
      else process.env['FEDKMS_PUBLIC_KEYS'] = saved;
    }
  });
});

describe('API Gateway authorizer option (defence in depth)', () => {
  it('puts an IAM authorizer on every coordinator route but the public ones when asked', () => {
    const events = renderAll(withConfig({ apiAuthorizer: 'aws_iam' })).functions['reconstruct']!.events.map((e) => e.httpApi);
    // /status is public; the /federation routes take the dashboard's own signature, and it has no IAM identity.
    for (const e of events) expect(e.authorizer).toEqual(e.path === '/status' || e.path === '/keys/{keyId}/public' || e.path.startsWith('/federation/') ? undefined : { type: 'aws_iam' });
    expect(renderAll(withConfig({})).functions['reconstruct']!.events.every((e) => e.httpApi.authorizer === undefined)).toBe(true);
  });

  it('refuses an unknown authorizer kind', () => {
    expect(() => renderAll(withConfig({ apiAuthorizer: 'jwt' }))).toThrow(/apiAuthorizer/);
  });
});

describe('bounded concurrency', () => {
  it('reserves every function its configured concurrency, a node more than the coordinator by default', () => {
    const fns = renderAll(withConfig({})).functions;
    expect(Object.values(fns).every((f) => Number.isInteger(f.reservedConcurrency) && f.reservedConcurrency! >= 1)).toBe(true);
    expect(fns['node1']!.reservedConcurrency).toBeGreaterThan(fns['reconstruct']!.reservedConcurrency!);
    const custom = renderAll(withConfig({ concurrency: { coordinator: 10, node: 12 } })).functions;
    expect([custom['reconstruct']!.reservedConcurrency, custom['node2']!.reservedConcurrency, custom['dashboard']!.reservedConcurrency]).toEqual([10, 12, 2]);
    expect(all.t.Resources['Node1LambdaFunction']!.Properties.ReservedConcurrentExecutions).toBe(6);
  });

  it('refuses a concurrency that is not a positive integer', () => {
    expect(() => renderAll(withConfig({ concurrency: { node: 0 } }))).toThrow(/concurrency/);
    expect(() => renderAll(withConfig({ concurrency: { coordinator: 2.5 } }))).toThrow(/concurrency/);
  });
});
