/**
 * The coordinator's view of the client registry and its first check of a client
 * request. The registry lives on the nodes (each sealed under its own key); the
 * coordinator believes a record only when a threshold of nodes return it identically,
 * and caches that briefly. This check only turns strangers away early: every node
 * re-checks the client's signature and policy itself before releasing anything.
 */
import { clientRecordSchema, type ClientRecord, type Principal } from '../access/policy.js';
import { verifyClientRequest, type SignedClientRequest } from '../crypto/client-auth.js';
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { fromB64 } from '../encoding.js';
import { UnauthorizedError } from '../errors.js';
import type { ReplayGuard } from '../ports.js';
import * as z from '../zod.js';
import type { CoordinatorDeps } from './common.js';
import { gather, isTransient, quorumFailure, type Verdict } from './fanout.js';

const listSchema = z.object({ nodeId: z.string(), clients: z.array(clientRecordSchema).check(z.maxLength(10_000)) });
const CACHE_MS = 10_000;
/** How old a confirmed record may be and still stand in for nodes that are only overloaded. */
const STALE_MS = 5 * 60_000;

/** Per Lambda instance: a disabled client stops passing this early check within CACHE_MS (nodes stop it at once). */
const cache = new Map<string, { at: number; record: ClientRecord | null }>();

export class ClientDirectory {
  constructor(private readonly deps: CoordinatorDeps) {}

  /** Every node's registry, grouped by what `pick` takes from it; `stopEarly` once a threshold agree. */
  private gatherRegistries<V>(pick: (clients: ClientRecord[]) => V, stopEarly: boolean) {
    return gather({
      nodes: this.deps.nodes,
      timeoutMs: this.deps.timeoutMs,
      stopEarly,
      ...(stopEarly ? { initial: this.deps.threshold } : {}),
      call: (n, signal) => this.deps.client.call(n, { method: 'GET', path: '/clients' }, signal),
      judge: (n, a): Verdict<V> => {
        const p = listSchema.safeParse(a);
        if (!p.success || p.data.nodeId !== n.id) return { ok: false, status: 'error', error: 'malformed client list' };
        const value = pick(p.data.clients);
        return { ok: true, group: sha256Hex(canonicalJson(value)), need: this.deps.threshold, value };
      },
    });
  }

  /** One client's record, as a threshold of nodes agree on it (null when they agree it does not exist). */
  async lookup(name: string, now = Date.now()): Promise<ClientRecord | null> {
    const hit = cache.get(name);
    if (hit && now - hit.at < CACHE_MS) return hit.record;
    const result = await this.gatherRegistries((clients) => clients.find((c) => c.name === name) ?? null, true);
    const w = result.winner;
    if (!w || w.members.length < w.need) {
      // Load must not turn into a refusal of a registered client: when the nodes were only
      // busy or slow, a record confirmed within STALE_MS stands (every node re-checks it anyway).
      const onlyLoad = result.reports.every((r) => r.status === 'valid' || isTransient(r.status));
      if (hit && onlyLoad && now - hit.at < STALE_MS) return hit.record;
      throw quorumFailure(
        onlyLoad
          ? `could not confirm client ${name} with a quorum of nodes: they did not answer in time; try again shortly`
          : `the nodes disagree about client ${name}: see each node's report`,
        { nodes: result.reports },
      );
    }
    const record = w.members[0]!.value;
    cache.set(name, { at: now, record });
    return record;
  }

  async list() {
    const result = await this.gatherRegistries((clients) => clients, false);
    return { clients: result.winner?.members[0]?.value ?? [], agreed: (result.winner?.members.length ?? 0) >= this.deps.threshold, nodes: result.reports };
  }

  static forget(name: string): void {
    cache.delete(name);
  }
}

/**
 * Routes whose every effect needs the nodes' own approval of the client's request: the
 * coordinator only checks its shape and freshness and lets each node decide, which keeps
 * a registry fan-out off the hot path. Every other route is decided here in full.
 */
export function checkFreshness(req: SignedClientRequest, maxSkewS: number, now = Date.now()): Principal {
  if (Math.abs(now - Number(req.timestamp)) > maxSkewS * 1000) throw new UnauthorizedError('request_stale', 'request timestamp outside the allowed window');
  return { name: req.client, roles: [] };
}

/** Signature, freshness, standing and single use of a client request, at the coordinator. */
export async function authenticateClient(
  req: SignedClientRequest,
  opts: { directory: ClientDirectory; replay: ReplayGuard; maxSkewS: number; now?: number },
): Promise<Principal> {
  const now = opts.now ?? Date.now();
  if (Math.abs(now - Number(req.timestamp)) > opts.maxSkewS * 1000) throw new UnauthorizedError('request_stale', 'request timestamp outside the allowed window');
  const record = await opts.directory.lookup(req.client, now);
  if (!record) throw new UnauthorizedError('client_unknown', `client ${req.client} is not registered`);
  if (!verifyClientRequest(fromB64(record.publicKey), req)) throw new UnauthorizedError('client_signature_invalid', 'client signature does not verify');
  if (record.status !== 'active') throw new UnauthorizedError('client_disabled', `client ${req.client} is disabled`);
  if (!(await opts.replay.claim('coordinator', `client:${req.client}:${req.requestId}`, Math.floor(now / 1000) + 2 * opts.maxSkewS))) {
    throw new UnauthorizedError('request_replayed', 'request id was already used');
  }
  return { name: record.name, roles: record.roles };
}
