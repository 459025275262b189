/**
 * Which client request may drive which node route, checked by the node itself. Each
 * method authenticates the relayed client request, checks that it asks for exactly
 * what the coordinator is asking this node to do (same key, same recipient, same
 * message, same state), and checks the policy and lifecycle stored on this node.
 */
import { canonicalJson, sha256Hex } from '../crypto/hash.js';
import { canaryMessage, digestMessage } from '../crypto/sign-message.js';
import type { ClientEnvelope } from '../crypto/client-auth.js';
import { fromB64, fromHex } from '../encoding.js';
import { ConflictError, ForbiddenError, KeyBeingCreatedError } from '../errors.js';
import type { ReplayGuard } from '../ports.js';
import { assertUsable, KeyGoneError, requirePermission, requireRole, type ClientRecord, type KeyState, type Policy } from '../access/policy.js';
import { isDkgType, type DkgKeyType, type KeyDescriptor } from './fragment.js';

type KeyType = KeyDescriptor['type'];
import { requestMark, requireClientRoute, type Authenticated, type DealtControl, type KeyControl, type NodeAccess } from './access.js';

const keyRoute = (action: string) => new RegExp(`^/keys/([a-z0-9][a-z0-9-]{0,62})/${action}$`);
const SIGN = keyRoute('sign');
const RECONSTRUCT = keyRoute('reconstruct');
const DECRYPT = keyRoute('decrypt');
const RESHARE = keyRoute('(?:refresh|reshare)');
const STATE = keyRoute('state');
const PREPROCESS = keyRoute('preprocess');
const POLICY = keyRoute('policy');
const DESCRIBE = /^\/keys\/([a-z0-9][a-z0-9-]{0,62})(?:\/public)?$/;
const CREATORS = ['admin', 'key-creator'];
/**
 * A create claims its key id on a node by writing the key's control document with its own
 * request mark before anything is stored. The claim holds the id for CREATE_WINDOW_MS
 * against other clients, until the create's own rollback releases it, or until the key's
 * fragments exist (then the id is simply taken).
 */
export const CREATE_WINDOW_MS = 15 * 60_000;
/**
 * How long a claim may still belong to a create that is running: API Gateway stops waiting
 * at 30 s and every function times out sooner. Past it, the claim's own client (its retry,
 * with a new request id) may take the id over; other clients wait for the window.
 */
export const CREATE_SETTLE_MS = 30_000;
/** The time a released claim carries: stale at once, so the id is free, and the document says who let it go. */
export const RELEASED_AT = new Date(0).toISOString();
/** The right to replace one version of a control document is claimed per time slot, two slots at a time (see `exclusive`). */
const SLOT_MS = 10_000;

/** Where the gate makes a change of a control document exclusive: the node's replay table, under the node's scope. */
export interface ClaimStore {
  scope: string;
  guard: ReplayGuard;
}

export interface GateOptions {
  claims?: ClaimStore;
  now?: () => number;
}

/** The claim a control document holds now, or undefined when it holds none (never claimed, released, or stale). */
export function liveClaim(c: KeyControl | null, now: number): { client: string; age: number } | undefined {
  if (!c) return undefined;
  const age = now - Date.parse(c.updatedAt);
  if (!(age < CREATE_WINDOW_MS)) return undefined;
  return { client: c.createRequest?.split(':')[0] ?? '', age };
}

const actorOf = (a: Authenticated) => `client:${a.who.name}`;
const sameKey = (m: RegExpExecArray, keyId: string, what: string) => {
  if (m[1] !== keyId) throw new ForbiddenError('client_request_mismatch', `the client request is for another key than this ${what}`);
};
const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

export interface GateResult {
  actor: string;
  control: KeyControl;
}

export class ClientGate {
  private readonly claims: ClaimStore;
  private readonly now: () => number;

  constructor(
    private readonly access: NodeAccess,
    private readonly latestVersion: (keyId: string) => Promise<number | undefined>,
    opts: GateOptions & { claims: ClaimStore },
  ) {
    this.claims = opts.claims;
    this.now = opts.now ?? Date.now;
  }

