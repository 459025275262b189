/**
 * `npm run secrets:aws -- --stage prod`: fresh node and coordinator secrets for an AWS
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
for (const [name, value] of Object.entries(secrets)) {
  console.log(`aws secretsmanager create-secret --name fedkms/${stage}/${name} --secret-string '${JSON.stringify(value)}'`);
}
