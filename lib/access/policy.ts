/**
 * Key policies, client records and key lifecycle. Pure: every node evaluates these
 * itself, against the policy stored with its own fragment.
 */
import * as z from '../zod.js';
import { CLIENT_NAME } from '../crypto/client-auth.js';
import { ConflictError, FedkmsError, ForbiddenError } from '../errors.js';

export const OPERATIONS = ['sign', 'reconstruct', 'decrypt', 'describe', 'admin'] as const;
export type Operation = (typeof OPERATIONS)[number];

const ROLE = /^[a-z][a-z0-9-]{0,31}$/;
/** `client:<name>` or `role:<role>`. */
const principal = z.string().check(z.maxLength(80), z.refine((p) => (p.startsWith('client:') && CLIENT_NAME.test(p.slice(7))) || (p.startsWith('role:') && ROLE.test(p.slice(5))), {
  message: 'a principal is client:<name> or role:<role>',
}));
const principals = z.array(principal).check(z.maxLength(32));

export const policySchema = z
  .strictObject({
    sign: principals,
    reconstruct: principals,
    /**
     * Threshold decryption with an `encrypt` key (a partial per node, sealed to the client).
     * Optional so that control documents written before it existed still parse: absent, the
     * `reconstruct` list decides (it held the same principals by default).
     */
    decrypt: z.optional(principals),
    describe: principals,
    admin: principals,
    /** Reconstruction needs this many approvals by distinct approvers other than the requester. */
    approvals: z.strictObject({ required: z.number().check(z.int(), z.gte(0), z.lte(10)), approvers: principals }),
    /** May the coordinator combine shares itself (the original example flow)? Off by default. */
    serverSideCombine: z.boolean(),
  });
export type Policy = z.infer<typeof policySchema>;

/** A policy as a client may give it on create or update: every field optional, defaults from the creator. */
export const policyInputSchema = z.partial(policySchema); // strict, as policySchema is
export type PolicyInput = z.infer<typeof policyInputSchema>;

/**
 * One key, one purpose (issue 13). A key's purpose follows from its type, fixed at creation:
 * a `secret` key (imported or generated) is exportable and only reconstructed; an `ed25519`
 * key only signs; an `encrypt` key only decrypts. The scalar of an exportable key must never
 * also be a signing key: whoever may reconstruct it could forge signatures.
 */
export type KeyPurpose = 'reconstruct' | 'sign' | 'decrypt';
export const PURPOSE_OPS: readonly KeyPurpose[] = ['reconstruct', 'sign', 'decrypt'];
export function purposeOf(type: 'secret' | 'ed25519' | 'encrypt'): KeyPurpose {
  return type === 'secret' ? 'reconstruct' : type === 'ed25519' ? 'sign' : 'decrypt';
}

/** A policy may grant only its key's own purpose among sign, reconstruct and decrypt. */
export function assertPolicyPurpose(policy: PolicyInput, type: 'secret' | 'ed25519' | 'encrypt', keyId: string): void {
  const purpose = purposeOf(type);
  const stray = PURPOSE_OPS.filter((op) => op !== purpose && (policy[op]?.length ?? 0) > 0);
  if (stray.length) {
    throw new ForbiddenError('policy_purpose_mismatch', `key ${keyId} is a ${type} key: its policy may grant ${purpose} only, not ${stray.join(', ')} (one key, one purpose)`);
  }
}

/** Refuse `op` on a key of `type` that is not its purpose (the reshare canary is checked apart). */
export function assertPurpose(type: 'secret' | 'ed25519' | 'encrypt' | undefined, op: KeyPurpose, keyId: string): void {
  if (type === undefined || purposeOf(type) === op) return;
  if (op === 'sign') throw new ConflictError('key_not_signing', `key ${keyId} is ${type === 'secret' ? 'an exportable secret key' : 'an encryption key'}; it does not sign (one key, one purpose)`);
  if (op === 'reconstruct') throw new ConflictError('key_not_exportable', `key ${keyId} is a distributed ${type === 'encrypt' ? 'encryption' : 'signing'} key and is never exported`);
  throw new ConflictError('key_not_encryption', `key ${keyId} is not an encryption key (type ${type})`);
}

