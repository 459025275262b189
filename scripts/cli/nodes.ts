/**
 * `fedkms nodes ...`: the federation's membership. Listing asks the coordinator, which learned
 * it from the nodes; adding and removing build the next membership document here and sign it
 * with this client's (an administrator's) key, so every node can check who changed it.
 */
import { readFileSync } from 'node:fs';
import { addNodes, listNodes, removeNode } from '../../lib/client/membership.js';
import { FedkmsError } from '../../lib/errors.js';
import { UsageError } from './args.js';
import { EXIT, failure, out, progress, table } from './output.js';
import { probeWithProgress, str, type Ctx } from './target.js';

const NODE_ID = /^[a-z0-9-]{1,32}$/;

export async function cmdNodesList(ctx: Ctx): Promise<number> {
  const { listing, answer } = await listNodes(ctx.target().client);
  if (!listing) return failure(answer, ctx.json, 'nodes list');
  if (ctx.json) {
    out(JSON.stringify(listing));
    return EXIT.ok;
  }
  out(`Membership version ${listing.version}, threshold ${listing.threshold} for new keys, signed by ${listing.membership.signer}.`);
  out(table(
    ['NODE', 'INDEX', 'UP', 'KEYS', 'ENDPOINT', 'FINGERPRINT'],
    listing.nodes.map((n) => [n.id, n.index, n.up ? 'up' : n.status ?? 'down', n.keys ?? '-', n.endpoint, n.fingerprint]),
  ));
  return EXIT.ok;
}

function readIdentity(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file === '-' ? 0 : file, 'utf8'));
  } catch {
    throw new UsageError(`cannot read an identity document from ${file} (JSON, as GET <node endpoint>/identity serves it)`);
  }
}

/** Why the nodes refused, one line each, from the per-node results of PUT /nodes. */
function printStored(body: any) {
  const nodes: { nodeId: string; status: string; error?: string; member?: boolean }[] = body?.nodes ?? body?.error?.details?.nodes ?? [];
  for (const n of nodes) progress(`  ${n.nodeId}: ${n.status === 'stored' ? (n.member === false ? 'stored (no longer a member)' : 'stored') : `refused (${n.error ?? 'error'})`}`);
}

export async function cmdNodesAdd(ctx: Ctx, files: string[]): Promise<number> {
  if (files.length === 0) throw new UsageError('missing <identity.json>: the identity document a node operator gave you');
  const t = ctx.target();
  if (!t.identity) throw new UsageError('nodes add signs the new membership with your key: configure an administrator client (--client/--key, or the federation file)');
  const threshold = str(ctx.values, 'threshold');
  if (threshold !== undefined && !(Number.isInteger(Number(threshold)) && Number(threshold) >= 2)) throw new UsageError('--threshold must be an integer of at least 2');
  const docs = files.map(readIdentity);
  await probeWithProgress(ctx);
  if (!ctx.json) progress(`Signing a new membership document with ${t.identity.name}'s key, and sending it to every member (each checks the signature)...`);
  let a;
  try {
    a = await addNodes(t.client, t.identity, docs, threshold === undefined ? undefined : Number(threshold));
  } catch (e) {
    if (e instanceof FedkmsError) throw new UsageError(e.message);
    throw e;
  }
  if (!ctx.json) printStored(a.body);
  if (a.status !== 200) return failure(a, ctx.json, 'nodes add');
  if (ctx.json) out(JSON.stringify(a.body));
  else out(`Membership version ${a.body.version}: threshold ${a.body.threshold}. Reshare keys onto new members with \`fedkms keys reshare KEY --threshold T --nodes a,b,c,...\`.`);
  return EXIT.ok;
}

export async function cmdNodesRemove(ctx: Ctx, id: string): Promise<number> {
  if (!NODE_ID.test(id)) throw new UsageError(`invalid node id "${id}"`);
  const t = ctx.target();
  if (!t.identity) throw new UsageError('nodes remove signs the new membership with your key: configure an administrator client');
  const { listing, answer } = await listNodes(t.client);
  if (!listing) return failure(answer, ctx.json, 'nodes remove');
  const node = listing.nodes.find((n) => n.id === id);
  if (!node) throw new UsageError(`${id} is not a member (members: ${listing.nodes.map((n) => n.id).join(', ')})`);
  // A member that still holds shares would take them out of use: reshare them off it first.
  if (ctx.values['force'] !== true && node.keys !== 0) {
    throw new UsageError(node.keys === null
      ? `${id} does not answer, so whether it still holds shares is unknown: reshare its keys onto the others first; pass --force if it is lost for good`
      : `${id} still holds ${node.keys} key(s): reshare them off it first (fedkms keys reshare KEY --nodes ...), or pass --force`);
  }
  if (!ctx.json) progress(`Signing a membership document without ${id}, and sending it to every member...`);
  const a = await removeNode(t.client, t.identity, id);
  if (!ctx.json) printStored(a.body);
  if (a.status !== 200) return failure(a, ctx.json, `nodes remove ${id}`);
  if (ctx.json) out(JSON.stringify(a.body));
  else out(`Membership version ${a.body.version}: ${id} is no longer a member (threshold ${a.body.threshold}).`);
  return EXIT.ok;
}
