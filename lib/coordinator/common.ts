/** What the coordinator's parts share: dependencies, the audit stream, the public view of a key. */
import { groupPublicKey } from '../crypto/shares.js';
import type { KeyDescriptor } from '../node/fragment.js';
import type { AuditLog, CommitmentPool } from '../ports.js';
import type { NodeEndpoint } from '../runtime-config.js';
import type { NodeClient } from './node-client.js';

export const AUDIT_STREAM = 'reconstruct';

export interface CoordinatorDeps {
  nodes: NodeEndpoint[];
  threshold: number;
  timeoutMs: number;
  client: NodeClient;
  audit: AuditLog;
  /** Pre-published commitments for one-round signing; without it every signature takes two rounds. */
  pool?: CommitmentPool;
  /** Commitments kept per node and key in the pool (POOL_MAX_PER_NODE); default lib/coordinator/signing.ts. */
  poolMaxPerNode?: number;
}

export function summarize(d: KeyDescriptor) {
  return {
    keyId: d.keyId,
    version: d.version,
    type: d.type,
    state: d.state,
    createdAt: d.createdAt,
    threshold: d.publicPackage.threshold,
    total: d.publicPackage.total,
    groupPublicKey: groupPublicKey(d.publicPackage),
    commitments: d.publicPackage.commitments,
    verifyingShares: d.publicPackage.verifyingShares,
    participants: d.participants,
    origin: d.origin ?? 'import',
    ...(d.wrapped ? { secretLength: d.wrapped.length } : {}),
  };
}
