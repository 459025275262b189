/**
 * zod/mini, the tree-shakable build of zod, with zod's English messages. Import it as
 * `import * as z from '.../zod.js'` (a namespace import: a bundler keeps only what is used).
 * Classic zod installs the English locale when loaded; zod/mini does not and would answer
 * every issue with "Invalid input".
 */
import { config } from 'zod/mini';
import { en } from 'zod/locales';

config(en());

export * from 'zod/mini';