  /** GET /fragment: a reconstruction the client asked for, sealed to the recipient the client named. */
  async fragment(env: ClientEnvelope | undefined, keyId: string, recipient: string, version?: number): Promise<GateResult & { mode: 'end-to-end' | 'server-side'; approvers: string[] }> {
    const [a, loaded] = await this.access.authenticateFor(env, 'GET /fragment', keyId);
    sameKey(requireClientRoute(a, 'POST', RECONSTRUCT, 'a reconstruction'), keyId, 'fragment');
    const control = await this.access.authorize(keyId, a.who, 'reconstruct', loaded);
    const p = control.policy;
    const asked = a.body['recipient'];
    let mode: 'end-to-end' | 'server-side' = 'end-to-end';
    if (typeof asked === 'string') {
      if (asked !== recipient) throw new ForbiddenError('recipient_mismatch', 'the share would be sealed to another key than the client named');
    } else if (p.serverSideCombine && p.approvals.required === 0) {
      mode = 'server-side';
    } else {
      throw new ForbiddenError('end_to_end_required', `key ${keyId} is reconstructed only end to end: send your own recipient key`);
    }
    let approvers: string[] = [];
    if (p.approvals.required > 0) {
      const v = version ?? (await this.latestVersion(keyId));
      const expiresAt = Number(a.body['expiresAt']);
      approvers = await this.access.approvers(p, { keyId, version: v ?? 0, requester: a.who.name, recipient, expiresAt: Number.isFinite(expiresAt) ? expiresAt : 0 }, env?.approvals);
    }
    return { actor: actorOf(a), control, mode, approvers };
  }

