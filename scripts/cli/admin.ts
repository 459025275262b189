/** `fedkms clients ...` and `fedkms approvals ...`: the client registry and m-of-n reconstruction approvals. */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { approvalDigest, signApproval, type ApprovalRequest } from '../../lib/crypto/client-auth.js';
import { parseEd25519PublicKey } from '../../lib/crypto/key-formats.js';
import { generateX25519 } from '../../lib/crypto/seal.js';
import { toB64, wipe } from '../../lib/encoding.js';
import { FedkmsError } from '../../lib/errors.js';
import { UsageError } from './args.js';
import { EXIT, failure, out, printApplied, progress, reportsOf, table } from './output.js';
import { probeWithProgress, str, type Ctx } from './target.js';

const CLIENT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

function clientName(name: string): string {
  if (!CLIENT_NAME.test(name)) throw new UsageError(`invalid client name "${name}": lowercase letters, digits, ".", "_" and "-", up to 63 characters`);
  return name;
}

/** Never overwrite a key file: it may be the only copy of someone's key. */
function writeSecretFile(file: string, content: string): void {
  if (existsSync(file)) throw new UsageError(`${file} exists: choose another file (it is never overwritten)`);
  writeFileSync(file, content, { mode: 0o600, flag: 'wx' });
}

export async function cmdClientsList(ctx: Ctx): Promise<number> {
  const a = await ctx.target().client.call('GET', '/clients');
  if (a.status !== 200) return failure(a, ctx.json, 'clients list');
  if (ctx.json) {
    out(JSON.stringify(a.body));
    return EXIT.ok;
  }
  const clients: { name: string; publicKey: string; roles: string[]; status: string }[] = a.body.clients;
  out(clients.length ? table(['CLIENT', 'STATUS', 'ROLES', 'PUBLIC KEY'], clients.map((c) => [c.name, c.status, c.roles.join(', ') || '-', c.publicKey])) : 'No clients.');
  if (!a.body.agreed) out('(fewer than a threshold of nodes returned this same registry: it may be stale; see `fedkms status`)');
  return EXIT.ok;
}

/** The client's public key: base64 as the API takes it, or any form `verify --public-key` reads (PEM, OpenSSH, hex), or a file of one. */
function clientPublicKey(value: string): string {
  const input = /^[A-Za-z0-9+/]{43}=$/.test(value) ? new Uint8Array(Buffer.from(value, 'base64')) : existsSync(value) ? new Uint8Array(readFileSync(value)) : value;
  try {
    return toB64(parseEd25519PublicKey(input));
  } catch (e) {
    if (e instanceof FedkmsError) throw new UsageError(`--public-key: ${e.message} (or base64, or a file holding one)`);
    throw e;
  }
}

async function register(ctx: Ctx, record: { name: string; publicKey: string; roles: string[]; status: string }, verb: string): Promise<number> {
  await probeWithProgress(ctx);
  if (!ctx.json) progress(`${verb} client "${record.name}" on every node (each checks that an administrator signed this exact record)...`);
  const a = await ctx.target().client.call('POST', '/clients', record);
  if (!ctx.json) printApplied(reportsOf(a.body), 'registry updated');
  if (a.status !== 201) return failure(a, ctx.json, `clients ${verb.toLowerCase()} ${record.name}`);
  if (ctx.json) out(JSON.stringify(a.body));
  else out(`Client "${record.name}": ${record.status}, roles ${record.roles.join(', ') || '(none)'}, public key ${record.publicKey}.`);
  return EXIT.ok;
}

export async function cmdClientsAdd(ctx: Ctx, name: string): Promise<number> {
  const v = ctx.values;
  clientName(name);
  const pub = str(v, 'public-key');
  const gen = str(v, 'generate-key');
  if ((pub === undefined) === (gen === undefined)) throw new UsageError('clients add needs exactly one of --public-key KEY or --generate-key FILE');
  const roles = (str(v, 'roles') ?? '').split(',').map((r) => r.trim()).filter(Boolean);
  if (roles.some((r) => !/^[a-z][a-z0-9-]{0,31}$/.test(r))) throw new UsageError('--roles is a comma-separated list of role names (lowercase letters, digits, "-")');
  const status = str(v, 'status') ?? 'active';
  if (status !== 'active' && status !== 'disabled') throw new UsageError('--status is active or disabled');
  let publicKey: string;
  if (gen !== undefined) {
    // The private key stays on this machine, in a file only its owner can read.
    const jwk = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
    const priv = Buffer.from(jwk.d!, 'base64url');
    writeSecretFile(gen, `${priv.toString('base64')}\n`);
    wipe(priv);
    publicKey = toB64(Buffer.from(jwk.x!, 'base64url'));
    if (!ctx.json) progress(`New Ed25519 key for "${name}": private key written to ${gen} (use it with --client ${name} --key ${gen}).`);
  } else publicKey = clientPublicKey(pub!);
  return register(ctx, { name, publicKey, roles, status }, 'Registering');
}

