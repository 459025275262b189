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
import { assertPolicyPurpose, assertPurpose, assertUsable, BREAK_GLASS_STATES, FEDERATION_ADMIN_ROLE, KeyGoneError, matches, requirePermission, requireRole, type ClientRecord, type KeyState, type Policy, type PolicyInput } from '../access/policy.js';
import { groupPublicKey, wrappedDigest } from '../crypto/shares.js';
import { isDkgType, type DkgKeyType, type KeyDescriptor } from './fragment.js';

type KeyType = KeyDescriptor['type'];
import { requestMark, requireClientRoute, type Authenticated, type DealtControl, type KeyControl, type NodeAccess } from './access.js';

const keyRoute = (action: string) => new RegExp(`^/keys/([a-z0-9][a-z0-9-]{0,62})/${action}$`);
const SIGN = keyRoute('sign');
const RECONSTRUCT = keyRoute('reconstruct');
const DECRYPT = keyRoute('decrypt');
const REENCRYPT = keyRoute('reencrypt');
const DATAKEY = keyRoute('datakey');
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

/**
 * The federation-wide floor every key must keep (issue 13), from this node's own configuration
 * (FEDKMS_MIN_THRESHOLD, FEDKMS_MIN_NODES): checked on create, import, generate and reshare.
 */
export interface FederationRules {
  minThreshold: number;
  minNodes: number;
}
/** Defaults: 2-of-3, today's smallest normal federation. */
export const DEFAULT_RULES: FederationRules = { minThreshold: 2, minNodes: 3 };

/**
 * What a create would make on this node (threshold and node set), and what the client's
 * request means when it names neither: the federation's threshold and every member, from
 * the membership document this node holds. `descriptor`: a dealt key's public description.
 */
export interface CreateShape {
  threshold: number;
  nodeIds: string[];
  defaults: { threshold: number; nodeIds: string[] };
  descriptor?: KeyDescriptor;
}

export interface GateOptions {
  claims?: ClaimStore;
  now?: () => number;
  rules?: FederationRules;
}

const sameSet = (x: unknown[], y: string[]) => x.length === y.length && new Set(x).size === x.length && y.every((id) => x.includes(id));

