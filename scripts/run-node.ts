/**
 * `npm run node -- --id node4`: start one more node as a new operator would, against the
 * federation `npm start` runs: its own secret, storage, sls offline and endpoint, under
 * .local/nodes/<id>/. It writes its identity document to .local/nodes/<id>/identity.json and
 * runs until Ctrl-C. It is not a member until an administrator adds that document
 * (`npx fedkms nodes add .local/nodes/<id>/identity.json`).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, startNodeOperator, type PublicInfo } from '../tools/local-stack.js';
import { Admission } from '../tools/admission.js';
import { freePort, portFree } from '../tools/operator.js';
import { fingerprint } from '../lib/federation/membership.js';
import { untilStopped } from './until-stopped.js';

async function main() {
  let id: string | undefined;
  let port: string | undefined;
  try {
    ({ values: { id, port } } = parseArgs({ options: { id: { type: 'string' }, port: { type: 'string' } } }));
  } catch (e) {
    throw new Error(`${(e as Error).message.split('\n')[0]}\nusage: npm run node -- --id <node-id> [--port N]`);
  }
  if (!id || !/^[a-z0-9-]{1,32}$/.test(id)) throw new Error('usage: npm run node -- --id <node-id> [--port N]   (ids: a-z, 0-9, -; at most 32)');
  // The federation's state folder: .local/ beside the code, or FEDKMS_HOME (a second federation, a test).
  const dir = path.resolve(process.env['FEDKMS_HOME'] ?? path.join(ROOT, '.local'));
  const infoFile = path.join(dir, 'federation-public.json');
  if (!existsSync(infoFile)) throw new Error('no running federation found (.local/federation-public.json): start one with `npm start` first');
  const publicInfo = JSON.parse(readFileSync(infoFile, 'utf8')) as PublicInfo;
  const unitDir = path.join(dir, 'nodes', id);
  // The same endpoint across restarts: it is written into the membership document.
  const portFile = path.join(unitDir, 'port.json');
  const remembered = existsSync(portFile) ? (JSON.parse(readFileSync(portFile, 'utf8')) as { port: number }).port : undefined;
  const chosen = port ? Number(port) : remembered && (await portFree(remembered)) ? remembered : await freePort();
  console.log(`fedkms: starting ${id} as its own operator (data .local/nodes/${id}/)...`);
  const cleanups: (() => Promise<void>)[] = [];
  const { unit, proxy } = await startNodeOperator({ id, dir: unitDir, stage: publicInfo.stage, publicInfo, admission: new Admission(id, publicInfo.concurrency), port: chosen, persist: true, onCleanup: (c) => cleanups.push(c) });
  writeFileSync(portFile, JSON.stringify({ port: proxy.port }));
  const identity = (await (await fetch(`${proxy.url}/identity`)).json()) as { signingPublic: string; x25519Public: string };
  const identityFile = path.join(unitDir, 'identity.json');
  writeFileSync(identityFile, JSON.stringify(identity, null, 2));
  console.log(`
${id} is up: ${proxy.url}/status   (pid ${unit.offline?.pid}; S3 ${unit.s3Endpoint}, DynamoDB ${unit.dynamoEndpoint})
  identity document  ${path.relative(process.cwd(), identityFile)}
  fingerprint        ${fingerprint(identity.signingPublic, identity.x25519Public)}   (read it to the administrator over another channel)
It is not a member yet. An administrator adds it, then reshares keys onto it:
  npx fedkms nodes add ${path.relative(process.cwd(), identityFile)}
  npx fedkms keys reshare example --threshold 3 --nodes node1,node2,node3,${id}
Ctrl-C stops it.`);
  untilStopped(id, async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });
}

main().catch((e) => {
  console.error(`fedkms: ${(e as Error).message}`);
  process.exit(1);
});
