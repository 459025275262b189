/** What the CLI prints: tables, per-node reports, and failures mapped to exit codes with a hint. */
import type { ApiAnswer } from '../../lib/client/api.js';

export const EXIT = {
  ok: 0,
  /** The operation failed: refused input, unknown key, key exists, invalid signature, broken audit chain, server error. */
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

export const out = (s = '') => process.stdout.write(`${s}\n`);
export const err = (s: string) => process.stderr.write(`${s}\n`);
let progressToStderr = false;
/** Progress lines: stdout, unless stdout carries a document to keep clean (an armored signature). */
export const progress = (s = '') => (progressToStderr ? err(s) : out(s));
export function progressOnStderr(): void {
  progressToStderr = true;
}
export const ms = (x: number | undefined) => (x === undefined ? '' : `${x.toFixed(1)} ms`);
export const nodeLabel = (id: string) => id.replace(/^node(\d+)$/, 'Node $1');

export function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export interface Report {
  nodeId: string;
  status: string;
  latencyMs?: number;
  error?: string;
  code?: string;
  httpStatus?: number;
}
export const reportsOf = (body: any): Report[] => body?.nodes ?? body?.error?.details?.nodes ?? [];

/** One line per node for a change applied on every node (state, policy, registration). */
export function printApplied(nodes: Report[], done: string) {
  for (const n of nodes) {
    out(`  ${nodeLabel(n.nodeId)}: ${n.status === 'valid' ? done : `${n.status.replace(/_/g, ' ')}${n.code ? ` ${n.code}` : ''}${n.error ? ` (${n.error})` : ''}`}${n.latencyMs !== undefined ? ` (${ms(n.latencyMs)})` : ''}`);
  }
}

/** The per-node table a refusal carries (`details.nodes`), so "not enough nodes" says which and why. */
export function nodeTable(nodes: Report[]): string {
  return table(['NODE', 'ANSWER', 'LATENCY', 'DETAIL'], nodes.map((n) => [n.nodeId, n.status.replace(/_/g, ' '), ms(n.latencyMs), [n.httpStatus, n.code, n.error].filter(Boolean).join(' ')]));
}

/** What to do next, for the refusals a user can act on. */
export function hintFor(code: string, message: string, a: ApiAnswer): string | undefined {
  const nodes = reportsOf(a.body);
  const up = nodes.filter((n) => n.status === 'valid').length;
  if (code === 'quorum_not_reached' && /client/.test(message)) {
    return `The coordinator confirms your client identity with a threshold of nodes before anything else, and ${up} of ${nodes.length || '?'} agreed. `
      + 'Check `fedkms status`: bring the nodes that are down back up (or wait for busy ones), then run the command again. '
      + 'If the nodes answered but disagree, a node\'s registry is stale: an administrator can re-register the client with `fedkms clients add`.';
  }
  if (code === 'quorum_not_reached') {
    return a.retryAfter
      ? `The nodes were busy or slow (nothing was released); try again in ${a.retryAfter} s.`
      : `Fewer than the threshold of nodes gave a valid answer (${up} did). Check \`fedkms status\`, bring nodes back, and run the command again.`;
  }
  if (code === 'auth_missing') return 'No client identity: pass --client NAME --key FILE, set FEDKMS_CLIENT and FEDKMS_CLIENT_KEY, or use a federation file (--federation).';
  if (code === 'client_unknown') return 'This client is not registered: an administrator registers it with `fedkms clients add NAME --public-key KEY`.';
  if (code === 'client_signature_invalid') return 'The client key does not match the registered public key for this client name.';
  if (code === 'request_stale') return "This machine's clock differs from the federation's by more than the allowed skew (default 60 s).";
  if (code === 'not_authorized') return "The key's policy does not allow this client to do that; an administrator of the key can change it with `fedkms keys policy KEY --set` (a policy grants only its key's one purpose: secret keys reconstruct, ed25519 keys sign, encrypt keys decrypt).";
  if (code === 'approvals_required' || code === 'approvals_expired') return 'This key needs approvals: `fedkms approvals open KEY`, have approvers run `fedkms approvals approve KEY DIGEST`, then `fedkms reconstruct KEY --request FILE`.';
  if (code === 'key_not_exportable') return 'A key born by DKG is never reconstructed: sign with it (`fedkms sign`) instead.';
  if (code === 'illegal_transition') return 'Allowed: pre-active -> active, compromised, destroyed; active -> disabled, compromised; disabled -> active, compromised, destroyed; compromised -> destroyed.';
  if (code === 'use_reshare') return 'A refresh keeps the threshold and nodes; to change them use `fedkms keys reshare KEY --threshold T --nodes a,b,c`.';
  return undefined;
}

/** Map an unsuccessful answer to an exit code, and say why on stderr (or as JSON on stdout). */
export function failure(a: ApiAnswer, json: boolean, what: string): number {
  const code: string = a.body?.error?.code ?? `http_${a.status}`;
  const message: string = a.body?.error?.message ?? `HTTP ${a.status}`;
  if (json) out(JSON.stringify(a.body ?? { error: { code, message } }));
  else {
    const nodes = reportsOf(a.body);
    // Below quorum, the per-node table says which nodes failed and how.
    if (nodes.length && (code === 'quorum_not_reached' || a.status === 503 || a.status === 502)) progress(nodeTable(nodes));
    err(`${what} failed: ${message} (${code}, HTTP ${a.status})`);
    const hint = hintFor(code, message, a);
    if (hint) err(`hint: ${hint}`);
  }
  if (a.status === 401 || a.status === 403) return EXIT.auth;
  if (code === 'quorum_not_reached') return EXIT.quorum;
  if (a.status === 503 || a.status === 502 || a.status === 504) return EXIT.unavailable;
  return EXIT.failed;
}
