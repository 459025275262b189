/**
 * One operator's part of a local federation, as its own processes: a storage process (s3rver
 * and dynalite, on its own ports and data directory) and an `sls offline` serving that
 * operator's own stack (serverless.node.yml or serverless.coordinator.yml), rendered from its
 * own operator config file. No two operators share a process, a server, a bucket or a table.
 * Development and test tooling only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createBuckets, createTables, type TableDeclaration } from '../lib/aws/provision.js';

export const ROOT = path.resolve(__dirname, '..');

export interface RenderedUnit {
  functions: Record<string, { reservedConcurrency?: number; environment?: Record<string, unknown> }>;
  resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
}

export interface UnitSpec {
  kind: 'node' | 'coordinator';
  /** The node id, or "coordinator". */
  name: string;
  /** This operator's own data directory: secrets, objects, tables, build, log. */
  dir: string;
  stage: string;
  /** The operator config file's content (deploy/examples/*.json). */
  operator: Record<string, unknown>;
  /** Local-only settings of the template (endpoint, secrets files); storage endpoints are added here. */
  local: Record<string, unknown>;
  persist?: boolean;
  watch?: boolean;
  functionTimeoutS?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether a loopback port is free now (a remembered port may have been taken meanwhile). */
export async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, child?: () => ChildProcess | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const c = child?.();
    if (c && c.exitCode !== null) throw new Error(`${what}: process exited with code ${c.exitCode}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms`);
}

async function stopChild(c: ChildProcess | undefined, graceMs: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill(signal);
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
  if (c.exitCode === null && c.signalCode === null) {
    c.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  }
}

export class OperatorUnit {
  storage?: ChildProcess;
  offline?: ChildProcess;
  s3Endpoint = '';
  dynamoEndpoint = '';
  offlinePort = 0;
  readonly logFile: string;
  readonly operatorFile: string;
  readonly localFile: string;
  private lines?: readline.Interface;
  private s3Client?: S3Client;
  private dynamoClient?: DynamoDBClient;

  constructor(readonly spec: UnitSpec) {
    mkdirSync(spec.dir, { recursive: true });
    this.logFile = path.join(spec.dir, 'offline.log');
    this.operatorFile = path.join(spec.dir, 'operator.json');
    this.localFile = path.join(spec.dir, 'local.json');
  }

  get name(): string {
    return this.spec.name;
  }

