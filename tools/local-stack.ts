/**
 * Starts a complete local federation: a local S3 server (s3rver) and a local DynamoDB
 * server (dynalite) on loopback, the buckets and tables, fresh dev secrets, one proxy
 * port per node, and `sls offline` serving the real handlers. Used by `npm start`,
 * the integration tests, the demo and the benchmark; every port is free-picked unless
 * given, so a test stack never clashes with a running federation.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync, createWriteStream } from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createBuckets, createTables, type TableDeclaration } from '../lib/aws/provision.js';
import { generateX25519 } from '../lib/crypto/seal.js';
import { generateSigningKey } from '../lib/crypto/request-signing.js';
import { fromB64, toB64 } from '../lib/encoding.js';
import type { ClientIdentity } from '../lib/client/signer.js';
import { NodeProxy, type ProxyMode } from './node-proxy.js';
import { Admission } from './admission.js';
import { FrontDoor, type Admissions } from './front-door.js';

export const ROOT = path.resolve(__dirname, '..');

export interface FederationConfig {
  threshold: number;
  nodes: { id: string; index?: number }[];
  requestBudgetMs?: number;
}

export interface LocalStackOptions {
  /** State folder: secrets, S3 objects, descriptor, logs. */
  dir: string;
  /** Federation config file (default fedkms.config.json). */
  configFile?: string;
  stage?: string;
  httpPort?: number;
  s3Port?: number;
  dynamoPort?: number;
  /** Keep DynamoDB on disk under dir (the long-running federation) instead of in memory (tests). */
  persist?: boolean;
  /** Override the per-node timeout of the coordinator. */
  requestBudgetMs?: number;
  /** Override every function's timeout, seconds (sls offline enforces it). */
  functionTimeoutS?: number;
  /** Rebuild and restart the functions when handlers or lib/ change (the developer's stack only). */
  watch?: boolean;
  log?: (line: string) => void;
}

export type Secrets = Record<string, Record<string, string>>;

