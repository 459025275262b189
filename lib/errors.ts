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
  constructor(message: string, details: ErrorDetails) {
    super('quorum_not_reached', 503, message, details);
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