/** A key shape below the federation's minimum is refused, whoever asks. */
export function assertMinimum(rules: FederationRules, threshold: number, nodes: number): void {
  if (threshold < rules.minThreshold || nodes < rules.minNodes) {
    throw new ForbiddenError('below_federation_minimum', `${threshold}-of-${nodes} is below this federation's minimum (threshold ${rules.minThreshold}, ${rules.minNodes} nodes)`);
  }
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
  private readonly rules: FederationRules;

  constructor(
    private readonly access: NodeAccess,
    private readonly latestVersion: (keyId: string) => Promise<number | undefined>,
    opts: GateOptions & { claims: ClaimStore },
  ) {
    this.claims = opts.claims;
    this.now = opts.now ?? Date.now;
    this.rules = opts.rules ?? DEFAULT_RULES;
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
  async decrypt(
    env: ClientEnvelope | undefined,
    keyId: string,
    asked: { ciphertext: string; context: Record<string, string>; recipient: string; version?: number | undefined; destinationKeyId?: string | undefined; destinationContext?: Record<string, string> | undefined },
  ): Promise<GateResult & { requestId: string; approvers: string[] }> {
    const [a, loaded] = await this.access.authenticateFor(env, 'POST /decrypt', keyId);
    // A re-encryption is a decryption whose signed request also names where the plaintext goes.
    const reencrypt = asked.destinationKeyId !== undefined;
    sameKey(requireClientRoute(a, 'POST', reencrypt ? REENCRYPT : DECRYPT, reencrypt ? 'a re-encryption' : 'a decryption'), keyId, 'decryption');
    const control = await this.access.authorize(keyId, a.who, 'decrypt', loaded);
    if (a.body['recipient'] !== asked.recipient) throw new ForbiddenError('recipient_mismatch', 'the partial would be sealed to another key than the client named');
    if (a.body['ciphertext'] !== asked.ciphertext || canonicalJson(a.body['context'] ?? null) !== canonicalJson(asked.context)) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked to decrypt another ciphertext or context');
    }
    if (reencrypt && (a.body['destinationKeyId'] !== asked.destinationKeyId || canonicalJson(a.body['destinationContext'] ?? {}) !== canonicalJson(asked.destinationContext ?? {}))) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked to re-encrypt to another key or context');
    }
    // Approvals, as for reconstruction: an encrypt key's policy `approvals` govern its only release, decryption.
    let approvers: string[] = [];
    const p = control.policy;
    if (p.approvals.required > 0) {
      const v = asked.version ?? (await this.latestVersion(keyId));
      const expiresAt = Number(a.body['expiresAt']);
      if (a.body['expiresAt'] === undefined || !Number.isFinite(expiresAt)) {
        throw new ForbiddenError('approvals_required', `decryption with ${keyId} needs ${p.approvals.required} approval(s) of this exact request: open one with POST /approvals for your recipient key`);
      }
      approvers = await this.access.approvers(p, { keyId, version: v ?? 0, requester: a.who.name, recipient: asked.recipient, expiresAt }, env?.approvals);
    }
    return { actor: actorOf(a), control, requestId: a.request.requestId, approvers };
  }

  /**
   * POST /datakey: a data key the client asked for under this key and context, to be sealed to
   * the recipient it named. Needs the `decrypt` permission (a data key and its ciphertext give
   * no more than encrypting, which is public, and then decrypting) and an active key; no
   * approvals, as it opens no existing ciphertext.
   */
  async datakey(env: ClientEnvelope | undefined, keyId: string, asked: { context: Record<string, string>; recipient: string }): Promise<GateResult & { requestId: string }> {
    const [a, loaded] = await this.access.authenticateFor(env, 'POST /datakey', keyId);
    sameKey(requireClientRoute(a, 'POST', DATAKEY, 'a data key'), keyId, 'data key');
    const control = await this.access.authorize(keyId, a.who, 'decrypt', loaded);
    if (a.body['recipient'] !== asked.recipient) throw new ForbiddenError('recipient_mismatch', 'the data key would be sealed to another key than the client named');
    if (canonicalJson(a.body['context'] ?? {}) !== canonicalJson(asked.context)) throw new ForbiddenError('client_request_mismatch', 'the client asked for a data key under another context');
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
    // One key, one purpose: only a signing key signs, except each key's own reshare canary (above).
    assertPurpose(keyType, 'sign', keyId);
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

  /**
   * PUT /fragment and POST /dkg/round1: a key the client is creating now, with exactly the
   * threshold and node set the client signed for (or the federation's defaults), never below
   * the federation's minimum, and for a dealt key exactly the secret the client committed
   * to. Writes its control document.
   */
  async create(env: ClientEnvelope | undefined, keyId: string, type: 'secret' | DkgKeyType, scope: string, shape?: CreateShape): Promise<GateResult> {
    const a = await this.access.authenticate(env, scope);
    requireClientRoute(a, 'POST', /^\/keys$/, 'creating a key');
    const asked = isDkgType(a.body['type']) ? a.body['type'] : 'secret';
    // A dealt key (PUT /fragment) is always a secret: a key the client asked to be born by DKG
    // must never be dealt, or its dealer (the coordinator) would know it.
    if (a.body['keyId'] !== keyId || asked !== type || (scope === 'PUT /fragment' && type !== 'secret')) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked to create another key');
    }
    requireRole(a.who, CREATORS, 'create keys');
    // Threshold and node set as the client signed them; absent, the federation's (explicit defaults).
    // Every route that creates passes its shape (functions/node.ts); only unit tests of the claim logic omit it.
    if (shape) {
      const askedT = a.body['threshold'] ?? shape.defaults.threshold;
      const askedNodes = Array.isArray(a.body['nodes']) ? (a.body['nodes'] as unknown[]) : shape.defaults.nodeIds;
      if (askedT !== shape.threshold || !sameSet(askedNodes, shape.nodeIds)) {
        throw new ForbiddenError('client_request_mismatch', 'the client asked for another threshold or node set');
      }
      assertMinimum(this.rules, shape.threshold, shape.nodeIds.length);
      if (scope === 'PUT /fragment') checkDealt(a.body, shape.descriptor);
    }
    assertPolicyPurpose((a.body['policy'] ?? {}) as PolicyInput, type, keyId);
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
    const control = { ...this.access.newControl(keyId, a.who.name, a.body['policy'], a.body['state'], type), createRequest: mark };
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

  /**
   * A refresh keeps threshold and nodes; a reshare gets exactly what the client named (or keeps
   * the rest), never below the federation's minimum. A refresh keeps the shape it has, so a key
   * made before a minimum was raised can still be refreshed (and reshared up to the minimum).
   */
  private sameReshare(a: Authenticated, old: { threshold: number; nodeIds: string[] }, next: { threshold: number; nodeIds: string[] }) {
    const isRefresh = a.request.path.endsWith('/refresh');
    const askedT = a.body['threshold'];
    const askedNodes = a.body['nodes'];
    const wantT = isRefresh || askedT === undefined ? old.threshold : askedT;
    const wantNodes = isRefresh || !Array.isArray(askedNodes) ? old.nodeIds : (askedNodes as unknown[]);
    if (next.threshold !== wantT || !sameSet(wantNodes, next.nodeIds)) {
      throw new ForbiddenError('client_request_mismatch', 'the client asked for another threshold or node set');
    }
    if (!isRefresh) assertMinimum(this.rules, next.threshold, next.nodeIds.length);
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

  /**
   * POST /key/state: a lifecycle transition an administrator of the key asked for. Break-glass:
   * a federation administrator (registry role `admin`) may always disable a key, mark it
   * compromised or destroy it, whatever the key's policy says (even `admin: []`); such a move
   * is flagged `breakGlass` and audited as `key.state.break-glass`.
   */
  async transition(env: ClientEnvelope | undefined, keyId: string, state: KeyState): Promise<GateResult & { breakGlass: boolean }> {
    const a = await this.access.authenticate(env, 'POST /key/state');
    sameKey(requireClientRoute(a, 'POST', STATE, 'a state change'), keyId, 'state change');
    if (a.body['state'] !== state) throw new ForbiddenError('client_request_mismatch', 'the client asked for another state');
    const control = await this.access.requireControl(keyId);
    if (control.state === 'destroyed') throw new KeyGoneError(keyId);
    if (matches(control.policy.admin, a.who)) return { actor: actorOf(a), control, breakGlass: false };
    if (a.who.roles.includes(FEDERATION_ADMIN_ROLE) && BREAK_GLASS_STATES.includes(state)) return { actor: actorOf(a), control, breakGlass: true };
    return { actor: actorOf(a), control: await this.access.authorize(keyId, a.who, 'admin', control), breakGlass: false };
  }

  /** PUT /key/policy: a new policy an administrator of the key asked for, granting only the key's purpose. */
  async setPolicy(env: ClientEnvelope | undefined, keyId: string, policy: Policy, keyType?: KeyType): Promise<GateResult> {
    const a = await this.access.authenticate(env, 'PUT /key/policy');
    sameKey(requireClientRoute(a, 'PUT', POLICY, 'a policy change'), keyId, 'policy change');
    if (canonicalJson(a.body['policy']) !== canonicalJson(policy)) throw new ForbiddenError('client_request_mismatch', 'the client asked for another policy');
    const control = await this.access.authorize(keyId, a.who, 'admin');
    if (keyType) assertPolicyPurpose(policy, keyType, keyId);
    return { actor: actorOf(a), control };
  }
}

/**
 * A dealt key (PUT /fragment) is the one the client's signed request asked for. An import
 * carries the client's commitment (lib/crypto/client-auth.ts `signedBody`): the group key
 * s·G of the scalar the client chose and the digest of the secret the client wrapped under
 * it, so nobody between client and node can substitute another secret. A generated key
 * binds what the client can know of it: its origin and length.
 */
function checkDealt(body: Record<string, unknown>, d: KeyDescriptor | undefined): void {
  if (!d) throw new ForbiddenError('client_request_mismatch', 'no dealt key to check');
  if ('secretHex' in body || 'secretBase64' in body) {
    const c = body['commitment'] as { groupKey?: unknown; wrapped?: unknown } | undefined;
    if (!c || typeof c !== 'object') {
      throw new ForbiddenError('import_commitment_required', 'an import must carry the client-signed commitment to its secret (scalarHex); use a current client');
    }
    if (d.origin !== 'import' || groupPublicKey(d.publicPackage) !== c.groupKey || !d.wrapped || wrappedDigest(d.wrapped) !== c.wrapped) {
      throw new ForbiddenError('import_commitment_mismatch', 'the dealt key is not the secret the client committed to');
    }
    return;
  }
  const length = typeof body['length'] === 'number' ? body['length'] : 32;
  if (d.origin !== 'generate' || d.wrapped?.length !== length) {
    throw new ForbiddenError('client_request_mismatch', 'the client asked to generate another key');
  }
}
