/**
 * Starts a complete local federation as separate operators: every node is its own operator
 * (its own storage process with S3 and DynamoDB servers, its own data directory and secret,
 * its own `sls offline` serving its own stack), and so is the coordinator (with the
 * dashboard). Each node's public endpoint is a loopback proxy (its API Gateway: admission
 * and fault injection). Once all are up, the first administrator forms the federation by
 * signing the first membership document from the nodes' identity documents, exactly as
 * `npx fedkms nodes add` does against AWS. Used by `npm start`, `npm run node`, the tests,
 * the demo and the benchmarks; every port is free-picked unless given.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { generateX25519 } from '../lib/crypto/seal.js';
import { generateSigningKey } from '../lib/crypto/request-signing.js';
import { fromB64, toB64 } from '../lib/encoding.js';
import type { ClientIdentity } from '../lib/client/signer.js';
import { FedkmsClient } from '../lib/client/api.js';
import { addNodes, listNodes } from '../lib/client/membership.js';
import { NodeProxy, type ProxyMode } from './node-proxy.js';
import { Admission } from './admission.js';
import { FrontDoor, type Admissions } from './front-door.js';
import { OperatorUnit, ROOT, freePort, portFree, waitFor } from './operator.js';

export { ROOT };

export interface FederationConfig {
  threshold: number;
  nodes: { id: string }[];
  requestBudgetMs?: number;
  concurrency?: Partial<Record<'coordinator' | 'node' | 'dashboard', number>>;
}

export interface LocalStackOptions {
  /** State folder: one sub-folder per operator (nodes/<id>, coordinator), the administrator key, ports. */
  dir: string;
  /** Federation config file (default fedkms.config.json): the first members and the threshold. */
  configFile?: string;
  stage?: string;
  /** The coordinator's public port. */
  httpPort?: number;
  /** Keep DynamoDB on disk (the long-running federation) instead of in memory (tests), and reuse ports across restarts. */
  persist?: boolean;
  /** Override the request budget of the coordinator (ms). */
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
  secrets: Secrets;
  /** Each node's public endpoint. */
  proxies: Map<string, NodeProxy>;
  /** Each operator's processes and storage, by node id and "coordinator". */
  units: Map<string, OperatorUnit>;
  /** Each function's concurrency limit and counters (admitted, refused, in flight). */
  admissions: Admissions;
  /** The coordinator's sls offline log. */
  logFile: string;
  /** Process ids, for benchmarks that split CPU time by process: every sls offline, every storage process. */
  pids: { offline: number[]; storage: number[] };
  bucketOf(nodeId: string): string;
  /** The coordinator's audit table; a node's is `auditTableOf(id)`. */
  auditTable: string;
  auditTableOf(unit: string): string;
  /** A node's S3 (its own server). */
  s3(nodeId: string): S3Client;
  /** An operator's DynamoDB (default: the coordinator's). */
  dynamo(unit?: string): DynamoDBClient;
  setNode(nodeId: string, mode: ProxyMode): Promise<void>;
  /** Kill a node's process (a crash), and start it again. */
  crashNode(nodeId: string): Promise<void>;
  restartNode(nodeId: string): Promise<void>;
  /** Start one more node as a new operator (not yet a member: add its identity document). */
  addOperator(nodeId: string): Promise<{ url: string; identity: unknown }>;
  /** Take an operator's DynamoDB away (default: every operator's). */
  stopDynamo(unit?: string): Promise<void>;
  /** Requests every operator's S3/DynamoDB servers have served, by operation, summed. */
  storageStats(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

const ID = /^[a-z0-9-]{1,32}$/;

/** Dev secrets: node wrapping and identity keys, the coordinator's and dashboard's keys, the viewer token, the first administrator's key pair. */
export function generateSecrets(nodeIds: string[]): Secrets {
  const out: Secrets = {};
  for (const id of nodeIds) out[id] = nodeSecret();
  const sk = generateSigningKey();
  out['coordinator'] = { privateKey: toB64(sk.privateKey), publicKey: toB64(sk.publicKey) };
  // The dashboard's read-only signing identity and its viewer token (not the API token).
  const dk = generateSigningKey();
  out['dashboard'] = { privateKey: toB64(dk.privateKey), publicKey: toB64(dk.publicKey), viewerToken: randomBytes(24).toString('base64url') };
  // The first administrator client: only its public key goes to the nodes.
  const ak = generateSigningKey();
  out['admin'] = { privateKey: toB64(ak.privateKey), publicKey: toB64(ak.publicKey) };
  return out;
}

/** One node's secret: its wrapping key and its X25519 and Ed25519 identity keys. */
export function nodeSecret(): Record<string, string> {
  const x = generateX25519();
  const sk = generateSigningKey();
  return { wrapKey: toB64(randomBytes(32)), x25519Private: toB64(x.privateKey), x25519Public: toB64(x.publicKey), signingPrivate: toB64(sk.privateKey), signingPublic: toB64(sk.publicKey) };
}

/** A JSON file of secrets, created once with `make` and then kept (wrapping keys protect stored data). */
function keptSecret(file: string, make: () => Record<string, string>): Record<string, string> {
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  const s = make();
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(s, null, 2), { mode: 0o600 });
  return s;
}

