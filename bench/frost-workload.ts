/**
 * The in-process FROST workload both CPU benchmarks measure (bench/frost-cpu.ts bundled,
 * bench/signing.ts under tsx): one complete threshold signature with every share checked,
 * and a CPU-per-operation timer. Pure computation, no I/O.
 */
import { ed25519, ed25519_FROST as stock } from '@noble/curves/ed25519.js';
import { clearFastFrostCache, fastFrost } from '../lib/crypto/fast-frost.js';

export type Suite = typeof stock;
export type Dealt = ReturnType<Suite['trustedDealer']>;

/** A FROST suite as one threshold signature uses it. */
export interface Roles {
  suite: Suite;
  /** The final check of the aggregate as a plain Ed25519 signature. */
  verify: (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array) => boolean;
  /** Called where a new process would start (each signer's signShare, the coordinator's part). */
  newProcess?: () => void;
}

/** Noble's stock suite, final check by noble's ed25519.verify. */
export const STOCK: Roles = { suite: stock, verify: (sig, msg, pk) => ed25519.verify(sig, msg, pk) };
/** The suite the service signs with, final check by its own verify; parse cache kept (one warm process). */
export const FAST_WARM: Roles = { suite: fastFrost, verify: (sig, msg, pk) => fastFrost.verify(sig, msg, pk) };
/** The same, its point-parse cache cleared per role, as separate Lambdas see it. */
export const FAST_COLD: Roles = { ...FAST_WARM, newProcess: clearFastFrostCache };

/** A trusted-dealer key for n nodes, and the first t of them as signers. */
export function dealtKey(n: number, t: number, suite: Suite = stock): { deal: Dealt; signers: string[] } {
  const ids = Array.from({ length: n }, (_, i) => suite.Identifier.fromNumber(i + 1));
  return { deal: suite.trustedDealer({ min: t, max: n }, ids), signers: ids.slice(0, t) };
}

/** One complete threshold signature, as coordinator and nodes compute it, minus I/O and encodings. */
export function thresholdSignature({ suite, verify, newProcess }: Roles, { deal, signers }: { deal: Dealt; signers: string[] }, msg: Uint8Array): void {
  const gens = signers.map((id) => suite.commit(deal.secretShares[id]!));
  const commitments = gens.map((g) => g.commitments).sort((a, b) => a.identifier.localeCompare(b.identifier));
  const shares: Record<string, Uint8Array> = {};
  signers.forEach((id, i) => {
    newProcess?.();
    shares[id] = suite.signShare(deal.secretShares[id]!, deal.public, gens[i]!.nonces, commitments, msg);
  });
  newProcess?.();
  for (const id of signers) if (!suite.verifyShare(deal.public, commitments, msg, id, shares[id]!)) throw new Error(`share of ${id} fails verification`);
  const sig = suite.aggregate(deal.public, commitments, msg, shares);
  if (!verify(sig, msg, deal.public.commitments[0]!)) throw new Error('aggregate signature fails verification');
}

/** CPU (user + system, whole process) and wall time per operation, µs, after warm-up. */
export function cpuPerOp(warmup: number, iterations: number, op: () => void): { cpuUs: number; wallUs: number } {
  for (let i = 0; i < warmup; i++) op();
  const wall = performance.now();
  const cpu = process.cpuUsage();
  for (let i = 0; i < iterations; i++) op();
  const used = process.cpuUsage(cpu);
  return { cpuUs: (used.user + used.system) / iterations, wallUs: ((performance.now() - wall) * 1000) / iterations };
}
