/**
 * The packaged CloudFormation template (`serverless package`, offline) gives every
 * node its own function, bucket and role, and each node's role reaches only its own
 * bucket and its own audit and replay rows. Checked for the default 3-node federation
 * and for a 5-node one made by configuration alone.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, string[]>> };

function packageTemplate(nodeIds: string[], threshold: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-pkg-'));
  const configFile = path.join(dir, 'fedkms.config.json');
  writeFileSync(configFile, JSON.stringify({ threshold, nodes: nodeIds.map((id) => ({ id })) }));
  const env: NodeJS.ProcessEnv = { ...process.env, FEDKMS_CONFIG: configFile, FEDKMS_BUILD_DIR: path.relative(ROOT, path.join(dir, 'build')) };
  delete env['FEDKMS_LOCAL_STACK'];
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/serverless/bin/serverless.js'), 'package', '--stage', 'ci', '--package', path.join(dir, 'out')], { cwd: ROOT, env, stdio: 'pipe' });
  return JSON.parse(readFileSync(path.join(dir, 'out', 'cloudformation-template-update-stack.json'), 'utf8')) as { Resources: Record<string, { Type: string; Properties: any }> };
}

const logical = (id: string) => id.replace(/(^|-)([a-z0-9])/g, (_m, _d, c: string) => c.toUpperCase());
const statementsOf = (t: ReturnType<typeof packageTemplate>, role: string): Statement[] =>
  t.Resources[role]!.Properties.Policies.flatMap((p: { PolicyDocument: { Statement: Statement[] } }) => p.PolicyDocument.Statement);
const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);

describe.each([
  [['node1', 'node2', 'node3'], 2],
  [['node1', 'node2', 'node3', 'node4', 'node5'], 3],
])('packaged template for %j', (nodeIds, threshold) => {
  let t: ReturnType<typeof packageTemplate>;
  beforeAll(() => {
    t = packageTemplate(nodeIds, threshold);
  }, 120_000);

  it('has one function, one bucket, one KMS key and one role per node', () => {
    for (const id of nodeIds) {
      const L = logical(id);
      expect(t.Resources[`${L}LambdaFunction`]?.Type).toBe('AWS::Lambda::Function');
      expect(t.Resources[`FragmentBucket${L}`]?.Type).toBe('AWS::S3::Bucket');
      expect(t.Resources[`FragmentKey${L}`]?.Type).toBe('AWS::KMS::Key');
      expect(t.Resources[`${L}IamRoleLambdaExecution`]?.Type).toBe('AWS::IAM::Role');
      expect(t.Resources[`${L}LambdaFunction`]!.Properties.Role).toEqual({ 'Fn::GetAtt': [`${L}IamRoleLambdaExecution`, 'Arn'] });
    }
  });

  it("lets each node's role reach only its own bucket and its own table rows", () => {
    for (const id of nodeIds) {
      const L = logical(id);
      const st = statementsOf(t, `${L}IamRoleLambdaExecution`);
      const s3 = st.filter((s) => actions(s).some((a) => a.startsWith('s3:')));
      expect(s3.length).toBeGreaterThan(0);
      for (const s of s3) {
        const res = JSON.stringify(s.Resource);
        expect(res).toContain(`FragmentBucket${L}`);
        for (const other of nodeIds.filter((o) => o !== id)) expect(res).not.toContain(`FragmentBucket${logical(other)}"`);
        expect(res).not.toMatch(/"\*"|arn:aws:s3:::\*/);
      }
      const ddb = st.filter((s) => actions(s).some((a) => a.startsWith('dynamodb:')));
      for (const s of ddb) {
        const keys = Object.values(s.Condition ?? {}).flatMap((c) => c['dynamodb:LeadingKeys'] ?? []);
        expect(keys.length).toBeGreaterThan(0);
        for (const k of keys) expect(k.startsWith(`node#${id}#`) || k.startsWith(`${id}#`)).toBe(true);
      }
      for (const s of st) {
        expect(actions(s).every((a) => a !== '*' && !a.endsWith(':*'))).toBe(true);
        expect(JSON.stringify(s.Resource)).not.toBe('"*"');
      }
    }
  });

  it('gives the coordinator no bucket access at all', () => {
    const st = statementsOf(t, 'ReconstructIamRoleLambdaExecution');
    expect(st.flatMap(actions).filter((a) => a.startsWith('s3:') || a.startsWith('kms:'))).toEqual([]);
    const nodes = t.Resources['ReconstructLambdaFunction']!.Properties.Environment.Variables.FEDKMS_NODES;
    expect(JSON.stringify(nodes)).toContain(`/nodes/${nodeIds.at(-1)}`);
  });

  it('gives the dashboard no AWS permission but its logs, and only the coordinator knows its key', () => {
    const st = statementsOf(t, 'DashboardIamRoleLambdaExecution');
    expect(st.flatMap(actions).filter((a) => !a.startsWith('logs:'))).toEqual([]);
    const vars = t.Resources['DashboardLambdaFunction']!.Properties.Environment.Variables;
    // Its own identity and viewer token: never the coordinator's signing key, a node list or a table.
    expect(Object.keys(vars).sort()).toEqual(['COORDINATOR_URL', 'DASHBOARD_SIGNING_KEY', 'DASHBOARD_TOKEN', 'FEDKMS_STAGE', 'FEDKMS_VERSION', 'POWERTOOLS_LOG_LEVEL']);
    expect(vars.DASHBOARD_SIGNING_KEY).toMatch(/^\{\{resolve:secretsmanager:fedkms\/ci\/dashboard:/);
    expect(JSON.stringify(vars.COORDINATOR_URL)).toContain('execute-api');
    const coordinator = t.Resources['ReconstructLambdaFunction']!.Properties.Environment.Variables;
    expect(coordinator.DASHBOARD_PUBLIC_KEY).toMatch(/^\{\{resolve:secretsmanager:fedkms\/ci\/dashboard:/);
    for (const id of nodeIds) {
      expect(t.Resources[`${logical(id)}LambdaFunction`]!.Properties.Environment.Variables.DASHBOARD_PUBLIC_KEY).toBeUndefined();
    }
  });

  it('has no wildcard action or resource in any role, and no key administration beyond named actions', () => {
    const roles = Object.entries(t.Resources).filter(([, r]) => r.Type === 'AWS::IAM::Role');
    // One per function, plus the framework's default role (no function uses it; it holds only log permissions).
    expect(roles.length).toBe(nodeIds.length + 3);
    for (const [name] of roles) {
      for (const s of statementsOf(t, name)) {
        expect(actions(s).filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
        const res = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
        expect(res.filter((r) => r === '*')).toEqual([]);
      }
    }
    // In a KMS key policy, Resource "*" means "this key"; the actions are still named one by one.
    for (const id of nodeIds) {
      for (const s of t.Resources[`FragmentKey${logical(id)}`]!.Properties.KeyPolicy.Statement as Statement[]) {
        expect(actions(s).filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
      }
    }
  });

  it("keeps the coordinator to its own replay rows and the approvals table, and gives nodes the first administrator's public key only", () => {
    const st = statementsOf(t, 'ReconstructIamRoleLambdaExecution');
    const replay = st.filter((s) => JSON.stringify(s.Resource).includes('-replay'));
    expect(replay).toHaveLength(1);
    expect(actions(replay[0]!)).toEqual(['dynamodb:PutItem']);
    expect(Object.values(replay[0]!.Condition ?? {}).flatMap((c) => c['dynamodb:LeadingKeys'] ?? [])).toEqual(['coordinator#*']);
    expect(JSON.stringify(st)).toContain('-approvals');
    const vars = t.Resources['ReconstructLambdaFunction']!.Properties.Environment.Variables;
    expect(vars.API_TOKEN).toBeUndefined();
    for (const id of nodeIds) {
      const nv = t.Resources[`${logical(id)}LambdaFunction`]!.Properties.Environment.Variables;
      expect(nv.FEDKMS_ADMIN_PUBLIC_KEY).toMatch(/^\{\{resolve:secretsmanager:fedkms\/ci\/admin:SecretString:publicKey\}\}$/);
      expect(JSON.stringify(nv)).not.toMatch(/admin:SecretString:privateKey/);
    }
  });

  it('keeps secrets out of the template: only Secrets Manager references', () => {
    for (const id of nodeIds) {
      const vars = t.Resources[`${logical(id)}LambdaFunction`]!.Properties.Environment.Variables;
      expect(vars.NODE_WRAP_KEY).toMatch(/^\{\{resolve:secretsmanager:fedkms\/ci\/.+\}\}$/);
      expect(vars.NODE_X25519_PRIVATE).toMatch(/^\{\{resolve:secretsmanager:/);
    }
  });
});

/** A 2-of-3 config file with `extra` settings, for the renderer alone. */
function withConfig(extra: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedkms-cfg-'));
  const file = path.join(dir, 'fedkms.config.json');
  writeFileSync(file, JSON.stringify({ threshold: 2, nodes: [{ id: 'node1' }, { id: 'node2' }, { id: 'node3' }], ...extra }));
  return file;
}

describe('API Gateway authorizer option (defence in depth)', () => {
  // The renderer alone, without packaging: the option only changes route declarations.
  const { render } = require('../../deploy/federation.cjs') as { render: (stage: string, file: string) => { functions: Record<string, { events: { httpApi: { path: string; authorizer?: { type: string } } }[] }> } };

  it('puts an IAM authorizer on every coordinator route but /status when asked', () => {
    const events = render('ci', withConfig({ apiAuthorizer: 'aws_iam' })).functions['reconstruct']!.events.map((e) => e.httpApi);
    // /status is public; the /federation routes take the dashboard's own signature, and it has no IAM identity.
    for (const e of events) expect(e.authorizer).toEqual(e.path === '/status' || e.path.startsWith('/federation/') ? undefined : { type: 'aws_iam' });
    expect(render('ci', withConfig({})).functions['reconstruct']!.events.every((e) => e.httpApi.authorizer === undefined)).toBe(true);
  });

  it('refuses an unknown authorizer kind', () => {
    expect(() => render('ci', withConfig({ apiAuthorizer: 'jwt' }))).toThrow(/apiAuthorizer/);
  });
});

describe('bounded concurrency', () => {
  const { render } = require('../../deploy/federation.cjs') as { render: (stage: string, file: string) => { functions: Record<string, { reservedConcurrency?: number }> } };

  it('reserves every function its configured concurrency, a node more than the coordinator by default', () => {
    const fns = render('ci', withConfig({})).functions;
    expect(Object.values(fns).every((f) => Number.isInteger(f.reservedConcurrency) && f.reservedConcurrency! >= 1)).toBe(true);
    expect(fns['node1']!.reservedConcurrency).toBeGreaterThan(fns['reconstruct']!.reservedConcurrency!);
    const custom = render('ci', withConfig({ concurrency: { coordinator: 10, node: 12 } })).functions;
    expect([custom['reconstruct']!.reservedConcurrency, custom['node2']!.reservedConcurrency, custom['dashboard']!.reservedConcurrency]).toEqual([10, 12, 2]);
  });

  it('refuses a concurrency that is not a positive integer', () => {
    expect(() => render('ci', withConfig({ concurrency: { node: 0 } }))).toThrow(/concurrency/);
    expect(() => render('ci', withConfig({ concurrency: { coordinator: 2.5 } }))).toThrow(/concurrency/);
  });
});
