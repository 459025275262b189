/**
 * `fedkms`: drive a federation from a terminal or a script.
 *
 *   fedkms status | keys list | keys show <id> | keys import <id> --hex|--base64|--file
 *   fedkms keys create <id> [--length N | --type ed25519] | keys public <id> | reconstruct <id>
 *   fedkms sign <id> (--message|--file|--digest) | verify <id> --signature HEX (...) | audit verify
 *
 * Human output by default (tables, and progress lines while it waits on nodes);
 * `--json` prints exactly one JSON document on stdout. Exit codes: see EXIT below.
 */
import { verify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FedkmsClient, UnreachableError, probeAll, type ApiAnswer, type NodeProbe } from '../../lib/client/api.js';
import { identityFrom, type ClientIdentity } from '../../lib/client/signer.js';
import { reconstructEndToEnd } from '../../lib/client/reconstruct.js';
import { wipe } from '../../lib/encoding.js';

export const EXIT = {
  ok: 0,
  /** The operation failed: refused input, unknown key, key exists, broken audit chain, server error. */
  failed: 1,
  /** Bad command line or no federation configured. */
  usage: 2,
  /** The client identity was missing or refused (401/403). */
  auth: 3,
  /** Not enough nodes: fewer than t valid answers (503 quorum_not_reached), or no quorum up. */
  quorum: 4,
  /** The coordinator could not be reached, or is unavailable (e.g. its audit log: fail closed). */
  unavailable: 5,
} as const;

const USAGE = `usage: fedkms <command> [options]

commands:
  status                          federation health: every node, up or down, with latency
  keys list                       every key and the nodes that hold it
  keys show <keyId>               threshold, version, state, fragment availability, quorum margin
  keys import <keyId> (--hex HEX | --base64 B64 | --file PATH|-) [--threshold T]
  keys create <keyId> [--length BYTES] [--threshold T]
  keys create <keyId> --type ed25519 [--threshold T]
                                  a signing key born by DKG (never held in one place)
  keys public <keyId>             the public key (hex, PEM, OpenSSH)
  sign <keyId> (--message TEXT | --file PATH|- | --digest HEX)
                                  threshold Ed25519 signature (FROST); prints it in hex
  verify <keyId> --signature HEX (--message TEXT | --file PATH|- | --digest HEX)
                                  check a signature locally (OpenSSL) against the key's public key
  reconstruct <keyId> [--server-side]
                                  rebuild the key from t verified fragments, end to end: the
                                  nodes seal their shares to a one-time key of this process
                                  (--server-side: the coordinator combines, if the policy allows)
  audit verify                    recompute every audit hash chain

options:
  --url URL           coordinator URL            (env FEDKMS_URL)
  --client NAME       client identity name       (env FEDKMS_CLIENT)
  --key FILE          the client's Ed25519 private key, base64, in a file
                      (env FEDKMS_CLIENT_KEY holds the key itself)
  --federation FILE   federation file {url, client: {name, privateKey}, nodes} (env FEDKMS_FEDERATION;
                      default .local/federation.json, written by \`npm start\`)
  --node ID=URL       a node's public URL for progress probes (repeatable; env FEDKMS_NODE_URLS="id=url,...")
                      node identity keys to pin for reconstruct: env FEDKMS_NODE_KEYS="id=base64key,..."
                      (or nodeKeys in the federation file); each fragment must then be signed by its node
  --timeout MS        per-node probe timeout (default 3000)
  --json              one JSON document on stdout, no progress lines
  -h, --help          this help

exit codes: 0 ok, 1 operation failed, 2 usage error, 3 authentication error,
            4 not enough nodes, 5 coordinator unreachable or unavailable`;

class UsageError extends Error {}

interface Options {
  json: boolean;
  url?: string;
  client?: string;
  key?: string;
  serverSide?: boolean;
  federation?: string;
  node?: string[];
  timeout?: string;
  hex?: string;
  base64?: string;
  file?: string;
  length?: string;
  threshold?: string;
  type?: string;
  message?: string;
  digest?: string;
  signature?: string;
  help?: boolean;
}