export interface LocalStack {
  url: string;
  /** The first administrator client (`admin`), whose key signs the helpers' requests. */
  admin: ClientIdentity;
  config: FederationConfig;
  stage: string;
  s3Endpoint: string;
  dynamoEndpoint: string;
  secrets: Secrets;
  proxies: Map<string, NodeProxy>;
  /** Each function's concurrency limit and counters (admitted, refused, in flight). */
  admissions: Admissions;
  descriptorFile: string;
  logFile: string;
  /** Process ids, for benchmarks that split CPU time by process: sls offline (all functions) and the S3/DynamoDB servers. */
  pids: { offline: number; storage: number };
  bucketOf(nodeId: string): string;
  auditTable: string;
  s3(): S3Client;
  dynamo(): DynamoDBClient;
  setNode(nodeId: string, mode: ProxyMode): Promise<void>;
  stopDynamo(): Promise<void>;
  /** Requests the S3/DynamoDB servers have served so far, by operation ("s3:GET", "dynamodb:PutItem", ...). */
  storageStats(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

interface RenderedTemplate {
  functions: Record<string, { reservedConcurrency?: number }>;
  resources: { Resources: Record<string, { Type: string; Properties: unknown }> };
}

/** The deployment template (deploy/federation.cjs) for this stage: the local stack builds what it declares. */
function template(stage: string, configFile: string): RenderedTemplate {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { render } = require('../deploy/federation.cjs') as { render: (stage: string, configFile: string) => RenderedTemplate };
  return render(stage, configFile);
}

/** The DynamoDB tables of the template. */
function declaredTables(t: RenderedTemplate): TableDeclaration[] {
  return Object.values(t.resources.Resources)
    .filter((r) => r.Type === 'AWS::DynamoDB::Table')
    .map((r) => r.Properties as TableDeclaration);
}

/** Every function's reserved concurrency, enforced locally by the front doors. */
function admissionsOf(t: RenderedTemplate, nodeIds: string[]): Admissions {
  const limit = (fn: string) => {
    const c = t.functions[fn]?.reservedConcurrency;
    if (!c) throw new Error(`the template reserves no concurrency for ${fn}`);
    return new Admission(fn, c);
  };
  return { coordinator: limit('reconstruct'), dashboard: limit('dashboard'), nodes: new Map(nodeIds.map((id) => [id, limit(id)])) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Dev secrets: node wrapping keys and X25519 keys, the coordinator's signing key, the dashboard's key and viewer token, the first administrator's key pair. */
export function generateSecrets(nodeIds: string[]): Secrets {
  const out: Secrets = {};
  for (const id of nodeIds) {
    const x = generateX25519();
    const sk = generateSigningKey();
    out[id] = {
      wrapKey: toB64(randomBytes(32)),
      x25519Private: toB64(x.privateKey),
      x25519Public: toB64(x.publicKey),
      signingPrivate: toB64(sk.privateKey),
      signingPublic: toB64(sk.publicKey),
    };
  }
  const sk = generateSigningKey();
  out['coordinator'] = { privateKey: toB64(sk.privateKey), publicKey: toB64(sk.publicKey) };
  // The dashboard's read-only signing identity and its viewer token (not the API token).
  const dk = generateSigningKey();
  out['dashboard'] = { privateKey: toB64(dk.privateKey), publicKey: toB64(dk.publicKey), viewerToken: randomBytes(24).toString('base64url') };
  // The first administrator client. In AWS only its public key is a secret of the stack;
  // the private key stays with the operator (scripts/aws-bootstrap.ts).
  const ak = generateSigningKey();
  out['admin'] = { privateKey: toB64(ak.privateKey), publicKey: toB64(ak.publicKey) };
  return out;
}

function loadOrCreateSecrets(file: string, nodeIds: string[]): Secrets {
  const fresh = generateSecrets(nodeIds);
  const old = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Secrets) : {};
  // Keep every existing value (wrapping keys protect stored fragments); add only what is missing.
  const s: Secrets = Object.fromEntries(Object.entries(fresh).map(([name, v]) => [name, { ...v, ...(old[name] ?? {}) }]));
  writeFileSync(file, JSON.stringify(s, null, 2), { mode: 0o600 });
  return s;
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${what}: process exited with code ${child.exitCode}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms`);
}

export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const log = opts.log ?? (() => undefined);
  const stage = opts.stage ?? 'local';
  const dir = path.resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const configFile = path.resolve(opts.configFile ?? path.join(ROOT, 'fedkms.config.json'));
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as FederationConfig;
  const nodeIds = config.nodes.map((n) => n.id);
  const secrets = loadOrCreateSecrets(path.join(dir, 'secrets.json'), nodeIds);
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };

  try {
    // Local S3 (s3rver, objects on disk under dir/s3 so tests can tamper with them) and
    // local DynamoDB (dynalite), in a child process of their own.
    const servers = spawn(process.execPath, [path.join(ROOT, 'tools/local-servers.cjs'), JSON.stringify({ dir, s3Port: opts.s3Port ?? 0, dynamoPort: opts.dynamoPort ?? 0, persist: !!opts.persist })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    cleanups.push(async () => {
      if (servers.exitCode !== null) return;
      const exited = new Promise((r) => servers.once('exit', r));
      servers.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    });
    const lines = readline.createInterface({ input: servers.stdout! });
    const ports = await new Promise<{ s3Port: number; dynamoPort: number }>((resolve, reject) => {
      servers.once('exit', (code) => reject(new Error(`local S3/DynamoDB servers exited (${code})`)));
      lines.once('line', (l) => resolve(JSON.parse(l)));
    });
    const s3Endpoint = `http://127.0.0.1:${ports.s3Port}`;
    const dynamoEndpoint = `http://127.0.0.1:${ports.dynamoPort}`;
    const stopDynamo = async () => {
      const stopped = new Promise<void>((r) => lines.once('line', () => r()));
      servers.stdin!.write('stop-dynamo\n');
      await stopped;
    };
    const storageStats = () =>
      new Promise<Record<string, number>>((resolve, reject) => {
        // A dead servers process never answers: fail instead of waiting forever.
        const onExit = () => {
          lines.off('line', onLine);
          reject(new Error(`local S3/DynamoDB servers exited (${servers.exitCode ?? servers.signalCode})`));
        };
        // Skip any other line (e.g. a stop-dynamo answer) until the stats line.
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

    const region = 'us-east-1';
    // s3rver knows one account, S3RVER; dynalite accepts any credentials.
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    const s3Client = new S3Client({ region, endpoint: s3Endpoint, forcePathStyle: true, credentials, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    const dynamoClient = new DynamoDBClient({ region, endpoint: dynamoEndpoint, credentials });
    cleanups.push(async () => {
      s3Client.destroy();
      dynamoClient.destroy();
    });
    const s3 = () => s3Client;
    const dynamo = () => dynamoClient;
    const bucketOf = (id: string) => `fedkms-${stage}-${id}`;
    const auditTable = `fedkms-${stage}-audit`;
    await createBuckets(s3(), nodeIds.map(bucketOf));
    const rendered = template(stage, configFile);
    await createTables(dynamo(), declaredTables(rendered));
    log(`local S3 (s3rver) at ${s3Endpoint}, local DynamoDB (dynalite) at ${dynamoEndpoint}`);

    // One proxy per node in front of sls offline: each node gets its own loopback endpoint.
    // The public port is the front door (admission, as API Gateway + reserved concurrency);
    // sls offline listens on a private port behind it.
    const admissions = admissionsOf(rendered, nodeIds);
    const offlinePort = await freePort();
    const lambdaPort = await freePort();
    const frontDoor = new FrontDoor(`http://127.0.0.1:${offlinePort}`, admissions);
    const httpPort = await frontDoor.start(opts.httpPort ?? 0);
    cleanups.push(() => frontDoor.close());
    const proxies = new Map<string, NodeProxy>();
    for (const id of nodeIds) {
      const p = new NodeProxy(id, `http://127.0.0.1:${offlinePort}/nodes/${id}`, admissions.nodes.get(id));
      await p.start();
      proxies.set(id, p);
      cleanups.push(() => p.close());
    }

    const descriptorFile = path.join(dir, 'stack.json');
    const descriptor = {
      stage,
      url: `http://127.0.0.1:${httpPort}`,
      s3Endpoint,
      dynamoEndpoint,
      nodeUrls: Object.fromEntries([...proxies].map(([id, p]) => [id, p.url])),
      secrets,
    };
    writeFileSync(descriptorFile, JSON.stringify(descriptor, null, 2), { mode: 0o600 });

    const env: NodeJS.ProcessEnv = { ...process.env, FEDKMS_LOCAL_STACK: descriptorFile, FEDKMS_CONFIG: configFile, FEDKMS_STAGE: stage, FEDKMS_BUILD_DIR: path.relative(ROOT, path.join(dir, 'build')) };
    if (opts.functionTimeoutS) env['FEDKMS_FUNCTION_TIMEOUT'] = String(opts.functionTimeoutS);
    // A path that never exists: a test stack must not restart because someone saved a file.
    env['FEDKMS_WATCH_PATTERN'] = opts.watch ? './{functions,lib}/**/*.ts' : './.fedkms-no-watch';
    if (opts.requestBudgetMs) {
      const cfgCopy = path.join(dir, 'fedkms.config.json');
      writeFileSync(cfgCopy, JSON.stringify({ ...config, requestBudgetMs: opts.requestBudgetMs }));
      env['FEDKMS_CONFIG'] = cfgCopy;
    }
    const logFile = path.join(dir, 'offline.log');
    const out = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'node_modules/serverless/bin/serverless.js'), 'offline', 'start', '--stage', stage, '--host', '127.0.0.1', '--httpPort', String(offlinePort), '--lambdaPort', String(lambdaPort),
        // Idle workers live as long as an idle Lambda environment typically does (minutes), not sls offline's 60 s.
        '--terminateIdleLambdaTime', '600'],
      // Same process group as the caller: Ctrl-C in a terminal reaches sls offline too.
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    cleanups.push(async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const url = descriptor.url;
    await waitFor('sls offline', async () => (await fetch(`${url}/status`)).status === 200, 90_000, child);
    log(`sls offline on ${url} (log: ${logFile})`);

    return {
      url,
      admin: { name: 'admin', privateKey: fromB64(secrets['admin']!['privateKey']!) },
      config,
      stage,
      s3Endpoint,
      dynamoEndpoint,
      secrets,
      proxies,
      admissions,
      descriptorFile,
      logFile,
      pids: { offline: child.pid!, storage: servers.pid! },
      bucketOf,
      auditTable,
      s3,
      dynamo,
      setNode: async (id, mode) => {
        const p = proxies.get(id);
        if (!p) throw new Error(`no node ${id}`);
        await p.setMode(mode);
      },
      stopDynamo,
      storageStats,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
