/**
 * zod/mini, the tree-shakable build of zod, with zod's English messages. Import it as
 * `import * as z from '.../zod.js'` (a namespace import: a bundler keeps only what is used).
 * Classic zod installs the English locale when loaded; zod/mini does not and would answer
 * every issue with "Invalid input".
 */
import { config } from 'zod/mini';
import { en } from 'zod/locales';
import { string, refine } from 'zod/mini';
import { isStrictB64 } from './encoding.js';

config(en());

export * from 'zod/mini';

/** A base64 field: standard alphabet and canonical padding only (lib/encoding.ts `fromB64` decodes it). */
export const strictBase64 = () => string().check(refine(isStrictB64, { message: 'must be canonical base64 (standard alphabet, padded)' }));
