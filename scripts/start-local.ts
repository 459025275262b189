/**
 * `npm start`: a complete local federation on its embedded defaults. Starts local S3
 * and DynamoDB, sls offline with every node and the coordinator, imports the original
 * example key, prints where everything listens, and runs until Ctrl-C.
 * Env: FEDKMS_PORT (default 3000), FEDKMS_CONTROL_PORT (default 3099), FEDKMS_CONFIG.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { ROOT, startLocalStack, type LocalStack } from '../tools/local-stack.js';
import { FedkmsClient } from '../lib/client/api.js';
import { listen } from '../tools/node-proxy.js';

const EXAMPLE_KEY_ID = 'example';
const EXAMPLE_KEY_HEX = 'A94F3D82C1B7E6F9';

/** The original example: its policy keeps the original server-side flow available (audited as such). */
async function importExample(stack: LocalStack) {
  const res = await new FedkmsClient(stack.url, stack.admin).call('POST', '/keys', { keyId: EXAMPLE_KEY_ID, secretHex: EXAMPLE_KEY_HEX, policy: { serverSideCombine: true } });
  if (res.status === 201) return 'imported';
  if (res.status === 409) return 'already present';
  throw new Error(`importing the example key failed: ${res.status} ${JSON.stringify(res.body)}`);
}

/** Loopback-only control API, so `npm run demo` can stop and restart a node. */
function controlServer(stackOf: () => LocalStack | undefined, port: number) {
  return listen(async (req, res) => {
    const stack = stackOf();
    const m = /^\/nodes\/([a-z0-9-]+)\/(stop|start|slow)(?:\?ms=(\d+))?$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !m || !stack) {
      res.writeHead(404).end();
      return;
    }
    try {
      const mode = m[2] === 'stop' ? { kind: 'down' as const } : m[2] === 'slow' ? { kind: 'slow' as const, delayMs: Number(m[3] ?? 2000) } : { kind: 'up' as const };
      await stack.setNode(m[1]!, mode);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ nodeId: m[1], mode }));
    } catch (e) {
      res.writeHead(400).end(String((e as Error).message));
    }
  }, port);
}

async function main() {
  const dir = path.join(ROOT, '.local');
  const httpPort = Number(process.env['FEDKMS_PORT'] ?? 3000);
  const controlPort = Number(process.env['FEDKMS_CONTROL_PORT'] ?? 3099);
  console.log('fedkms: starting the local federation...');
  // Both fixed ports are claimed before anything starts: a port another process holds is a
  // clear error, and nothing is left running behind it.
  let stack: LocalStack | undefined;
  const control = await controlServer(() => stack, controlPort);
  try {
    stack = await startLocalStack({ dir, httpPort, persist: true, watch: true, configFile: process.env['FEDKMS_CONFIG'], log: (l) => console.log(`  ${l}`) });
  } catch (e) {
    control.close();
    throw e;
  }
  const example = await importExample(stack);
  writeFileSync(path.join(dir, 'federation.json'), JSON.stringify({ url: stack.url, client: { name: stack.admin.name, privateKey: stack.secrets['admin']!['privateKey'] }, nodeKeys: Object.fromEntries([...stack.proxies.keys()].map((id) => [id, stack.secrets[id]!['signingPublic']])), dashboardToken: stack.secrets['dashboard']?.['viewerToken'], controlUrl: `http://127.0.0.1:${controlPort}`, nodes: Object.fromEntries([...stack.proxies].map(([id, p]) => [id, p.url])) }, null, 2), { mode: 0o600 });

  const t = stack.config.threshold;
  console.log(`
fedkms local federation is up: ${t}-of-${stack.config.nodes.length}
  coordinator   ${stack.url}            (administrator client "admin": key in .local/federation.json)
${[...stack.proxies].map(([id, p]) => `  ${id.padEnd(13)} ${p.url}/status`).join('\n')}
  local S3      ${stack.s3Endpoint}
  local DynamoDB ${stack.dynamoEndpoint}   (audit table ${stack.auditTable})
  control       http://127.0.0.1:${controlPort}/nodes/<id>/{stop,start,slow}   (local fault injection)
  dashboard     ${stack.url}/dashboard   (any user name; password: dashboardToken in .local/federation.json)
  example key   "${EXAMPLE_KEY_ID}" (${EXAMPLE_KEY_HEX}): ${example}

Try:
  curl -s ${stack.url}/status
  curl -s $(npm run -s sign-request -- GET /keys/${EXAMPLE_KEY_ID}) ${stack.url}/keys/${EXAMPLE_KEY_ID}
  curl -s -X POST $(npm run -s sign-request -- POST /keys/${EXAMPLE_KEY_ID}/reconstruct) ${stack.url}/keys/${EXAMPLE_KEY_ID}/reconstruct
  npm run demo
  npx fedkms status && npx fedkms reconstruct ${EXAMPLE_KEY_ID}
Ctrl-C stops everything.`);

  const shutdown = async () => {
    console.log('\nfedkms: stopping...');
    control.close();
    await stack.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((e) => {
  console.error(`fedkms: ${(e as Error).message}`);
  process.exit(1);
});
