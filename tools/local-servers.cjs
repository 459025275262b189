/**
 * The local stand-ins for S3 (s3rver) and DynamoDB (dynalite), in their own plain
 * Node process: it keeps them out of the test runner's module loader and lets a
 * test take DynamoDB away ("stop-dynamo" on stdin) to check that operations fail closed.
 * Usage: node tools/local-servers.cjs '{"dir":"...","s3Port":0,"dynamoPort":0,"persist":false}'
 * Prints one JSON line with the ports once both listen.
 */
'use strict';
const path = require('node:path');
const readline = require('node:readline');
const S3rver = require('s3rver');
const dynalite = require('dynalite');

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  const s3 = new S3rver({ address: '127.0.0.1', port: opts.s3Port || 0, silent: true, directory: path.join(opts.dir, 's3'), allowMismatchedSignatures: true });
  const s3addr = await s3.run();
  const ddb = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(opts.persist ? { path: path.join(opts.dir, 'dynamodb') } : {}) });
  await new Promise((resolve, reject) => ddb.listen(opts.dynamoPort || 0, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  process.stdout.write(`${JSON.stringify({ s3Port: s3addr.port, dynamoPort: ddb.address().port })}\n`);
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
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