/** Ports remembered across restarts of a persistent federation, so endpoints in membership documents stay valid. */
class PortBook {
  private ports: Record<string, number>;
  constructor(private readonly file: string | undefined) {
    this.ports = file && existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, number>) : {};
  }
  async take(name: string, wanted?: number): Promise<number> {
    // Nothing to remember (a test stack): port 0, so the listener takes a free port atomically.
    if (!this.file) return wanted ?? 0;
    const remembered = this.ports[name];
    const port = wanted ?? (remembered && (await portFree(remembered)) ? remembered : await freePort());
    if (this.file) {
      this.ports[name] = port;
      writeFileSync(this.file, JSON.stringify(this.ports, null, 2));
    }
    return port;
  }
}

/** What every node operator of a local federation is told: the public keys it trusts. */
export interface PublicInfo {
  stage: string;
  coordinatorPublicKey: string;
  adminPublicKey: string;
  concurrency: number;
}

/**
 * One node operator, started on its own: secret (kept in its data directory), storage process,
 * sls offline and public endpoint (a proxy with its admission limit). `npm start` starts one per
 * configured node; `npm run node` starts one more, as a new operator joining would.
 */
export async function startNodeOperator(o: {
  id: string; dir: string; stage: string; publicInfo: PublicInfo; admission: Admission; port: number;
  persist?: boolean | undefined; watch?: boolean | undefined; functionTimeoutS?: number | undefined;
  onProxy?: (p: NodeProxy) => void; onCleanup: (c: () => Promise<void>) => void;
}): Promise<{ unit: OperatorUnit; proxy: NodeProxy; secret: Record<string, string> }> {
  const secret = keptSecret(path.join(o.dir, 'secrets.json'), nodeSecret);
  const proxy = new NodeProxy(o.id, 'http://127.0.0.1:9', o.admission);
  proxy.port = o.port;
  await proxy.start();
  o.onProxy?.(proxy);
  o.onCleanup(() => proxy.close());
  const unit = new OperatorUnit({
    kind: 'node', name: o.id, dir: o.dir, stage: o.stage, persist: o.persist, watch: o.watch, functionTimeoutS: o.functionTimeoutS,
    operator: { id: o.id, coordinatorPublicKey: o.publicInfo.coordinatorPublicKey, adminPublicKey: o.publicInfo.adminPublicKey, concurrency: o.publicInfo.concurrency },
    local: { endpoint: proxy.url, secretsFile: path.join(o.dir, 'secrets.json') },
  });
  o.onCleanup(() => unit.stop());
  await unit.startStorage();
  await unit.provision();
  await unit.startFunctions(`/nodes/${o.id}/status`, (st) => st === 200);
  proxy.retarget(`http://127.0.0.1:${unit.offlinePort}/nodes/${o.id}`);
  return { unit, proxy, secret };
}

