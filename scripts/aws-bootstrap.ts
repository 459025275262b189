/**
 * `npm run secrets:aws -- --stage prod`: fresh node, coordinator and dashboard secrets, and the first administrator's key pair, for an AWS
 * deployment, printed as `aws secretsmanager create-secret` commands. The values are
 * printed once and never written to disk; run it where you run the AWS CLI.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { generateSecrets } from '../tools/local-stack.js';

const stageArg = process.argv.indexOf('--stage');
const stage = stageArg > 0 ? process.argv[stageArg + 1] : 'dev';
if (!stage || !/^[a-z0-9-]+$/.test(stage)) {
  console.error('usage: npm run secrets:aws -- --stage <stage>');
  process.exit(2);
}
const configFile = process.env['FEDKMS_CONFIG'] ?? path.join(__dirname, '..', 'fedkms.config.json');
const nodes = (JSON.parse(readFileSync(configFile, 'utf8')) as { nodes: { id: string }[] }).nodes.map((n) => n.id);
const secrets = generateSecrets(nodes);
console.log(`# fedkms secrets for stage "${stage}" (${nodes.length} nodes). Each node's secret belongs to that node's operator.`);
// The first administrator is a client: the stack gets its public key only, its private key stays with you.
const { privateKey: adminPrivate, ...adminPublic } = secrets['admin']!;
secrets['admin'] = adminPublic;
for (const [name, value] of Object.entries(secrets)) {
  console.log(`aws secretsmanager create-secret --name fedkms/${stage}/${name} --secret-string '${JSON.stringify(value)}'`);
}
console.log(`# The first administrator client: keep this where your CLI runs (never in the stack), e.g.
#   export FEDKMS_CLIENT=admin FEDKMS_CLIENT_KEY='${adminPrivate}'
# then register the other clients with POST /clients and give them only the roles they need.`);
