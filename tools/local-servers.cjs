/**
 * The local stand-ins for S3 (s3rver) and DynamoDB (dynalite), in their own plain
 * Node process: it keeps them out of the test runner's module loader and lets a
 * test take DynamoDB away ("stop-dynamo" on stdin) to check that operations fail closed.
 * "stats" on stdin prints one JSON line {"stats":{...}}: requests served so far by
 * operation, e.g. "s3:GET", "s3:LIST", "dynamodb:PutItem" (for bench/load.ts's cost model).
 * Usage: node tools/local-servers.cjs '{"dir":"...","s3Port":0,"dynamoPort":0,"persist":false}'
 * Prints one JSON line with the ports once both listen.
 */
'use strict';
const path = require('node:path');
const readline = require('node:readline');
const S3rver = require('s3rver');
const dynalite = require('dynalite');

/** Requests by operation since start; counted on arrival, whatever their outcome. */
const stats = {};
const count = (op) => {
  stats[op] = (stats[op] || 0) + 1;
};

/**
 * S3 operation of a path-style request, as S3 bills it: a bucket-level GET is a LIST
 * (ListObjects or, with list-type=2, ListObjectsV2); other bucket-level calls keep their method.
 */
function s3Operation(req) {
  const u = new URL(req.url || '/', 'http://x');
  const hasKey = u.pathname.replace(/^\/+/, '').includes('/') && !u.pathname.endsWith('/');
  if (req.method === 'GET' && (!hasKey || u.searchParams.has('list-type'))) return 's3:LIST';
  return hasKey ? `s3:${req.method}` : `s3:${req.method}-bucket`;
}

/** DynamoDB's operation is the x-amz-target header, e.g. "DynamoDB_20120810.GetItem". */
function dynamoOperation(req) {
  const target = String(req.headers['x-amz-target'] || '');
  return `dynamodb:${target.split('.').pop() || 'unknown'}`;
}

/**
 * s3rver's file store removes a key's folder once a delete leaves it empty, so a put into
 * that folder at the same moment fails to open its file: an unhandled stream error that
 * ends this whole process (seen with concurrent signing sessions under load). Puts, copies
 * and deletes of one bucket therefore take turns; a turn waits at most TURN_WAIT_MS for the
 * one before it, so a put whose upload never ends cannot block the bucket.
 */
const TURN_WAIT_MS = 2000;

function writesTakeTurns(store) {
  const last = new Map();
  const inTurn = (bucket, fn) => {
    const before = last.get(bucket) || Promise.resolve();
    const mine = Promise.race([before, new Promise((r) => setTimeout(r, TURN_WAIT_MS).unref())]).then(fn);
    last.set(bucket, mine.catch(() => undefined));
    return mine;
  };
  const bucketOf = { putObject: (o) => o.bucket, copyObject: (_srcBucket, _srcKey, destBucket) => destBucket, deleteObject: (bucket) => bucket };
  for (const [name, bucket] of Object.entries(bucketOf)) {
    const original = store[name].bind(store);
    store[name] = (...args) => inTurn(bucket(...args), () => original(...args));
  }
}

/**
 * S3 replaces an object atomically: a reader sees the old object or the new one. s3rver
 * does not: a put truncates the object's file and then writes it, and its metadata after,
 * so a get at the same moment can read a torn object (seen as a rare 5xx when concurrent
 * creates of one key id read the control document another create was writing). Per key,
 * a read therefore waits for the write in progress, and a write for the reads in progress
 * and the write before it; each wait is bounded by TURN_WAIT_MS.
 */
function keysReadAtomically(store) {
  const locks = new Map();
  const entry = (k) => {
    let e = locks.get(k);
    if (!e) locks.set(k, (e = { readers: new Set(), writer: Promise.resolve() }));
    return e;
  };
  const bounded = (p) => Promise.race([p, new Promise((r) => setTimeout(r, TURN_WAIT_MS).unref())]);
  const write = (k, fn) => {
    const e = entry(k);
    const run = bounded(Promise.all([e.writer, ...e.readers])).then(fn);
    e.writer = run.catch(() => undefined);
    return run;
  };
  const read = async (k, fn) => {
    const e = entry(k);
    await bounded(e.writer);
    let finish;
    const reading = new Promise((r) => (finish = r));
    e.readers.add(reading);
    const done = () => {
      e.readers.delete(reading);
      finish();
    };
    try {
      const object = await fn();
      const stream = object && object.content;
      // The read lasts until its content stream is consumed or dropped, not just opened.
      if (stream && typeof stream.once === 'function') {
        stream.once('close', done);
        stream.once('end', done);
        stream.once('error', done);
      } else done();
      return object;
    } catch (err) {
      done();
      throw err;
    }
  };
  const keyOf = (bucket, key) => `${bucket}/${key}`;
  const getObject = store.getObject.bind(store);
  const putObject = store.putObject.bind(store);
  const copyObject = store.copyObject.bind(store);
  const deleteObject = store.deleteObject.bind(store);
  store.getObject = (bucket, key, options) => read(keyOf(bucket, key), () => getObject(bucket, key, options));
  store.putObject = (object) => write(keyOf(object.bucket, object.key), () => putObject(object));
  store.copyObject = (...args) => write(keyOf(args[2], args[3]), () => copyObject(...args));
  store.deleteObject = (bucket, key) => write(keyOf(bucket, key), () => deleteObject(bucket, key));
}

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  const s3 = new S3rver({ address: '127.0.0.1', port: opts.s3Port || 0, silent: true, directory: path.join(opts.dir, 's3'), allowMismatchedSignatures: true });
  // Key locks inside, bucket turns outside: a write first takes its bucket's turn, then its key.
  keysReadAtomically(s3.store);
  writesTakeTurns(s3.store);
  const s3addr = await s3.run();
  s3.httpServer.on('request', (req) => count(s3Operation(req)));
  const ddb = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(opts.persist ? { path: path.join(opts.dir, 'dynamodb') } : {}) });
  await new Promise((resolve, reject) => ddb.listen(opts.dynamoPort || 0, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  ddb.on('request', (req) => count(dynamoOperation(req)));
  process.stdout.write(`${JSON.stringify({ s3Port: s3addr.port, dynamoPort: ddb.address().port })}\n`);
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'stats') return void process.stdout.write(`${JSON.stringify({ stats })}\n`);
    if (line.trim() !== 'stop-dynamo') return;
    // Drop keep-alive connections too, or clients would keep talking to a "stopped" server.
    ddb.close(() => process.stdout.write('{"dynamo":"stopped"}\n'));
    ddb.closeAllConnections();
  });
  const shutdown = () => Promise.allSettled([s3.close(), new Promise((r) => ddb.close(r))]).then(() => process.exit(0));
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // Exit with the parent: its closing stdin is the signal.
  process.stdin.on('end', shutdown);
}

main().catch((e) => {
  process.stderr.write(`local servers failed: ${e && e.message}\n`);
  process.exit(1);
});