  /**
   * POST /decrypt: a threshold decryption the client asked for, of exactly this ciphertext
   * under exactly this context, sealed to the recipient the client named, by a client the
   * key's policy lets decrypt, while the key is active.
   */
  async decrypt(env: ClientEnvelope | undefined, keyId: string, asked: { ciphertext: string; context: Record<string, string>; recipient: string }): Promise<GateResult & { requestId: string }> {
    const [a, loaded] = await this.access.authenticateFor(env, 'POST /decrypt', keyId);
    sameKey(requireClientRoute(a, 'POST', DECRYPT, 'a decryption'), keyId, 'decryption');
    const control = await this.access.authorize(keyId, a.who, 'decrypt', loaded);
    if (a.body['recipient'] !== asked.recipient) throw new ForbiddenError('recipient_mismatch', 'the partial would be sealed to another key than the client named');
    if (a.body['ciphertext'] !== asked.ciphertext || canonicalJson(a.body['context'] ?? null) !== canonicalJson(asked.context)) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked to decrypt another ciphertext or context');
    }
    return { actor: actorOf(a), control, requestId: a.request.requestId };
  }

  /**
   * POST /sign/share: the exact message the client asked to sign, or a reshare's canary.
   * In two steps, so the client's checks (its record, signature and replay slot, and the
   * key's control document) run while the node reads its session and share: calling
   * this starts them, and the returned check, given the session's message and version,
   * waits for them and decides.
   */
  beginSignShare(env: ClientEnvelope | undefined, keyId: string, signerSet: string): (message: Uint8Array, version: number, keyType?: KeyType) => Promise<GateResult> {
    // The replay scope is the client's request and the signer set, never the session: one
    // request gets at most one share from this node per signer set (a retry without a
    // cheater changes the set), so a coordinator cannot mint signature after signature.
    const started = this.access.authenticateFor(env, `POST /sign/share#${signerSet}`, keyId);
    // Its refusal is thrown by the check; a request that fails before reaching it has failed already.
    started.catch(() => undefined);
    return async (message, version, keyType) => this.checkSignShare(await started, keyId, message, version, keyType);
  }

  /**
   * POST /sign/commit with a client request: fresh nonces only for a client that may sign
   * with the key (or an administrator's reshare, for its canary), checked before any work.
   */
  async signCommit(env: ClientEnvelope, keyId: string, sessionId: string): Promise<GateResult> {
    const [a, loaded] = await this.access.authenticateFor(env, `POST /sign/commit#${sessionId}`, keyId);
    if (a.request.method === 'POST' && RESHARE.test(a.request.path)) {
      sameKey(RESHARE.exec(a.request.path)!, keyId, 'signature');
      return { actor: actorOf(a), control: await this.access.authorize(keyId, a.who, 'admin', loaded) };
    }
    sameKey(requireClientRoute(a, 'POST', SIGN, 'a signature'), keyId, 'signature');
    return { actor: actorOf(a), control: await this.access.authorize(keyId, a.who, 'sign', loaded) };
  }

  /** POST /sign/preprocess: filling a key's nonce pool needs the key's sign permission, checked before any work. */
  async preprocess(env: ClientEnvelope | undefined, keyId: string): Promise<GateResult> {
    const [a, loaded] = await this.access.authenticateFor(env, 'POST /sign/preprocess', keyId);
    sameKey(requireClientRoute(a, 'POST', PREPROCESS, 'publishing nonce commitments'), keyId, 'preprocessing');
    return { actor: actorOf(a), control: await this.access.authorize(keyId, a.who, 'sign', loaded) };
  }

  private async checkSignShare([a, loaded]: Awaited<ReturnType<NodeAccess['authenticateFor']>>, keyId: string, message: Uint8Array, version: number, keyType?: KeyType): Promise<GateResult> {
    if (a.request.method === 'POST' && RESHARE.test(a.request.path)) {
      sameKey(RESHARE.exec(a.request.path)!, keyId, 'signature');
      const control = await this.access.authorize(keyId, a.who, 'admin', loaded);
      if (!bytesEqual(message, canaryMessage(keyId, version))) throw new ForbiddenError('client_request_mismatch', 'a reshare authorizes only its canary signature');
      return { actor: actorOf(a), control };
    }
    sameKey(requireClientRoute(a, 'POST', SIGN, 'a signature'), keyId, 'signature');
    // An encryption key signs nothing but its own reshare canary (above): its scalar is for decryption.
    if (keyType === 'encrypt') throw new ConflictError('key_not_signing', `key ${keyId} is an encryption key; it does not sign`);
    const control = await this.access.authorize(keyId, a.who, 'sign', loaded);
    const m = a.body['message'];
    const d = a.body['digest'];
    let asked: Uint8Array | undefined;
    try {
      asked = typeof m === 'string' ? fromB64(m) : typeof d === 'string' ? digestMessage(fromHex(d)) : undefined;
    } catch {
      asked = undefined;
    }
    if (!asked || !bytesEqual(asked, message)) throw new ForbiddenError('client_request_mismatch', 'the client asked to sign another message');
    return { actor: actorOf(a), control };
  }

  /** PUT /fragment and POST /dkg/round1: a key the client is creating now. Writes its control document. */
  async create(env: ClientEnvelope | undefined, keyId: string, type: 'secret' | DkgKeyType, scope: string): Promise<GateResult> {
    const a = await this.access.authenticate(env, scope);
    requireClientRoute(a, 'POST', /^\/keys$/, 'creating a key');
    const asked = isDkgType(a.body['type']) ? a.body['type'] : 'secret';
    // A dealt key (PUT /fragment) is always a secret: a key the client asked to be born by DKG
    // must never be dealt, or its dealer (the coordinator) would know it.
    if (a.body['keyId'] !== keyId || asked !== type || (scope === 'PUT /fragment' && type !== 'secret')) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked to create another key');
    }
    requireRole(a.who, CREATORS, 'create keys');
    const readAt = this.now();
    const [existing, latest] = await Promise.all([this.access.control(keyId), this.latestVersion(keyId)]);
    if (existing?.state === 'destroyed') throw new KeyGoneError(keyId);
    // Stored fragments mean the key exists, with or without a control document: a missing
    // document must never let a creator take over someone else's key.
    if (latest !== undefined) throw new ConflictError('key_exists', `key ${keyId} already exists`);
    const mark = requestMark(a);
    const held = existing?.createRequest === mark ? undefined : liveClaim(existing, readAt);
    // Another request's create owns the id until it stores the key, rolls back or goes stale.
    // Its own client may take it over once that create cannot be running any more (a retry).
    if (held && !(held.client === a.who.name && held.age >= CREATE_SETTLE_MS)) throw this.beingCreated(keyId, held.age);
    await this.exclusive(keyId, existing, readAt);
    const control = { ...this.access.newControl(keyId, a.who.name, a.body['policy'], a.body['state']), createRequest: mark };
    await this.access.putControl(control);
    return { actor: actorOf(a), control };
  }

  /** When trying again may get another answer: once the holder has settled, else once the claim expires. */
  private beingCreated(keyId: string, age: number): KeyBeingCreatedError {
    const waitMs = age < CREATE_SETTLE_MS ? CREATE_SETTLE_MS - age : CREATE_WINDOW_MS - age;
    return new KeyBeingCreatedError(keyId, waitMs / 1000);
  }

  /**
   * Make this change of `keyId`'s control document the only one made from the version read
   * at `readAt` (S3 offers no conditional put here). The right to replace that version is
   * claimed once in the replay table, in the slot of `readAt` and the next one: two
   * contenders less than a slot apart always meet on one slot, and one that died between
   * claim and write blocks that version for two slots at most, never for good.
   */
  private async exclusive(keyId: string, current: KeyControl | null, readAt: number): Promise<void> {
    const version = current ? sha256Hex(canonicalJson(current)) : 'none';
    const slot = Math.floor(readAt / SLOT_MS);
    const expiresAtS = Math.ceil((readAt + 3 * SLOT_MS) / 1000);
    for (const s of [slot, slot + 1]) {
      if (!(await this.claims.guard.claim(this.claims.scope, `control:${keyId}:${version}:${s}`, expiresAtS))) throw this.beingCreated(keyId, 0);
    }
    // Past half a slot, a contender that read the same version later may hold the next slots.
    if (this.now() - readAt > SLOT_MS / 2) throw this.beingCreated(keyId, 0);
  }

  /**
   * Reshare and refresh, dealer side: an administrator of an active key asked for exactly
   * this new threshold and node set (a refresh keeps both).
   */
  async reshareDeal(env: ClientEnvelope | undefined, keyId: string, old: { threshold: number; nodeIds: string[] }, next: { threshold: number; nodeIds: string[] }): Promise<GateResult> {
    const a = await this.access.authenticate(env, 'POST /reshare/deal');
    sameKey(requireClientRoute(a, 'POST', RESHARE, 'a reshare'), keyId, 'reshare');
    const control = await this.access.authorize(keyId, a.who, 'admin');
    assertUsable(keyId, control.state, 'sign');
    this.sameReshare(a, old, next);
    return { actor: actorOf(a), control };
  }

  /**
   * Reshare, receiver side. A node that already holds the key checks the administrator
   * against its own policy; a node joining the key takes the state and policy all dealers
   * signed for, and checks the administrator against that.
   */
  async reshareReceive(env: ClientEnvelope | undefined, keyId: string, old: { threshold: number; nodeIds: string[] }, next: { threshold: number; nodeIds: string[] }) {
    const a = await this.access.authenticate(env, 'POST /reshare/receive');
    sameKey(requireClientRoute(a, 'POST', RESHARE, 'a reshare'), keyId, 'reshare');
    this.sameReshare(a, old, next);
    return {
      actor: actorOf(a),
      /** Called once the dealers' signed control is known, before anything is kept. */
      admit: async (dealt: DealtControl): Promise<void> => {
        const local = await this.access.control(keyId);
        const rules = local ?? dealt;
        assertUsable(keyId, rules.state, 'sign');
        requirePermission(rules.policy, a.who, 'admin', keyId);
        if (!local) {
          await this.access.putControl({ keyId, ...dealt, updatedAt: new Date().toISOString(), createRequest: requestMark(a) });
        }
      },
    };
  }

  /** A refresh keeps threshold and nodes; a reshare gets exactly what the client named (or keeps the rest). */
  private sameReshare(a: Authenticated, old: { threshold: number; nodeIds: string[] }, next: { threshold: number; nodeIds: string[] }) {
    const isRefresh = a.request.path.endsWith('/refresh');
    const askedT = a.body['threshold'];
    const askedNodes = a.body['nodes'];
    const wantT = isRefresh || askedT === undefined ? old.threshold : askedT;
    const wantNodes = isRefresh || !Array.isArray(askedNodes) ? old.nodeIds : (askedNodes as unknown[]);
    const sameSet = (x: unknown[], y: string[]) => x.length === y.length && y.every((id) => x.includes(id));
    if (next.threshold !== wantT || !sameSet(wantNodes, next.nodeIds)) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked for another threshold or node set');
    }
  }

  /** DELETE /fragment: a creator rolling back its own failed create, or an administrator retiring a version. */
  async deleteVersion(env: ClientEnvelope | undefined, keyId: string, version: number, versions: number[]): Promise<GateResult> {
    const a = await this.access.authenticate(env, `DELETE /fragment#${version}`);
    const readAt = this.now();
    const control = await this.access.requireControl(keyId);
    // Only the request that wrote this control document may remove what it stored:
    // a create rolling back, or a reshare rolling back on a node it brought in.
    const ownRequest = control.createRequest === requestMark(a);
    if (a.request.method === 'POST' && a.request.path === '/keys') {
      if (a.body['keyId'] !== keyId || !ownRequest || version !== 1) {
        throw new ForbiddenError('client_request_mismatch', 'a create request may only roll back the version it created');
      }
      // A create rolling back also lets go of the id, whether or not it stored anything
      // here (the route then removes its version 1, when there is one).
      if (control.updatedAt !== RELEASED_AT) {
        await this.exclusive(keyId, control, readAt);
        await this.access.putControl({ ...control, updatedAt: RELEASED_AT });
      }
      return { actor: actorOf(a), control };
    }
    sameKey(requireClientRoute(a, 'POST', RESHARE, 'deleting a version'), keyId, 'deletion');
    const authorized = await this.access.authorize(keyId, a.who, 'admin', control);
    // A reshare retires old versions or rolls back its new one; it never removes a key's last
    // version (that is destruction, a lifecycle transition of its own).
    if (!versions.some((v) => v !== version) && !ownRequest) {
      throw new ForbiddenError('client_request_mismatch', 'a reshare may not delete the last version of a key; destroy it instead');
    }
    return { actor: actorOf(a), control: authorized };
  }

  /**
   * GET /key on behalf of a client's describe request: the describe permission. Destroyed
   * keys answer 410 to everyone. Returns the control document it read (null for none).
   */
  async describe(env: ClientEnvelope | undefined, keyId: string): Promise<KeyControl | null> {
    const control = await this.access.control(keyId);
    if (control?.state === 'destroyed') throw new KeyGoneError(keyId);
    if (!env || env.method !== 'GET' || !DESCRIBE.test(env.path)) return control;
    const a = await this.access.authenticate(env, 'GET /key');
    sameKey(DESCRIBE.exec(env.path)!, keyId, 'description');
    return this.access.authorize(keyId, a.who, 'describe', control);
  }

  /** PUT /client: an administrator registers, updates or disables a client. */
  async registerClient(env: ClientEnvelope | undefined, record: ClientRecord): Promise<string> {
    const a = await this.access.authenticate(env, `PUT /client#${record.name}`);
    requireClientRoute(a, 'POST', /^\/clients$/, 'registering a client');
    requireRole(a.who, ['admin'], 'register clients');
    const asked = { name: a.body['name'], publicKey: a.body['publicKey'], roles: a.body['roles'], status: a.body['status'] ?? 'active' };
    if (canonicalJson(asked) !== canonicalJson(record)) throw new ForbiddenError('client_request_mismatch', 'the administrator registered another client');
    return actorOf(a);
  }

  /** POST /key/state: a lifecycle transition an administrator of the key asked for. */
  async transition(env: ClientEnvelope | undefined, keyId: string, state: KeyState): Promise<GateResult> {
    const a = await this.access.authenticate(env, 'POST /key/state');
    sameKey(requireClientRoute(a, 'POST', STATE, 'a state change'), keyId, 'state change');
    if (a.body['state'] !== state) throw new ForbiddenError('client_request_mismatch', 'the client asked for another state');
    return { actor: actorOf(a), control: await this.access.authorize(keyId, a.who, 'admin') };
  }

  /** PUT /key/policy: a new policy an administrator of the key asked for. */
  async setPolicy(env: ClientEnvelope | undefined, keyId: string, policy: Policy): Promise<GateResult> {
    const a = await this.access.authenticate(env, 'PUT /key/policy');
    sameKey(requireClientRoute(a, 'PUT', POLICY, 'a policy change'), keyId, 'policy change');
    if (canonicalJson(a.body['policy']) !== canonicalJson(policy)) throw new ForbiddenError('client_request_mismatch', 'the client asked for another policy');
    return { actor: actorOf(a), control: await this.access.authorize(keyId, a.who, 'admin') };
  }
}