/** The policy of a new key: the creator and administrators hold its one purpose (and describe, admin) unless told otherwise. */
export function defaultPolicy(creator: string, input: PolicyInput = {}, type?: 'secret' | 'ed25519' | 'encrypt'): Policy {
  const owner = [`client:${creator}`, 'role:admin'];
  // With a type, operations outside the key's purpose default to nobody.
  const forOp = (op: KeyPurpose) => (type === undefined || purposeOf(type) === op ? owner : []);
  return {
    sign: input.sign ?? forOp('sign'),
    reconstruct: input.reconstruct ?? forOp('reconstruct'),
    decrypt: input.decrypt ?? forOp('decrypt'),
    describe: input.describe ?? [...owner, 'role:auditor'],
    admin: input.admin ?? owner,
    approvals: input.approvals ?? { required: 0, approvers: ['role:approver'] },
    serverSideCombine: input.serverSideCombine ?? false,
  };
}

export const ROLES = z.array(z.string().check(z.regex(ROLE))).check(z.maxLength(16));
export const clientRecordSchema = z
  .strictObject({
    name: z.string().check(z.regex(CLIENT_NAME)),
    publicKey: z.string().check(z.regex(/^[A-Za-z0-9+/]{43}=$/)),
    roles: ROLES,
    status: z.enum(['active', 'disabled']),
  });
export type ClientRecord = z.infer<typeof clientRecordSchema>;

export interface Principal {
  name: string;
  roles: readonly string[];
}

export const matches = (list: readonly string[], who: Principal): boolean =>
  list.includes(`client:${who.name}`) || who.roles.some((r) => list.includes(`role:${r}`));

/** Who holds `op` under `policy`; a policy that predates `decrypt` lets the `reconstruct` list decrypt. */
export const holders = (policy: Policy, op: Operation): readonly string[] => (op === 'decrypt' ? (policy.decrypt ?? policy.reconstruct) : policy[op]);

export function requirePermission(policy: Policy, who: Principal, op: Operation, keyId: string): void {
  if (!matches(holders(policy, op), who)) throw new ForbiddenError('not_authorized', `client ${who.name} may not ${op} key ${keyId}`);
}

/** Federation-wide operations that belong to no key. */
export function requireRole(who: Principal, roles: readonly string[], what: string): void {
  if (!who.roles.some((r) => roles.includes(r))) throw new ForbiddenError('not_authorized', `client ${who.name} may not ${what}`);
}

// NIST SP 800-57 Part 1 §7: pre-activation, active, suspended (disabled), compromised, destroyed.
export const KEY_STATES = ['pre-active', 'active', 'disabled', 'compromised', 'destroyed'] as const;
export type KeyState = (typeof KEY_STATES)[number];

const TRANSITIONS: Record<KeyState, readonly KeyState[]> = {
  'pre-active': ['active', 'compromised', 'destroyed'],
  active: ['disabled', 'compromised'],
  disabled: ['active', 'compromised', 'destroyed'],
  compromised: ['destroyed'],
  destroyed: [],
};

/**
 * Break-glass (issue 13): the states a federation administrator (registry role `admin`) may
 * always move a key to, whatever the key's own policy says (even `admin: []`). Never back
 * to active: that needs an administrator of the key.
 */
export const BREAK_GLASS_STATES: readonly KeyState[] = ['disabled', 'compromised', 'destroyed'];
export const FEDERATION_ADMIN_ROLE = 'admin';


export function assertTransition(keyId: string, from: KeyState, to: KeyState): void {
  if (!TRANSITIONS[from].includes(to)) {
    throw new ConflictError('illegal_transition', `key ${keyId} cannot go from ${from} to ${to}`);
  }
}

/** Signing, reconstruction and decryption need an active key; a destroyed key answers nothing but its state. */
export function assertUsable(keyId: string, state: KeyState, op: Operation): void {
  if (state === 'destroyed') throw new KeyGoneError(keyId);
  if ((op === 'sign' || op === 'reconstruct' || op === 'decrypt') && state !== 'active') {
    throw new ConflictError(`key_${state.replace('-', '_')}`, `key ${keyId} is ${state}; ${op} needs an active key`);
  }
}

/** 410: the key existed and was destroyed; its fragments are gone from every bucket. */
export class KeyGoneError extends FedkmsError {
  constructor(keyId: string) {
    super('key_destroyed', 410, `key ${keyId} was destroyed`);
  }
}

export const transitionSchema = z.strictObject({ state: z.enum(KEY_STATES), reason: z.optional(z.string().check(z.maxLength(200))) });
