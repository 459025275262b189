#!/usr/bin/env node
/**
 * Keeps the machine's cores busy, to run the test suite (or anything else) under load:
 *   node tools/busy.cjs [seconds] [workers]      (defaults: until killed, one worker per core)
 *   npm run busy -- 600
 * Each worker thread spins on SHA-256 in a tight loop; the process exits after `seconds`
 * or on Ctrl-C/SIGTERM. Development tooling only.
 */
'use strict';
const os = require('node:os');
const { Worker, isMainThread } = require('node:worker_threads');
const { createHash } = require('node:crypto');

if (!isMainThread) {
  const block = Buffer.alloc(4096, 7);
  for (;;) createHash('sha256').update(block).digest();
}

const seconds = Number(process.argv[2] || 0);
const workers = Number(process.argv[3] || os.cpus().length);
if (!Number.isFinite(seconds) || seconds < 0 || !Number.isInteger(workers) || workers < 1) {
  process.stderr.write('usage: node tools/busy.cjs [seconds] [workers]\n');
  process.exit(2);
}
for (let i = 0; i < workers; i++) new Worker(__filename);
process.stderr.write(`busy: ${workers} worker(s) spinning${seconds ? ` for ${seconds} s` : ' until stopped'} (pid ${process.pid})\n`);
const stop = () => process.exit(0);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
if (seconds) setTimeout(stop, seconds * 1000);
