/**
 * The interfaces domain code depends on. lib/aws implements them against S3 and
 * DynamoDB; unit tests use in-memory fakes.
 */
/** Node-owned documents: the client registry, key control documents, the federation's membership. */
export type DocKind = 'client' | 'control' | 'federation' | 'witness';

export interface FragmentStore {
  /** The stored object, or null when absent. */
  get(keyId: string, version: number): Promise<string | null>;
  /** Store a new object; false when that version already exists (never overwrites). */
  create(keyId: string, version: number, body: string): Promise<boolean>;
  delete(keyId: string, version: number): Promise<void>;
  /** Every key with its stored versions, ascending. */
  list(): Promise<{ keyId: string; versions: number[] }[]>;
  versions(keyId: string): Promise<number[]>;
  /** Cheap reachability check for /status. */
  ping(): Promise<void>;
  /** Short-lived protocol state (DKG rounds, signing nonces), stored already sealed by the caller. */
  putSession(kind: string, id: string, body: string): Promise<void>;
  getSession(kind: string, id: string): Promise<string | null>;
  deleteSession(kind: string, id: string): Promise<void>;
  /** Small node-owned documents (client registry, key control), stored already sealed by the caller. */
  getDoc(kind: DocKind, name: string): Promise<string | null>;
  putDoc(kind: DocKind, name: string, body: string): Promise<void>;
  listDocs(kind: DocKind): Promise<string[]>;
}

export interface AuditEntry {
  actor: string;
  action: string;
  keyId?: string;
  outcome: 'success' | 'failure' | 'denied';
  details?: Record<string, unknown>;
}

export interface AuditRecord extends AuditEntry {
  stream: string;
  seq: number;
  time: string;
  prevHash: string;
  hash: string;
  /** The writer's Ed25519 signature over `hash` (lib/audit/chain.ts recordSigStatement); absent on chains written before signing. */
  sig?: string;
}

export interface AuditLog {
  /** Append to `stream`'s hash chain; throws AuditUnavailableError when it cannot. */
  append(stream: string, entry: AuditEntry): Promise<AuditRecord>;
  /** Every record, for verification. */
  readAll(): Promise<AuditRecord[]>;
}

export interface ReplayGuard {
  /** Atomically record `id` in `scope`; false if it was seen before. */
  claim(scope: string, id: string, expiresAtEpochS: number): Promise<boolean>;
}

/** A node's pre-published nonce commitment (RFC 9591 preprocessing), waiting to be used once. */
export interface PooledCommitment {
  keyId: string;
  nodeId: string;
  sessionId: string;
  version: number;
  digest: string;
  /** The key descriptor the node answered with, canonical JSON. */
  descriptor: string;
  /** That descriptor's signing threshold, so a listing can plan without the descriptor. */
  threshold: number;
  commitment: { identifier: string; hiding: string; binding: string };
  expiresAt: number;
}

/** A pool listing: all but the descriptor, which comes back with the commitment when it is taken. */
export type PoolEntry = Omit<PooledCommitment, 'descriptor'>;

/** Where the stateless coordinator keeps published commitments between requests. */
export interface CommitmentPool {
  add(items: PooledCommitment[]): Promise<void>;
  /** Unexpired commitments of a key. */
  list(keyId: string): Promise<PoolEntry[]>;
  /** Atomically remove one commitment and return it whole; undefined if another request took it first. */
  take(item: PoolEntry): Promise<PooledCommitment | undefined>;
  clear(keyId: string): Promise<void>;
}

/** A reconstruction request waiting for approvals, and the approvals collected so far. */
export interface ApprovalRecord {
  keyId: string;
  digest: string;
  request: { keyId: string; version: number; requester: string; recipient: string; expiresAt: number };
  /** Approver name to signature (base64) over the request digest. */
  approvals: Record<string, string>;
  createdAt: string;
}

/** Where the coordinator collects approvals. Untrusted by design: every node re-checks every signature. */
export interface ApprovalStore {
  /** False if a request with this digest exists already. */
  open(record: ApprovalRecord): Promise<boolean>;
  get(keyId: string, digest: string): Promise<ApprovalRecord | null>;
  /** Add one approval; false if the request is unknown. */
  approve(keyId: string, digest: string, approver: string, signature: string): Promise<boolean>;
  list(keyId: string): Promise<ApprovalRecord[]>;
}
