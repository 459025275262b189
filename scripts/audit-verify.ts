/** `npm run audit:verify`: verify every audit chain of the running federation (signatures, links, witnessed checkpoints); exit 1 on any finding. */
import { api, loadFederation } from './federation.js';

async function main() {
  const f = loadFederation();
  const r = await api(f, 'GET', '/audit/verify');
  if (r.status !== 200) {
    console.error(`audit verification unavailable: ${r.status} ${r.body?.error?.code ?? ''}`);
    process.exit(2);
  }
  for (const c of r.body.components as { component: string; chains: number; records: number; ok: boolean }[]) {
    console.log(`${c.ok ? 'ok    ' : 'BROKEN'} ${c.component.padEnd(16)} ${String(c.records).padStart(6)} records in ${c.chains} chain(s)`);
  }
  // Each finding: the component, its chain and the first bad position (truncated, rewritten, deleted, unregistered...).
  for (const p of (r.body.problems ?? []) as { kind: string; component: string; stream: string; seq: number; upTo?: number; detail: string }[]) {
    console.log(`  ${p.component}: ${p.kind.toUpperCase()} in ${p.stream} at seq ${p.seq}${p.upTo !== undefined ? `..${p.upTo}` : ''}: ${p.detail}`);
  }
  for (const c of (r.body.checkpoints ?? []) as { component: string; length: number; time: string; witnesses: string[] }[]) {
    console.log(`  last witnessed checkpoint of ${c.component}: length ${c.length} at ${c.time}, witnesses ${c.witnesses.join(', ') || 'none'}`);
  }
  // Each node reports its own chains; one that did not answer is named, never counted as intact.
  for (const m of (r.body.missing ?? []) as string[]) console.log(`  ${m}: did not answer, its chains were not verified`);
  console.log(!r.body.ok ? 'audit trail BROKEN' : r.body.complete === false ? 'audit trail verified where it could be read (see above)' : 'audit trail verified: every chain is intact');
  process.exit(r.body.ok ? 0 : 1);
}

void main();
