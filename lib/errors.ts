/**
 * Typed errors. Every error a caller can see is one of these; the HTTP middleware
 * maps them to a status and a stable `code`. Messages and details must never hold
 * secrets, fragments or stack traces.
 */
export type ErrorDetails = Record<string, unknown>;

export class FedkmsError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly details?: ErrorDetails,
    /** Sent as Retry-After: the refusal came before any effect, and trying again later may succeed. */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends FedkmsError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, 400, message, details);
  }
}

export class UnauthorizedError extends FedkmsError {
  constructor(code: string, message: string) {
    super(code, 401, message);
  }
}

export class ForbiddenError extends FedkmsError {
  constructor(code: string, message: string) {
    super(code, 403, message);
  }
}

export class NotFoundError extends FedkmsError {
  constructor(code: string, message: string) {
    super(code, 404, message);
  }
}

export class ConflictError extends FedkmsError {
  constructor(code: string, message: string) {
    super(code, 409, message);
  }
}

export class PayloadTooLargeError extends FedkmsError {
  constructor(limit: number) {
    super('payload_too_large', 413, `request body exceeds ${limit} bytes`);
  }
}

/** Not enough healthy nodes answered; `details.nodes` names what went wrong with each. */
export class QuorumError extends FedkmsError {
  constructor(message: string, details: ErrorDetails, retryAfterS?: number) {
    super('quorum_not_reached', 503, message, details, retryAfterS);
  }
}

/** The request's deadline passed (or left too little to start): the caller gets a failure, never a hang or a hidden timeout. */
export class DeadlineExceededError extends FedkmsError {
  constructor(message = 'the request deadline passed before the work could finish') {
    super('deadline_exceeded', 504, message);
  }
}

/** The audit record could not be written, so the operation is refused (fail closed). */
export class AuditUnavailableError extends FedkmsError {
  constructor() {
    super('audit_unavailable', 503, 'audit log unavailable; operation refused (fail closed)');
  }
}

/** The node's own copy of a fragment failed its at-rest integrity check. */
export class FragmentCorruptedError extends FedkmsError {
  constructor(nodeId: string, keyId: string) {
    super('fragment_corrupted', 500, `fragment of key ${keyId} on ${nodeId} failed its integrity check`, { nodeId, keyId });
  }
}

export interface Culprit {
  nodeId: string;
  reason: string;
}

/** Another participant sent something that fails its checks: the protocol stops and names it. */
export class PeerMisbehaviorError extends FedkmsError {
  constructor(message: string, culprits: Culprit[]) {
    super('peer_misbehaved', 400, message, { culprits });
  }
}

/** A multi-party protocol run (DKG, signing) was stopped; `details` names the nodes at fault. */
export class ProtocolAbortedError extends FedkmsError {
  constructor(code: 'dkg_aborted' | 'signing_failed', message: string, details: ErrorDetails) {
    super(code, 502, message, details);
  }
}

/** A protocol session is unknown, expired, already used, or at another step. */
export class SessionError extends FedkmsError {
  constructor(code: 'session_not_found' | 'session_expired' | 'session_state' | 'nonce_used', message: string) {
    super(code, 409, message);
  }
}

export class StorageError extends FedkmsError {
  constructor(message: string) {
    super('storage_unavailable', 503, message);
  }
}

export const isFedkmsError = (e: unknown): e is FedkmsError => e instanceof FedkmsError;

/**
 * Another create of this key id holds it: in flight, or abandoned and not yet expired.
 * Nothing was done; `retryAfterS` says when trying again may get another answer.
 */
export class KeyBeingCreatedError extends FedkmsError {
  constructor(keyId: string, retryAfterS: number, details?: ErrorDetails) {
    super('key_being_created', 409, `key ${keyId} is being created by another request`, details, Math.max(1, Math.ceil(retryAfterS)));
  }
}
