/**
 * Short-lived protocol state a node keeps between Lambda invocations (DKG rounds,
 * signing nonces): in its own bucket, AES-256-GCM under its wrapping key, bound to
 * node, kind and session id, with an expiry. Losing it only aborts a protocol run.
 */
import { aesGcmOpen, aesGcmSeal, type AeadBox } from '../crypto/aead.js';
import { decodeState, encodeState } from '../crypto/frost.js';
import { utf8 } from '../encoding.js';
import { SessionError } from '../errors.js';
import type { FragmentStore } from '../ports.js';

export const SESSION_ID = /^[A-Za-z0-9-]{16,64}$/;

export class SessionVault {
  constructor(
    private readonly store: FragmentStore,
    private readonly nodeId: string,
    private readonly wrapKey: Uint8Array,
    private readonly ttlS: number,
  ) {}

  private aad = (kind: string, id: string) => `fedkms/session/v1|${this.nodeId}|${kind}|${id}`;

  /** When a session made now expires; `ttlS` overrides the default (pre-published nonces live longer). */
  expiry(now = Date.now(), ttlS = this.ttlS): number {
    return now + ttlS * 1000;
  }

  async save<T extends { expiresAt: number }>(kind: string, id: string, state: T): Promise<void> {
    const box = aesGcmSeal(this.wrapKey, utf8(encodeState(state)), this.aad(kind, id));
    await this.store.putSession(kind, id, JSON.stringify(box));
  }

  async exists(kind: string, id: string): Promise<boolean> {
    return (await this.store.getSession(kind, id)) !== null;
  }

  async load<T extends { expiresAt: number }>(kind: string, id: string): Promise<T> {
    const raw = await this.store.getSession(kind, id);
    if (raw === null) throw new SessionError('session_not_found', `no ${kind} session ${id} on ${this.nodeId}`);
    let state: T;
    try {
      state = decodeState<T>(Buffer.from(aesGcmOpen(this.wrapKey, JSON.parse(raw) as AeadBox, this.aad(kind, id))).toString('utf8'));
    } catch {
      throw new SessionError('session_not_found', `${kind} session ${id} on ${this.nodeId} is unreadable`);
    }
    if (Date.now() > state.expiresAt) {
      await this.drop(kind, id);
      throw new SessionError('session_expired', `${kind} session ${id} expired`);
    }
    return state;
  }

  async drop(kind: string, id: string): Promise<void> {
    await this.store.deleteSession(kind, id).catch(() => undefined);
  }
}
