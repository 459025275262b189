import { BadRequestError } from './errors.js';

/** Key ids reach S3 keys and DynamoDB keys, so they are validated before anything else sees them. */
export const KEY_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function parseKeyId(raw: unknown): string {
  if (typeof raw !== 'string' || !KEY_ID_PATTERN.test(raw)) {
    throw new BadRequestError('invalid_key_id', 'keyId must match ^[a-z0-9][a-z0-9-]{0,62}$');
  }
  return raw;
}
