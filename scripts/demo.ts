/**
 * `npm run demo`: the original walk-through ("Connecting to Node 1... Fragment received
 * ... Key reconstructed successfully"), against the running local federation, with
 * real per-node latencies. Runs once with every node healthy and once with one node
 * stopped (through the local stack's fault-injection control port), then restarts it.
 */
import { clientOf, loadFederation, type Federation } from './federation.js';
import { pinnedNodeKeys } from '../lib/client/membership.js';
import { reconstructEndToEnd } from '../lib/client/reconstruct.js';
import { wipe } from '../lib/encoding.js';

const KEY_ID = process.env['FEDKMS_DEMO_KEY'] ?? 'example';
const ms = (x: number | undefined) => (x === undefined ? '' : `${x.toFixed(1)} ms`);
const nodeLabel = (id: string) => id.replace(/^node(\d+)$/, 'Node $1');

async function probeNodes(f: Federation) {
  for (const [id, url] of Object.entries(f.nodes)) {
    process.stdout.write(`Connecting to ${nodeLabel(id)} (${url})... `);
    const t0 = performance.now();
    try {
      const r = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2000) });
      const s = (await r.json()) as { healthy: boolean; keyCount: number };
      console.log(`${s.healthy ? 'online' : 'storage unavailable'} (${ms(performance.now() - t0)}, ${s.keyCount} key${s.keyCount === 1 ? '' : 's'})`);
    } catch {
      console.log(`unreachable (${ms(performance.now() - t0)})`);
    }
  }
}

/** End to end: the nodes seal their shares to a one-time key of this process, which checks and combines them. */
async function reconstructOnce(f: Federation): Promise<boolean> {
  console.log(`Requesting reconstruction of key "${KEY_ID}" (the coordinator asks t nodes, a spare as soon as one fails or is slow, and relays sealed fragments)...`);
  const t0 = performance.now();
  // Node identity keys are pinned from the membership document, once the administrator's signature on it checks.
  const nodeKeys = f.nodeKeys ?? (f.adminKeys ? await pinnedNodeKeys(clientOf(f), f.adminKeys) : undefined);
  const r = await reconstructEndToEnd(clientOf(f), KEY_ID, nodeKeys ? { nodeKeys } : {});
  const body = r.answer.body;
  const rejected = new Map(r.rejected.map((x) => [x.nodeId, x.reason]));
  const nodes: { nodeId: string; status: string; latencyMs?: number; error?: string }[] = body?.nodes ?? body?.error?.details?.nodes ?? [];
  for (const n of nodes) {
    const line =
      rejected.has(n.nodeId) ? `${nodeLabel(n.nodeId)}: fragment REJECTED here (${rejected.get(n.nodeId)})` :
      n.status === 'valid' ? `Fragment received from ${nodeLabel(n.nodeId)}: sealed to us, verified here against the public commitments (${ms(n.latencyMs)})` :
      n.status === 'cancelled' ? `${nodeLabel(n.nodeId)}: not needed, ${body?.threshold ?? 't'} fragments were already in` :
      `${nodeLabel(n.nodeId)}: ${n.status.replace('_', ' ')}${n.error ? ` (${n.error})` : ''} ${ms(n.latencyMs)}`;
    console.log(`  ${line}`);
  }
  if (!r.ok) {
    console.log(`Reconstruction refused: ${r.answer.status} ${body?.error?.code}: ${body?.error?.message}`);
    return false;
  }
  const hex = Buffer.from(r.secret).toString('hex').toUpperCase();
  wipe(r.secret);
  console.log(`Key reconstructed successfully: ${hex}  (${body.threshold}-of-${Object.keys(f.nodes).length}, combined here, total ${ms(performance.now() - t0)}, group key ${String(body.groupPublicKey).slice(0, 16)}...)`);
  return true;
}

async function control(f: Federation, nodeId: string, action: 'stop' | 'start') {
  if (!f.controlUrl) throw new Error('no control port: run the demo against `npm start`');
  const r = await fetch(`${f.controlUrl}/nodes/${nodeId}/${action}`, { method: 'POST' });
  if (!r.ok) throw new Error(`could not ${action} ${nodeId}`);
}

async function main() {
  const f = loadFederation();
  const ids = Object.keys(f.nodes);
  console.log(`fedkms demo: federation at ${f.url}, ${ids.length} nodes\n`);
  console.log('== Round 1: every node healthy ==');
  await probeNodes(f);
  const ok1 = await reconstructOnce(f);

  const victim = ids[1] ?? ids[0]!;
  console.log(`\n== Round 2: ${nodeLabel(victim)} stopped ==`);
  console.log(`Stopping ${nodeLabel(victim)} (its process is killed: a real crash)...`);
  await control(f, victim, 'stop');
  let ok2 = false;
  try {
    await probeNodes(f);
    ok2 = await reconstructOnce(f);
  } finally {
    console.log(`Restarting ${nodeLabel(victim)}...`);
    await control(f, victim, 'start');
  }
  console.log(`\n${ok1 && ok2 ? 'Both rounds succeeded: any t healthy nodes are enough.' : 'A round failed; see above.'}`);
  process.exit(ok1 && ok2 ? 0 : 1);
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exit(1);
});
