/** Which federation and identity a command talks to, and the per-node progress probes. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FedkmsClient, probeAll, type NodeProbe } from '../../lib/client/api.js';
import { identityFrom, type ClientIdentity } from '../../lib/client/signer.js';
import { UsageError, type Values } from './args.js';
import { err, ms, nodeLabel, progress } from './output.js';

export interface Target {
  client: FedkmsClient;
  url: string;
  /** The client identity, when one is configured (approvals are signed with it). */
  identity?: ClientIdentity;
  nodes: Record<string, string>;
  /** Node identity keys to pin: each fragment must be signed by its node (FEDKMS_NODE_KEYS="id=key,...", or the federation file). */
  nodeKeys?: Record<string, string>;
  /**
   * Administrator public keys this client trusts (`adminKeys` in the federation file): node keys
   * are then pinned from the membership document, once its signature checks against one of them.
   */
  adminKeys?: Record<string, string>;
}

/** What every command is handed: its parsed options, and the federation, resolved only when asked for. */
export interface Ctx {
  json: boolean;
  values: Values;
  target: () => Target;
}

export const str = (v: Values, name: string): string | undefined => (typeof v[name] === 'string' ? (v[name] as string) : undefined);

function readFederationFile(file: string): { url?: string; client?: { name?: string; privateKey?: string }; nodes?: Record<string, string>; nodeKeys?: Record<string, string>; adminKeys?: Record<string, string> } {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new UsageError(`cannot read the federation file ${file}`);
  }
}

function parseNodeList(items: string[]): Record<string, string> {
  const nodes: Record<string, string> = {};
  for (const item of items) {
    const m = /^([a-z0-9-]{1,32})=(https?:\/\/\S+)$/.exec(item.trim());
    if (!m) throw new UsageError(`--node expects ID=URL, got "${item}"`);
    nodes[m[1]!] = m[2]!;
  }
  return nodes;
}

/** Flags, then environment, then the federation file (explicit, or the one `npm start` writes). */
export function resolveTarget(v: Values, json: boolean): Target {
  const env = process.env;
  const explicit = str(v, 'federation') ?? env['FEDKMS_FEDERATION'];
  const defaults = [path.resolve('.local', 'federation.json'), path.resolve(__dirname, '..', '..', '.local', 'federation.json')];
  const file = explicit ?? defaults.find((f) => existsSync(f));
  const fed = file ? readFederationFile(file) : {};
  const url = str(v, 'url') ?? env['FEDKMS_URL'] ?? fed.url;
  const name = str(v, 'client') ?? env['FEDKMS_CLIENT'] ?? fed.client?.name;
  let key = env['FEDKMS_CLIENT_KEY'] ?? fed.client?.privateKey;
  const keyFile = str(v, 'key');
  if (keyFile) {
    try {
      key = readFileSync(keyFile, 'utf8').trim();
    } catch {
      throw new UsageError(`cannot read the key file ${keyFile}`);
    }
  }
  let identity: ClientIdentity | undefined;
  try {
    identity = name && key ? identityFrom({ name, privateKey: key }) : undefined;
  } catch {
    throw new UsageError('the client key must be a 32-byte Ed25519 private key in base64');
  }
  if (!url) throw new UsageError('no federation: pass --url, set FEDKMS_URL, or start one with `npm start`');
  if (!/^https?:\/\//.test(url)) throw new UsageError(`not an http(s) URL: ${url}`);
  const timeout = str(v, 'timeout');
  if (timeout !== undefined && !(Number.isInteger(Number(timeout)) && Number(timeout) > 0)) throw new UsageError('--timeout must be a positive integer (ms)');
  const nodes = {
    ...(fed.nodes ?? {}),
    ...(env['FEDKMS_NODE_URLS'] ? parseNodeList(env['FEDKMS_NODE_URLS'].split(',').filter(Boolean)) : {}),
    ...parseNodeList((v['node'] as string[] | undefined) ?? []),
  };
  const nodeKeys = env['FEDKMS_NODE_KEYS'] ? Object.fromEntries(env['FEDKMS_NODE_KEYS'].split(',').filter(Boolean).map((x) => [x.slice(0, x.indexOf('=')), x.slice(x.indexOf('=') + 1)])) : fed.nodeKeys;
  // Refusals made before any work (429, 503 with Retry-After) are retried within the call's deadline; say so while waiting.
  const onRetry = json ? undefined : (i: { waitMs: number; status?: number; code?: string }) => err(`  ${i.status ?? 'connection lost'}${i.code ? ` ${i.code}` : ''}: retrying in ${(i.waitMs / 1000).toFixed(1)} s`);
  return { client: new FedkmsClient(url, identity, fetch, onRetry ? { onRetry } : {}), url, ...(identity ? { identity } : {}), nodes, ...(nodeKeys ? { nodeKeys } : {}), ...(fed.adminKeys ? { adminKeys: fed.adminKeys } : {}) };
}

/**
 * Where to probe nodes: the members' endpoints from the membership (nodes join and leave at run
 * time), else the configured URLs, else `<url>/nodes/<id>` for ids the coordinator reports.
 */
async function nodeUrls(t: Target): Promise<Record<string, string>> {
  if (t.identity) {
    const m = await t.client.call('GET', '/nodes', undefined, { retry: false, timeoutMs: 5000 }).catch(() => undefined);
    if (m?.status === 200 && Array.isArray(m.body?.nodes)) return Object.fromEntries(m.body.nodes.map((n: { id: string; endpoint: string }) => [n.id, n.endpoint]));
  }
  if (Object.keys(t.nodes).length > 0) return t.nodes;
  const s = await t.client.call('GET', '/status');
  const ids: string[] = Array.isArray(s.body?.nodes) ? s.body.nodes.map((n: { nodeId: string }) => n.nodeId).filter((id: unknown) => typeof id === 'string' && /^[a-z0-9-]{1,32}$/.test(id)) : [];
  return Object.fromEntries(ids.map((id) => [id, `${t.url.replace(/\/+$/, '')}/nodes/${id}`]));
}

/** Honest progress: every node's public /status at once, one line per node as it answers. Nothing in --json mode. */
export async function probeWithProgress(ctx: Ctx): Promise<NodeProbe[]> {
  if (ctx.json) return [];
  const t = ctx.target();
  const nodes = await nodeUrls(t);
  const ids = Object.keys(nodes);
  if (ids.length === 0) return [];
  progress(`Connecting to ${ids.map(nodeLabel).join(', ')} (all at once)...`);
  const timeout = Number(str(ctx.values, 'timeout') ?? 3000);
  const probes = await probeAll(nodes, timeout, (p, pending) => {
    const state = p.ok ? `${p.healthy ? 'online' : 'storage unavailable'} (${ms(p.ms)}${p.keyCount === null || p.keyCount === undefined ? '' : `, ${p.keyCount} key${p.keyCount === 1 ? '' : 's'}`})` : `${p.error} (${ms(p.ms)})`;
    progress(`Connecting to ${nodeLabel(p.nodeId)} (${p.url})... ${state}${pending.length ? `   [waiting on ${pending.map(nodeLabel).join(', ')}]` : ''}`);
  });
  const up = probes.filter((p) => p.ok && p.healthy).length;
  progress(`${up} of ${probes.length} nodes online.`);
  return probes;
}

/** A key id as the API accepts it. */
export function keyIdArg(id: string | undefined): string {
  if (!id) throw new UsageError('missing <keyId>');
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(id)) throw new UsageError(`invalid key id "${id}": lowercase letters, digits and "-", up to 63 characters`);
  return id;
}