export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  const log = opts.log ?? (() => undefined);
  const stage = opts.stage ?? 'local';
  const dir = path.resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const configFile = path.resolve(opts.configFile ?? path.join(ROOT, 'fedkms.config.json'));
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as FederationConfig;
  const nodeIds = config.nodes.map((n) => n.id);
  if (nodeIds.length < 2 || nodeIds.some((id) => !ID.test(id)) || new Set(nodeIds).size !== nodeIds.length) throw new Error(`${configFile}: need at least two nodes with unique ids`);
  const concurrency = { coordinator: 4, node: 6, dashboard: 2, ...(config.concurrency ?? {}) };
  const requestBudgetMs = opts.requestBudgetMs ?? config.requestBudgetMs ?? 20000;
  const ports = new PortBook(opts.persist ? path.join(dir, 'ports.json') : undefined);

  // Each operator's secret lives in its own data directory; the administrator's key in none of them.
  const secrets: Secrets = {};
  const adminKey = keptSecret(path.join(dir, 'admin.json'), () => {
    const k = generateSigningKey();
    return { privateKey: toB64(k.privateKey), publicKey: toB64(k.publicKey) };
  });
  secrets['admin'] = adminKey;
  const coordDir = path.join(dir, 'coordinator');
  const coordKey = keptSecret(path.join(coordDir, 'secrets.json'), () => {
    const k = generateSigningKey();
    return { signingPrivate: toB64(k.privateKey), publicKey: toB64(k.publicKey) };
  });
  secrets['coordinator'] = { privateKey: coordKey['signingPrivate']!, publicKey: coordKey['publicKey']! };
  const dashKey = keptSecret(path.join(coordDir, 'dashboard-secrets.json'), () => {
    const k = generateSigningKey();
    return { signingPrivate: toB64(k.privateKey), publicKey: toB64(k.publicKey), viewerToken: randomBytes(24).toString('base64url') };
  });
  secrets['dashboard'] = { privateKey: dashKey['signingPrivate']!, publicKey: dashKey['publicKey']!, viewerToken: dashKey['viewerToken']! };
  // What every operator may know: the public keys a node trusts. `npm run node` reads it.
  const publicInfo: PublicInfo = { stage, coordinatorPublicKey: coordKey['publicKey']!, adminPublicKey: adminKey['publicKey']!, concurrency: concurrency.node };
  writeFileSync(path.join(dir, 'federation-public.json'), JSON.stringify(publicInfo, null, 2));

  const units = new Map<string, OperatorUnit>();
  const proxies = new Map<string, NodeProxy>();
  const admissions: Admissions = { coordinator: new Admission('reconstruct', concurrency.coordinator), dashboard: new Admission('dashboard', concurrency.dashboard), nodes: new Map() };
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };

  /** A node operator: its secret, storage and functions, behind its own proxy (the public endpoint). */
  const startNode = async (id: string) => {
    const admission = new Admission(id, concurrency.node);
    admissions.nodes.set(id, admission);
    const op = await startNodeOperator({
      id, dir: path.join(dir, 'nodes', id), stage, publicInfo, admission, port: await ports.take(id), persist: opts.persist, watch: opts.watch, functionTimeoutS: opts.functionTimeoutS,
      onProxy: (p) => proxies.set(id, p),
      onCleanup: (c) => cleanups.push(c),
    });
    secrets[id] = op.secret;
    units.set(id, op.unit);
    log(`${id}: own storage (S3 ${op.unit.s3Endpoint}, DynamoDB ${op.unit.dynamoEndpoint}), own sls offline, endpoint ${op.proxy.url}`);
    return op;
  };

  try {
    // The coordinator's public endpoint first: its port is the federation's URL.
    const frontDoor = new FrontDoor('http://127.0.0.1:9', admissions);
    const coordPort = await frontDoor.start(await ports.take('coordinator', opts.httpPort));
    cleanups.push(() => frontDoor.close());
    const url = `http://127.0.0.1:${coordPort}`;
    // Nodes and the coordinator start side by side: on 2 cores their sls offline builds overlap.
    const coordinator = new OperatorUnit({
      kind: 'coordinator', name: 'coordinator', dir: coordDir, stage, persist: opts.persist, watch: opts.watch, functionTimeoutS: opts.functionTimeoutS,
      operator: { dashboardPublicKey: dashKey['publicKey'], concurrency, requestBudgetMs, seeds: [] as { id: string; url: string }[] },
      local: { url, secretsFile: path.join(coordDir, 'secrets.json'), dashboardSecretsFile: path.join(coordDir, 'dashboard-secrets.json') },
    });
    units.set('coordinator', coordinator);
    cleanups.push(() => coordinator.stop());

    // Seeds: where the coordinator first asks for the membership. Proxy ports are known before any node starts.
    const seeds: { id: string; url: string }[] = [];
    const started = nodeIds.map(async (id) => {
      const r = await startNode(id);
      return r;
    });
    // The node proxies listen synchronously early in startNode; wait for their ports, then start the coordinator.
    await waitFor('node endpoints', async () => nodeIds.every((id) => proxies.has(id)), 30_000);
    for (const id of nodeIds) seeds.push({ id, url: proxies.get(id)!.url });
    coordinator.spec.operator['seeds'] = seeds;
    const coordStarted = (async () => {
      await coordinator.startStorage();
      await coordinator.provision();
      // Any answer from the function means it runs; before the membership exists /status is a 503.
      await coordinator.startFunctions('/status', (st) => st === 200 || st === 503);
      frontDoor.retarget(`http://127.0.0.1:${coordinator.offlinePort}`);
    })();
    await Promise.all([...started, coordStarted]);
    log(`coordinator: own storage (DynamoDB ${coordinator.dynamoEndpoint}), own sls offline, ${url}`);

    const admin: ClientIdentity = { name: 'admin', privateKey: fromB64(adminKey['privateKey']!) };
    // Form the federation the way an administrator does: identity documents in, a signed membership out.
    const client = new FedkmsClient(url, admin);
    const { listing } = await listNodes(client);
    if (!listing) {
      const identities = await Promise.all(nodeIds.map(async (id) => (await fetch(`${proxies.get(id)!.url}/identity`)).json()));
      const r = await addNodes(client, admin, identities, config.threshold);
      if (r.status !== 200) throw new Error(`forming the federation failed: ${r.status} ${JSON.stringify(r.body)}`);
      log(`membership version 1: ${nodeIds.join(', ')} (threshold ${config.threshold}), signed by admin`);
    }
    await waitFor('coordinator', async () => { const r = await fetch(`${url}/status`); if (r.status !== 200 && process.env['FEDKMS_DEBUG']) console.error(await r.text()); return r.status === 200; }, 120_000);

    const addOperator = async (id: string) => {
      if (!ID.test(id) || units.has(id)) throw new Error(`cannot add operator ${id}`);
      const { proxy } = await startNode(id);
      const identity = await (await fetch(`${proxy.url}/identity`)).json();
      writeFileSync(path.join(dir, 'nodes', id, 'identity.json'), JSON.stringify(identity, null, 2));
      return { url: proxy.url, identity };
    };
    const unitOf = (name: string) => {
      const u = units.get(name);
      if (!u) throw new Error(`no operator ${name}`);
      return u;
    };

    return {
      url,
      admin,
      config,
      stage,
      secrets,
      proxies,
      units,
      admissions,
      logFile: coordinator.logFile,
      get pids() {
        return { offline: [...units.values()].map((u) => u.offline?.pid).filter((p): p is number => !!p), storage: [...units.values()].map((u) => u.storage?.pid).filter((p): p is number => !!p) };
      },
      bucketOf: (id) => `fedkms-${stage}-${id}`,
      auditTable: `fedkms-${stage}-coordinator-audit`,
      auditTableOf: (name) => (name === 'coordinator' ? `fedkms-${stage}-coordinator-audit` : `fedkms-${stage}-${name}-audit`),
      s3: (id) => unitOf(id).s3(),
      dynamo: (name = 'coordinator') => unitOf(name).dynamo(),
      setNode: async (id, mode) => {
        const p = proxies.get(id);
        if (!p) throw new Error(`no node ${id}`);
        await p.setMode(mode);
      },
      crashNode: async (id) => unitOf(id).crashFunctions(),
      restartNode: async (id) => {
        const u = unitOf(id);
        await u.startFunctions(`/nodes/${id}/status`, (st) => st === 200);
        proxies.get(id)!.retarget(`http://127.0.0.1:${u.offlinePort}/nodes/${id}`);
      },
      addOperator,
      stopDynamo: async (name) => {
        for (const u of name ? [unitOf(name)] : [...units.values()]) await u.stopDynamo();
      },
      storageStats: async () => {
        const sum: Record<string, number> = {};
        for (const u of units.values()) for (const [k, v] of Object.entries(await u.storageStats())) sum[k] = (sum[k] ?? 0) + v;
        return sum;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
