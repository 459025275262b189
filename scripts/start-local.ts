/**
 * `npm start`: a complete local federation on its embedded defaults, as separate operators:
 * every node and the coordinator in its own processes with its own S3 and DynamoDB servers,
 * data directory and secret. Forms the federation (the first signed membership), imports the
 * original example key, prints where everything listens, and runs until Ctrl-C.
 * Env: FEDKMS_PORT (default 3000), FEDKMS_CONTROL_PORT (default 3099), FEDKMS_CONFIG, FEDKMS_HOME (default .local/).
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { ROOT, startLocalStack, type LocalStack } from '../tools/local-stack.js';
import { FedkmsClient } from '../lib/client/api.js';
import { listen } from '../tools/node-proxy.js';
import { untilStopped } from './until-stopped.js';

const EXAMPLE_KEY_ID = 'example';
const EXAMPLE_KEY_HEX = 'A94F3D82C1B7E6F9';

/** The original example: its policy keeps the original server-side flow available (audited as such). */
async function importExample(stack: LocalStack) {
  const res = await new FedkmsClient(stack.url, stack.admin).call('POST', '/keys', { keyId: EXAMPLE_KEY_ID, secretHex: EXAMPLE_KEY_HEX, policy: { serverSideCombine: true } });
  if (res.status === 201) return 'imported';
  if (res.status === 409) return 'already present';
  throw new Error(`importing the example key failed: ${res.status} ${JSON.stringify(res.body)}`);
}

/**
 * Loopback-only control API, so `npm run demo` and the README walkthrough can stop a node
 * (its process is killed: a real crash), start it again, or make its endpoint slow.
 */
function controlServer(stackOf: () => LocalStack | undefined, port: number) {
  return listen(async (req, res) => {
    const stack = stackOf();
    const m = /^\/nodes\/([a-z0-9-]+)\/(stop|start|slow)(?:\?ms=(\d+))?$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !m || !stack) {
      res.writeHead(404).end();
      return;
    }
    try {
      const id = m[1]!;
      if (m[2] === 'stop') await stack.crashNode(id);
      else if (m[2] === 'start') {
        await stack.setNode(id, { kind: 'up' });
        await stack.restartNode(id);
      } else await stack.setNode(id, { kind: 'slow', delayMs: Number(m[3] ?? 2000) });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ nodeId: id, action: m[2], pid: stack.units.get(id)?.offline?.pid ?? null }));
    } catch (e) {
      res.writeHead(400).end(String((e as Error).message));
    }
  }, port);
}

async function main() {
  // The federation's state folder: .local/ beside the code, or FEDKMS_HOME (a second federation, a test).
  const dir = path.resolve(process.env['FEDKMS_HOME'] ?? path.join(ROOT, '.local'));
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
  // The CLI's view: the coordinator, the administrator's key, and the administrator's public key,
  // which it uses to check the membership document before pinning node identity keys from it.
  writeFileSync(path.join(dir, 'federation.json'), JSON.stringify({ url: stack.url, client: { name: stack.admin.name, privateKey: stack.secrets['admin']!['privateKey'] }, adminKeys: { admin: stack.secrets['admin']!['publicKey'] }, dashboardToken: stack.secrets['dashboard']?.['viewerToken'], controlUrl: `http://127.0.0.1:${controlPort}`, nodes: Object.fromEntries([...stack.proxies].map(([id, p]) => [id, p.url])) }, null, 2), { mode: 0o600 });

  const t = stack.config.threshold;
  console.log(`
fedkms local federation is up: ${t}-of-${stack.config.nodes.length}
  coordinator   ${stack.url}            (administrator client "admin": key in .local/federation.json)
${[...stack.proxies].map(([id, p]) => `  ${id.padEnd(13)} ${p.url}/status   (pid ${stack.units.get(id)?.offline?.pid}, data .local/nodes/${id}/, S3 ${stack.units.get(id)?.s3Endpoint}, DynamoDB ${stack.units.get(id)?.dynamoEndpoint})`).join('\n')}
  coordinator   data .local/coordinator/ (DynamoDB ${stack.units.get('coordinator')?.dynamoEndpoint}, audit table ${stack.auditTable})
  control       http://127.0.0.1:${controlPort}/nodes/<id>/{stop,start,slow}   (stop kills the node's process; start restarts it)
  new operator  npm run node -- --id node4   (then: npx fedkms nodes add .local/nodes/node4/identity.json)
  dashboard     ${stack.url}/dashboard   (any user name; password: dashboardToken in .local/federation.json)
  example key   "${EXAMPLE_KEY_ID}" (${EXAMPLE_KEY_HEX}): ${example}

Try:
  curl -s ${stack.url}/status
  curl -s $(npm run -s sign-request -- GET /keys/${EXAMPLE_KEY_ID}) ${stack.url}/keys/${EXAMPLE_KEY_ID}
  curl -s -X POST $(npm run -s sign-request -- POST /keys/${EXAMPLE_KEY_ID}/reconstruct) ${stack.url}/keys/${EXAMPLE_KEY_ID}/reconstruct
  npm run demo
  npx fedkms status && npx fedkms reconstruct ${EXAMPLE_KEY_ID}
Ctrl-C stops everything.`);

  untilStopped('the federation', async () => {
    control.close();
    await stack.stop();
  });
}

main().catch((e) => {
  console.error(`fedkms: ${(e as Error).message}`);
  process.exit(1);
});