  /** The storage process: its own S3 and DynamoDB servers on free ports. */
  async startStorage(): Promise<void> {
    const { dir, persist } = this.spec;
    const servers = spawn(process.execPath, [path.join(ROOT, 'tools/local-servers.cjs'), JSON.stringify({ dir, s3Port: 0, dynamoPort: 0, persist: !!persist })], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.storage = servers;
    this.lines = readline.createInterface({ input: servers.stdout! });
    const ports = await new Promise<{ s3Port: number; dynamoPort: number }>((resolve, reject) => {
      servers.once('exit', (code) => reject(new Error(`${this.name}: local S3/DynamoDB servers exited (${code})`)));
      this.lines!.once('line', (l) => resolve(JSON.parse(l)));
    });
    this.s3Endpoint = `http://127.0.0.1:${ports.s3Port}`;
    this.dynamoEndpoint = `http://127.0.0.1:${ports.dynamoPort}`;
    writeFileSync(this.operatorFile, JSON.stringify(this.spec.operator, null, 2));
    writeFileSync(this.localFile, JSON.stringify({ ...this.spec.local, s3Endpoint: this.s3Endpoint, dynamoEndpoint: this.dynamoEndpoint }, null, 2));
  }

  /** This operator's template, as its sls offline renders it. */
  template(): RenderedUnit {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { render } = require(`../deploy/${this.spec.kind}.cjs`) as { render: (stage: string, file: string, localFile: string) => RenderedUnit };
    return render(this.spec.stage, this.operatorFile, this.localFile);
  }

  /** The buckets and tables the template declares, in this operator's own servers. */
  async provision(): Promise<void> {
    const t = this.template();
    const tables = Object.values(t.resources).filter((r) => r.Type === 'AWS::DynamoDB::Table').map((r) => r.Properties as unknown as TableDeclaration);
    await createTables(this.dynamo(), tables);
    const buckets = Object.values(t.functions).map((f) => f.environment?.['FRAGMENT_BUCKET']).filter((b): b is string => typeof b === 'string');
    if (buckets.length) await createBuckets(this.s3(), buckets);
  }

  /**
   * Start (or restart) this operator's functions under sls offline; resolves once it serves
   * `probePath`. A free port can be taken by someone else between our probe and sls offline's
   * listen (an outgoing connection's ephemeral port, another stack), and on a loaded machine
   * its esbuild child can die during the first build: in either case it starts again on fresh
   * ports, up to three times. A process that is alive but slow is given its full window.
   */
  async startFunctions(probePath: string, ready: (status: number) => boolean): Promise<void> {
    if (this.offline && this.offline.exitCode === null && this.offline.signalCode === null) return;
    for (let attempt = 1; ; attempt++) {
      const logStart = existsSync(this.logFile) ? statSync(this.logFile).size : 0;
      try {
        return await this.spawnOffline(probePath, ready);
      } catch (e) {
        const log = existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').slice(logStart) : '';
        const died = this.offline !== undefined && (this.offline.exitCode !== null || this.offline.signalCode !== null);
        if (attempt >= 3 || !(log.includes('EADDRINUSE') || died)) throw e;
        await stopChild(this.offline, 3000, 'SIGKILL');
      }
    }
  }

  private async spawnOffline(probePath: string, ready: (status: number) => boolean): Promise<void> {
    const offlinePort = await freePort();
    const lambdaPort = await freePort();
    this.offlinePort = offlinePort;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      FEDKMS_OPERATOR_CONFIG: this.operatorFile,
      FEDKMS_LOCAL_STACK: this.localFile,
      FEDKMS_STAGE: this.spec.stage,
      FEDKMS_BUILD_DIR: path.relative(ROOT, path.join(this.spec.dir, 'build')),
      // A path that never exists: a test stack must not restart because someone saved a file.
      FEDKMS_WATCH_PATTERN: this.spec.watch ? './{functions,lib}/**/*.ts' : './.fedkms-no-watch',
    };
    if (this.spec.functionTimeoutS) env['FEDKMS_FUNCTION_TIMEOUT'] = String(this.spec.functionTimeoutS);
    const out = createWriteStream(this.logFile, { flags: 'a' });
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'node_modules/serverless/bin/serverless.js'), 'offline', 'start', '--config', `serverless.${this.spec.kind}.yml`, '--stage', this.spec.stage, '--host', '127.0.0.1', '--httpPort', String(offlinePort), '--lambdaPort', String(lambdaPort),
        // Idle workers live as long as an idle Lambda environment typically does (minutes), not sls offline's 60 s.
        '--terminateIdleLambdaTime', '600'],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    this.offline = child;
    await waitFor(`${this.name} (sls offline, log ${this.logFile})`, async () => ready((await fetch(`http://127.0.0.1:${offlinePort}${probePath}`)).status), 240_000, () => child);
  }

  /** Kill this operator's functions: a crash, not a graceful stop. Storage stays, as a disk would. */
  async crashFunctions(): Promise<void> {
    await stopChild(this.offline, 3000, 'SIGKILL');
  }

  s3(): S3Client {
    this.s3Client ??= new S3Client({ region: 'us-east-1', endpoint: this.s3Endpoint, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    return this.s3Client;
  }

  dynamo(): DynamoDBClient {
    this.dynamoClient ??= new DynamoDBClient({ region: 'us-east-1', endpoint: this.dynamoEndpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    return this.dynamoClient;
  }

  /** Take this operator's DynamoDB away (fail-closed tests). */
  async stopDynamo(): Promise<void> {
    const stopped = new Promise<void>((r) => this.lines!.once('line', () => r()));
    this.storage!.stdin!.write('stop-dynamo\n');
    await stopped;
  }

  /** Requests its S3/DynamoDB servers have served, by operation. */
  storageStats(): Promise<Record<string, number>> {
    const servers = this.storage!;
    const lines = this.lines!;
    return new Promise((resolve, reject) => {
      const onExit = () => {
        lines.off('line', onLine);
        reject(new Error(`${this.name}: local S3/DynamoDB servers exited`));
      };
      const onLine = (l: string) => {
        const stats = (JSON.parse(l) as { stats?: Record<string, number> }).stats;
        if (!stats) return;
        lines.off('line', onLine);
        servers.off('exit', onExit);
        resolve(stats);
      };
      if (servers.exitCode !== null || servers.signalCode !== null) return onExit();
      servers.once('exit', onExit);
      lines.on('line', onLine);
      servers.stdin!.write('stats\n');
    });
  }

  async stop(): Promise<void> {
    await stopChild(this.offline, 5000);
    await stopChild(this.storage, 3000);
    this.s3Client?.destroy();
    this.dynamoClient?.destroy();
  }
}