/** Disable or re-enable a client: its record as the registry holds it, with a new status. */
export async function cmdClientsStatus(ctx: Ctx, name: string, status: 'active' | 'disabled'): Promise<number> {
  clientName(name);
  const a = await ctx.target().client.call('GET', '/clients');
  if (a.status !== 200) return failure(a, ctx.json, `clients ${status === 'active' ? 'enable' : 'disable'} ${name}`);
  const rec = (a.body.clients as { name: string; publicKey: string; roles: string[] }[]).find((c) => c.name === name);
  if (!rec) return failure({ status: 404, ms: 0, body: { error: { code: 'client_unknown', message: `no client named ${name}` } } }, ctx.json, `clients ${status === 'active' ? 'enable' : 'disable'} ${name}`);
  return register(ctx, { name, publicKey: rec.publicKey, roles: rec.roles, status }, status === 'active' ? 'Enabling' : 'Disabling');
}

interface OpenRequest {
  digest: string;
  request: ApprovalRequest;
  approvers: string[];
  createdAt: string;
}

export async function cmdApprovalsList(ctx: Ctx, keyId: string): Promise<number> {
  const a = await ctx.target().client.call('GET', `/approvals?keyId=${encodeURIComponent(keyId)}`);
  if (a.status !== 200) return failure(a, ctx.json, `approvals list ${keyId}`);
  if (ctx.json) {
    out(JSON.stringify(a.body));
    return EXIT.ok;
  }
  const reqs: OpenRequest[] = a.body.requests;
  out(reqs.length
    ? table(['DIGEST', 'REQUESTER', 'VERSION', 'EXPIRES', 'APPROVED BY'], reqs.map((r) => [r.digest, r.request.requester, `v${r.request.version}`, new Date(r.request.expiresAt).toISOString(), r.approvers.join(', ') || '-']))
    : `No open approval requests for "${keyId}".`);
  return EXIT.ok;
}

export async function cmdApprovalsOpen(ctx: Ctx, keyId: string): Promise<number> {
  const minutes = Number(str(ctx.values, 'expires-in') ?? 60);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 24 * 60) throw new UsageError('--expires-in is whole minutes, from 1 to 1440');
  const file = str(ctx.values, 'out');
  if (file !== undefined && existsSync(file)) throw new UsageError(`${file} exists: choose another file (it is never overwritten)`);
  // The approvals are bound to this recipient key: the shares will be sealed to it, and only this file opens them.
  const recipient = generateX25519();
  const a = await ctx.target().client.call('POST', '/approvals', { keyId, recipient: toB64(recipient.publicKey), expiresAt: Date.now() + minutes * 60_000 });
  if (a.status !== 201) {
    wipe(recipient.privateKey);
    return failure(a, ctx.json, `approvals open ${keyId}`);
  }
  const digest: string = a.body.digest;
  const target = file ?? `fedkms-request-${keyId}-${digest.slice(0, 12)}.json`;
  writeSecretFile(target, `${JSON.stringify({ keyId, digest, request: a.body.request, recipientPrivateKey: toB64(recipient.privateKey) }, null, 2)}\n`);
  wipe(recipient.privateKey);
  if (ctx.json) out(JSON.stringify({ ...a.body, requestFile: target }));
  else {
    out(`Approval request opened for "${keyId}" (v${a.body.request.version}, expires ${new Date(a.body.request.expiresAt).toISOString()}).`);
    out(`digest: ${digest}`);
    out(`Request file (holds the one-time recipient key; keep it private): ${target}`);
    out(`Approvers run:  fedkms approvals approve ${keyId} ${digest}`);
    out(`Then:           fedkms reconstruct ${keyId} --request ${target}`);
  }
  return EXIT.ok;
}

export async function cmdApprovalsApprove(ctx: Ctx, keyId: string, digest: string): Promise<number> {
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new UsageError('<digest> is the 64 hex digits `approvals open` or `approvals list` printed');
  const t = ctx.target();
  if (!t.identity) throw new UsageError('approving needs a client identity: --client NAME --key FILE, or FEDKMS_CLIENT and FEDKMS_CLIENT_KEY');
  const l = await t.client.call('GET', `/approvals?keyId=${encodeURIComponent(keyId)}`);
  if (l.status !== 200) return failure(l, ctx.json, `approvals approve ${keyId}`);
  const open = (l.body.requests as OpenRequest[]).find((r) => r.digest === digest);
  if (!open) return failure({ status: 404, ms: 0, body: { error: { code: 'approval_request_not_found', message: `no open request ${digest} for ${keyId} (expired, or another key)` } } }, ctx.json, `approvals approve ${keyId}`);
  // What is signed is recomputed here from the request's fields: the relay cannot swap in another request.
  if (approvalDigest(open.request) !== digest || open.request.keyId !== keyId) {
    return failure({ status: 502, ms: 0, body: { error: { code: 'approval_mismatch', message: 'the coordinator served a request whose digest is not the one you named: nothing signed' } } }, ctx.json, `approvals approve ${keyId}`);
  }
  if (!ctx.json) progress(`Approving: ${open.request.requester} may reconstruct "${keyId}" v${open.request.version}, sealed to ${open.request.recipient}, until ${new Date(open.request.expiresAt).toISOString()}.`);
  const a = await t.client.call('POST', '/approvals', { keyId, digest, signature: signApproval(t.identity.privateKey, open.request) });
  if (a.status !== 200) return failure(a, ctx.json, `approvals approve ${keyId}`);
  if (ctx.json) out(JSON.stringify(a.body));
  else out(`Approved. Approvals so far: ${(a.body.approvers as string[]).join(', ')}.`);
  return EXIT.ok;
}