interface Target {
  client: FedkmsClient;
  url: string;
  nodes: Record<string, string>;
  /** Node identity keys to pin: each fragment must be signed by its node (FEDKMS_NODE_KEYS="id=key,...", or the federation file). */
  nodeKeys?: Record<string, string>;
}

const out = (s = '') => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);
const ms = (x: number | undefined) => (x === undefined ? '' : `${x.toFixed(1)} ms`);
const nodeLabel = (id: string) => id.replace(/^node(\d+)$/, 'Node $1');

function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

function readFederationFile(file: string): { url?: string; client?: { name?: string; privateKey?: string }; nodes?: Record<string, string>; nodeKeys?: Record<string, string> } {
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
function resolveTarget(o: Options): Target {
  const env = process.env;
  const explicit = o.federation ?? env['FEDKMS_FEDERATION'];
  const defaults = [path.resolve('.local', 'federation.json'), path.resolve(__dirname, '..', '..', '.local', 'federation.json')];
  const file = explicit ?? defaults.find((f) => existsSync(f));
  const fed = file ? readFederationFile(file) : {};
  const url = o.url ?? env['FEDKMS_URL'] ?? fed.url;
  const name = o.client ?? env['FEDKMS_CLIENT'] ?? fed.client?.name;
  let key = env['FEDKMS_CLIENT_KEY'] ?? fed.client?.privateKey;
  if (o.key) {
    try {
      key = readFileSync(o.key, 'utf8').trim();
    } catch {
      throw new UsageError(`cannot read the key file ${o.key}`);
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
  const nodes = {
    ...(fed.nodes ?? {}),
    ...(env['FEDKMS_NODE_URLS'] ? parseNodeList(env['FEDKMS_NODE_URLS'].split(',').filter(Boolean)) : {}),
    ...parseNodeList(o.node ?? []),
  };
  const nodeKeys = env['FEDKMS_NODE_KEYS'] ? Object.fromEntries(env['FEDKMS_NODE_KEYS'].split(',').filter(Boolean).map((x) => [x.slice(0, x.indexOf('=')), x.slice(x.indexOf('=') + 1)])) : fed.nodeKeys;
  // Refusals made before any work (429, 503 with Retry-After) are retried within the call's deadline; say so while waiting.
  const onRetry = o.json ? undefined : (i: { waitMs: number; status?: number; code?: string }) => err(`  ${i.status ?? 'connection lost'}${i.code ? ` ${i.code}` : ''}: retrying in ${(i.waitMs / 1000).toFixed(1)} s`);
  return { client: new FedkmsClient(url, identity, fetch, onRetry ? { onRetry } : {}), url, nodes, ...(nodeKeys ? { nodeKeys } : {}) };
}

/** Map an unsuccessful answer to an exit code, and say why on stderr (or as JSON). */
function failure(a: ApiAnswer, o: Options, what: string): number {
  const code: string = a.body?.error?.code ?? `http_${a.status}`;
  const message: string = a.body?.error?.message ?? `HTTP ${a.status}`;
  if (o.json) out(JSON.stringify(a.body ?? { error: { code, message } }));
  else err(`${what} failed: ${message} (${code}, HTTP ${a.status})`);
  if (a.status === 401 || a.status === 403) return EXIT.auth;
  if (code === 'quorum_not_reached') return EXIT.quorum;
  if (a.status === 503 || a.status === 502 || a.status === 504) return EXIT.unavailable;
  return EXIT.failed;
}

/** Where to probe nodes: the configured URLs, or `<url>/nodes/<id>` (the AWS layout) for ids the coordinator reports. */
async function nodeUrls(t: Target): Promise<Record<string, string>> {
  if (Object.keys(t.nodes).length > 0) return t.nodes;
  const s = await t.client.call('GET', '/status');
  const ids: string[] = Array.isArray(s.body?.nodes) ? s.body.nodes.map((n: { nodeId: string }) => n.nodeId).filter((id: unknown) => typeof id === 'string' && /^[a-z0-9-]{1,32}$/.test(id)) : [];
  return Object.fromEntries(ids.map((id) => [id, `${t.url.replace(/\/+$/, '')}/nodes/${id}`]));
}

/** Honest progress: every node's public /status at once, one line per node as it answers. */
async function probeWithProgress(t: Target, o: Options): Promise<NodeProbe[]> {
  const nodes = await nodeUrls(t);
  const ids = Object.keys(nodes);
  if (ids.length === 0) return [];
  out(`Connecting to ${ids.map(nodeLabel).join(', ')} (all at once)...`);
  const timeout = Number(o.timeout ?? 3000);
  const probes = await probeAll(nodes, timeout, (p, pending) => {
    const state = p.ok ? `${p.healthy ? 'online' : 'storage unavailable'} (${ms(p.ms)}${p.keyCount === null || p.keyCount === undefined ? '' : `, ${p.keyCount} key${p.keyCount === 1 ? '' : 's'}`})` : `${p.error} (${ms(p.ms)})`;
    out(`Connecting to ${nodeLabel(p.nodeId)} (${p.url})... ${state}${pending.length ? `   [waiting on ${pending.map(nodeLabel).join(', ')}]` : ''}`);
  });
  const up = probes.filter((p) => p.ok && p.healthy).length;
  out(`${up} of ${probes.length} nodes online.`);
  return probes;
}

interface Report {
  nodeId: string;
  status: string;
  latencyMs?: number;
  error?: string;
}
const reportsOf = (body: any): Report[] => body?.nodes ?? body?.error?.details?.nodes ?? [];

function printReconstructReport(nodes: Report[], threshold: number | string, endToEnd: boolean) {
  for (const n of nodes) {
    const line =
      n.status === 'valid'
        ? `Fragment received from ${nodeLabel(n.nodeId)}: ${endToEnd ? 'sealed to this process, verified here' : 'sealed to the coordinator, verified there'} against the public commitments (${ms(n.latencyMs)})` :
      n.status === 'cancelled' ? `${nodeLabel(n.nodeId)}: not needed, ${threshold} verified fragments were already in` :
      `${nodeLabel(n.nodeId)}: ${n.status.replace(/_/g, ' ')}${n.error ? ` (${n.error})` : ''}${n.latencyMs !== undefined ? ` ${ms(n.latencyMs)}` : ''}`;
    out(`  ${line}`);
  }
}

function printStoreReport(nodes: Report[]) {
  for (const n of nodes) {
    out(`  ${nodeLabel(n.nodeId)}: ${n.status === 'valid' ? 'share stored, checked by the node against the commitments' : `${n.status.replace(/_/g, ' ')}${n.error ? ` (${n.error})` : ''}`}${n.latencyMs !== undefined ? ` (${ms(n.latencyMs)})` : ''}`);
  }
}

function parseThreshold(o: Options): number | undefined {
  if (o.threshold === undefined) return undefined;
  const t = Number(o.threshold);
  if (!Number.isInteger(t) || t < 2 || t > 255) throw new UsageError('--threshold must be an integer from 2 to 255');
  return t;
}

function keyIdArg(args: string[], i: number): string {
  const id = args[i];
  if (!id) throw new UsageError('missing <keyId>');
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(id)) throw new UsageError(`invalid key id "${id}": lowercase letters, digits and "-", up to 63 characters`);
  return id;
}

async function cmdStatus(t: Target, o: Options): Promise<number> {
  const a = await t.client.call('GET', '/status');
  if (a.status !== 200) return failure(a, o, 'status');
  const s = a.body;
  if (o.json) out(JSON.stringify(s));
  else {
    out(`Federation ${t.url}: ${s.nodesUp} of ${s.total} nodes up, threshold ${s.threshold} (quorum ${s.quorum ? 'available' : 'LOST'})`);
    out(table(['NODE', 'STATE', 'LATENCY', 'KEYS', 'VERSION', 'DETAIL'], s.nodes.map((n: any) => [
      n.nodeId,
      n.status === 'valid' ? (n.healthy ? 'up' : 'degraded') : 'down',
      ms(n.latencyMs),
      n.keyCount ?? '',
      n.version ?? '',
      n.status === 'valid' ? (n.healthy ? '' : `storage ${n.storage}`) : (n.error ?? n.status),
    ])));
  }
  return s.quorum ? EXIT.ok : EXIT.quorum;
}

async function cmdKeysList(t: Target, o: Options): Promise<number> {
  const a = await t.client.call('GET', '/keys');
  if (a.status !== 200) return failure(a, o, 'keys list');
  if (o.json) {
    out(JSON.stringify(a.body));
    return EXIT.ok;
  }
  const keys: { keyId: string; latestVersion: number; heldBy: string[] }[] = a.body.keys;
  if (keys.length === 0) out('No keys.');
  else out(table(['KEY', 'VERSION', 'HELD BY'], keys.map((k) => [k.keyId, `v${k.latestVersion}`, [...k.heldBy].sort().join(', ')])));
  const silent = (a.body.nodes as Report[]).filter((n) => n.status !== 'valid');
  if (silent.length) out(`(no answer from ${silent.map((n) => `${n.nodeId}: ${n.status}`).join(', ')}; their keys may be missing above)`);
  return EXIT.ok;
}

async function cmdKeysShow(t: Target, o: Options, keyId: string): Promise<number> {
  const a = await t.client.call('GET', `/keys/${keyId}`);
  if (a.status !== 200) return failure(a, o, `keys show ${keyId}`);
  if (o.json) {
    out(JSON.stringify(a.body));
    return EXIT.ok;
  }
  const k = a.body.key;
  const margin: number = a.body.availability.quorumMargin;
  out(table(['FIELD', 'VALUE'], [
    ['key', k.keyId],
    ['type', k.type],
    ['threshold', `${k.threshold} of ${k.total}`],
    ['version', `v${k.version}`],
    ['state', k.state],
    ['created', k.createdAt],
    ['group public key', k.groupPublicKey],
    ['fragments available', `${a.body.availability.available} of ${k.total}`],
    ['quorum margin', `${margin}${margin === 0 ? '  (one more node failure makes this key unusable)' : margin < 0 ? '  (UNUSABLE)' : ''}`],
  ]));
  out('');
  out(table(['NODE', 'FRAGMENT', 'LATENCY'], (a.body.nodes as Report[]).map((n) => [n.nodeId, n.status.replace(/_/g, ' '), ms(n.latencyMs)])));
  return EXIT.ok;
}

function secretFromFlags(o: Options): { secretHex?: string; secretBase64?: string } {
  const given = [o.hex, o.base64, o.file].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError('keys import needs exactly one of --hex, --base64 or --file');
  if (o.hex !== undefined) {
    const hex = o.hex.replace(/^0x/i, '');
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new UsageError('--hex must be non-empty, even-length hex');
    return { secretHex: hex };
  }
  if (o.base64 !== undefined) return { secretBase64: o.base64 };
  let bytes: Buffer;
  try {
    bytes = o.file === '-' ? readFileSync(0) : readFileSync(o.file!);
  } catch {
    throw new UsageError(`cannot read ${o.file}`);
  }
  if (bytes.length < 1 || bytes.length > 4096) throw new UsageError(`the key file must hold 1 to 4096 bytes (it holds ${bytes.length})`);
  const b64 = bytes.toString('base64');
  bytes.fill(0);
  return { secretBase64: b64 };
}

async function cmdCreate(t: Target, o: Options, keyId: string, mode: 'import' | 'create'): Promise<number> {
  const threshold = parseThreshold(o);
  let body: Record<string, unknown> = { keyId, ...(threshold ? { threshold } : {}) };
  if (o.type !== undefined && o.type !== 'ed25519' && o.type !== 'secret') throw new UsageError('--type is secret or ed25519');
  if (o.type === 'ed25519') {
    if (mode === 'import' || o.length !== undefined) throw new UsageError('an ed25519 key is generated by the nodes (DKG): no secret, no --length');
    body['type'] = 'ed25519';
  }
  if (mode === 'import') body = { ...body, ...secretFromFlags(o) };
  else if (o.length !== undefined) {
    const length = Number(o.length);
    if (!Number.isInteger(length) || length < 1 || length > 4096) throw new UsageError('--length must be an integer from 1 to 4096 (bytes)');
    body['length'] = length;
  }
  if (!o.json) await probeWithProgress(t, o);
  if (!o.json) out(o.type === 'ed25519' ? `Generating signing key "${keyId}" by DKG: the nodes create it together, the coordinator only relays...` : `${mode === 'import' ? 'Importing' : 'Generating'} key "${keyId}": dealing one share per node, each sealed to its node...`);
  const a = await t.client.call('POST', '/keys', body);
  if (!o.json) printStoreReport(reportsOf(a.body));
  if (a.status !== 201) return failure(a, o, `keys ${mode} ${keyId}`);
  if (o.json) out(JSON.stringify(a.body));
  else {
    const k = a.body.key;
    const what = k.type === 'ed25519' ? 'Ed25519 signing key (DKG)' : `${k.secretLength} bytes`;
    out(`Key "${k.keyId}" ${mode === 'import' ? 'imported' : 'created'}: ${k.threshold}-of-${k.total}, v${k.version}, ${what}, group key ${k.groupPublicKey}`);
  }
  return EXIT.ok;
}

async function cmdReconstruct(t: Target, o: Options, keyId: string): Promise<number> {
  if (!o.json) {
    await probeWithProgress(t, o);
    out(`Requesting reconstruction of key "${keyId}" (the coordinator asks t nodes, and a spare as soon as one fails or is slow)...`);
  }
  let a: ApiAnswer;
  let secretHex: string;
  if (o.serverSide) {
    a = await t.client.call('POST', `/keys/${keyId}/reconstruct`);
    secretHex = String(a.body?.secret?.hex ?? '');
  } else {
    const r = await reconstructEndToEnd(t.client, keyId, t.nodeKeys ? { nodeKeys: t.nodeKeys } : {});
    a = r.answer;
    for (const x of r.rejected) if (!o.json) out(`  ${nodeLabel(x.nodeId)}: share REJECTED here (${x.reason}); asked again without it`);
    secretHex = r.ok ? Buffer.from(r.secret).toString('hex') : '';
    if (r.ok) wipe(r.secret);
  }
  if (!o.json) printReconstructReport(reportsOf(a.body), a.body?.threshold ?? 't', !o.serverSide);
  if (a.status !== 200 || !secretHex) {
    if (!o.json && a.body?.error?.code === 'quorum_not_reached') out('Not enough nodes returned a valid fragment: nothing was released.');
    return failure(a, o, `reconstruct ${keyId}`);
  }
  if (o.json) out(JSON.stringify({ ...a.body, fragments: undefined, secret: { hex: secretHex, base64: Buffer.from(secretHex, 'hex').toString('base64') } }));
  else {
    const total = reportsOf(a.body).length;
    const where = o.serverSide ? 'combined by the coordinator' : 'combined here, end to end';
    out(`Key reconstructed successfully: ${secretHex.toUpperCase()}  (${a.body.threshold}-of-${total}, ${where}, total ${ms(a.ms)}, group key ${String(a.body.groupPublicKey).slice(0, 16)}...)`);
  }
  return EXIT.ok;
}

async function cmdAuditVerify(t: Target, o: Options): Promise<number> {
  const a = await t.client.call('GET', '/audit/verify');
  if (a.status !== 200) return failure(a, o, 'audit verify');
  const v = a.body;
  if (o.json) out(JSON.stringify(v));
  else {
    out(table(['COMPONENT', 'STATUS', 'CHAINS', 'RECORDS'], (v.components as any[]).map((c) => [c.component, c.ok ? 'intact' : 'BROKEN', c.chains, c.records])));
    for (const s of v.streams as any[]) {
      if (!s.ok) out(`  first broken link: ${s.stream} seq ${s.firstBroken?.seq}: ${s.firstBroken?.reason} (verified through ${s.verifiedThrough})`);
    }
    out(v.ok ? 'Audit trail verified: every chain is intact.' : 'Audit trail BROKEN.');
  }
  return v.ok ? EXIT.ok : EXIT.failed;
}

/** The message to sign or verify, from exactly one of --message, --file or --digest. */
function messageFromFlags(o: Options): { message?: string; digest?: string; bytes: Uint8Array } {
  const given = [o.message, o.file, o.digest].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError('give exactly one of --message, --file or --digest');
  if (o.digest !== undefined) {
    const d = o.digest.toLowerCase();
    if (!/^(?:[0-9a-f]{64}|[0-9a-f]{128})$/.test(d)) throw new UsageError('--digest must be 32 or 64 bytes of hex');
    return { digest: d, bytes: Buffer.concat([Buffer.from('fedkms/digest/v1\n'), Buffer.from(d, 'hex')]) };
  }
  let bytes: Buffer;
  try {
    bytes = o.message !== undefined ? Buffer.from(o.message, 'utf8') : o.file === '-' ? readFileSync(0) : readFileSync(o.file!);
  } catch {
    throw new UsageError(`cannot read ${o.file}`);
  }
  if (bytes.length > 32 * 1024) throw new UsageError('the message must be at most 32 KiB; sign a --digest of larger data');
  return { message: bytes.toString('base64'), bytes };
}

async function cmdPublic(t: Target, o: Options, keyId: string): Promise<number> {
  const a = await t.client.call('GET', `/keys/${keyId}/public`);
  if (a.status !== 200) return failure(a, o, `keys public ${keyId}`);
  if (o.json) out(JSON.stringify(a.body));
  else out(`${a.body.openssh}\n${String(a.body.pem).trimEnd()}\nhex: ${a.body.hex}`);
  return EXIT.ok;
}

async function cmdSign(t: Target, o: Options, keyId: string): Promise<number> {
  const { message, digest } = messageFromFlags(o);
  if (!o.json) {
    await probeWithProgress(t, o);
    out(`Signing with "${keyId}": commitments from the fastest t nodes, then their signature shares...`);
  }
  const a = await t.client.call('POST', `/keys/${keyId}/sign`, message !== undefined ? { message } : { digest });
  if (!o.json) {
    for (const n of reportsOf(a.body)) out(`  ${nodeLabel(n.nodeId)}: ${n.status === 'valid' ? 'share verified' : n.status.replace(/_/g, ' ')}${n.error ? ` (${n.error})` : ''}${n.latencyMs !== undefined ? ` (${ms(n.latencyMs)})` : ''}`);
  }
  if (a.status !== 200) return failure(a, o, `sign ${keyId}`);
  if (o.json) out(JSON.stringify(a.body));
  else {
    const cheaters = (a.body.cheaters as { nodeId: string }[]).map((c) => c.nodeId);
    out(`Signed by ${(a.body.signers as string[]).join(', ')}${cheaters.length ? `; cheaters named and excluded: ${cheaters.join(', ')}` : ''}.`);
    out(a.body.signature.hex);
  }
  return EXIT.ok;
}

async function cmdVerify(t: Target, o: Options, keyId: string): Promise<number> {
  const { bytes } = messageFromFlags(o);
  const sig = (o.signature ?? '').toLowerCase();
  if (!/^[0-9a-f]{128}$/.test(sig)) throw new UsageError('--signature must be 64 bytes of hex');
  const a = await t.client.call('GET', `/keys/${keyId}/public`);
  if (a.status !== 200) return failure(a, o, `verify ${keyId}`);
  // Verified here, with OpenSSL through Node's crypto: the federation is not asked whether it signed.
  const ok = verify(null, bytes, a.body.pem, Buffer.from(sig, 'hex'));
  if (o.json) out(JSON.stringify({ keyId, valid: ok, publicKey: a.body.hex }));
  else out(ok ? `Signature valid for key "${keyId}" (${a.body.hex}).` : `Signature INVALID for key "${keyId}".`);
  return ok ? EXIT.ok : EXIT.failed;
}

export async function main(argv: string[]): Promise<number> {
  let o: Options;
  let args: string[];
  try {
    const parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean', default: false },
        url: { type: 'string' },
        client: { type: 'string' },
        key: { type: 'string' },
        'server-side': { type: 'boolean', default: false },
        federation: { type: 'string' },
        node: { type: 'string', multiple: true },
        timeout: { type: 'string' },
        hex: { type: 'string' },
        base64: { type: 'string' },
        file: { type: 'string' },
        length: { type: 'string' },
        threshold: { type: 'string' },
        type: { type: 'string' },
        message: { type: 'string' },
        digest: { type: 'string' },
        signature: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    o = { ...(parsed.values as Options), serverSide: (parsed.values as Record<string, unknown>)['server-side'] === true };
    args = parsed.positionals;
  } catch (e) {
    err(`${(e as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (o.help || args.length === 0) {
    (o.help ? out : err)(USAGE);
    return o.help ? EXIT.ok : EXIT.usage;
  }
  try {
    if (o.timeout !== undefined && !(Number.isInteger(Number(o.timeout)) && Number(o.timeout) > 0)) throw new UsageError('--timeout must be a positive integer (ms)');
    const cmd = args.slice(0, 2).join(' ');
    const run = (): Promise<number> => {
      const t = resolveTarget(o);
      if (args[0] === 'status' && args.length === 1) return cmdStatus(t, o);
      if (cmd === 'keys list' && args.length === 2) return cmdKeysList(t, o);
      if (cmd === 'keys show' && args.length === 3) return cmdKeysShow(t, o, keyIdArg(args, 2));
      if (cmd === 'keys import' && args.length === 3) return cmdCreate(t, o, keyIdArg(args, 2), 'import');
      if (cmd === 'keys create' && args.length === 3) return cmdCreate(t, o, keyIdArg(args, 2), 'create');
      if (args[0] === 'reconstruct' && args.length === 2) return cmdReconstruct(t, o, keyIdArg(args, 1));
      if (cmd === 'audit verify' && args.length === 2) return cmdAuditVerify(t, o);
      if (cmd === 'keys public' && args.length === 3) return cmdPublic(t, o, keyIdArg(args, 2));
      if (args[0] === 'sign' && args.length === 2) return cmdSign(t, o, keyIdArg(args, 1));
      if (args[0] === 'verify' && args.length === 2) return cmdVerify(t, o, keyIdArg(args, 1));
      throw new UsageError(`unknown command: ${args.join(' ')}`);
    };
    return await run();
  } catch (e) {
    if (e instanceof UsageError) {
      err(`fedkms: ${e.message}\n(run \`fedkms --help\` for usage)`);
      return EXIT.usage;
    }
    if (e instanceof UnreachableError) {
      if (o.json) out(JSON.stringify({ error: { code: 'unreachable', message: e.message } }));
      else err(`fedkms: ${e.message}: is the federation running?`);
      return EXIT.unavailable;
    }
    err(`fedkms: unexpected error: ${(e as Error)?.message ?? String(e)}`);
    return EXIT.failed;
  }
}

// `tsx scripts/cli/main.ts …` runs it directly; bin/fedkms calls main() itself.
if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = EXIT.failed;
    },
  );
}
