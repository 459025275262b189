/** What a threshold signature is made over, shared by the coordinator and the nodes that check it. Pure. */
import { utf8 } from '../encoding.js';

/** Domain separation for digest mode: a digest is never signed as if it were the message itself. */
export const DIGEST_PREFIX = 'fedkms/digest/v1\n';
export const digestMessage = (digest: Uint8Array) => new Uint8Array([...utf8(DIGEST_PREFIX), ...digest]);

/** The message a reshare signs with the new shares before the old ones are retired. */
export const canaryMessage = (keyId: string, version: number) => utf8(`fedkms canary ${keyId} v${version}`);
