/**
 * `npm run secrets:aws -- --stage prod (--node ID | --coordinator | --admin | --all) [--region R]`:
 * fresh secrets for one operator, printed as `aws secretsmanager put-secret-value` commands for the
 * secret its stack created (with a placeholder), plus the public keys the other operators need.
 * Secret values are printed once and never written to disk; run it where you run the AWS CLI.
 * `--all` (one account, a first try) does every unit of fedkms.config.json (or FEDKMS_CONFIG) and
 * writes the public keys only to deploy/<stage>.public-keys.json (or FEDKMS_PUBLIC_KEYS), which
 * serverless.yml reads. See docs/operators.md.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateSecrets, nodeSecret } from '../tools/local-stack.js';
import { fingerprint } from '../lib/federation/membership.js';

const USAGE = `usage: npm run secrets:aws -- --stage STAGE (--node ID | --coordinator | --admin | --all [--force]) [--region REGION]
  --node ID       one node's secret (its operator runs this), and the node's public keys
  --coordinator   the coordinator's and the dashboard's secrets, and their public keys
  --admin         the first administrator's key pair (the private key stays with the administrator)
  --all           all of the above for the nodes of fedkms.config.json, one account (serverless.yml);
                  writes the public keys to deploy/STAGE.public-keys.json (--force replaces it)`;

type Secret = Record<string, string>;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const deploy = require('../deploy/settings.cjs') as { ID: RegExp; RESERVED_IDS: string[]; nodeIdOk: (id: unknown) => boolean };

function fail(message: string): never {
  console.error(`secrets:aws: ${message}\n${USAGE}`);
  process.exit(2);
}

function parse(argv: string[]) {
  const o: { stage: string; region?: string; node?: string; coordinator: boolean; admin: boolean; all: boolean; force: boolean } = { stage: 'dev', coordinator: false, admin: false, all: false, force: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) fail(`${a} needs a value`);
      return v;
    };
    if (a === '--stage') o.stage = value();
    else if (a === '--region') o.region = value();
    else if (a === '--node') o.node = value();
    else if (a === '--coordinator' || a === '--admin' || a === '--all' || a === '--force') o[a.slice(2) as 'coordinator' | 'admin' | 'all' | 'force'] = true;
    else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else fail(`unknown argument ${a}`);
  }
  if (!/^[a-z0-9-]{1,32}$/.test(o.stage)) fail(`--stage must match ${deploy.ID} (got "${o.stage}")`);
  if (o.region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(o.region)) fail(`--region must be an AWS region such as eu-west-1 (got "${o.region}")`);
  const modes = [o.node !== undefined, o.coordinator, o.admin, o.all].filter(Boolean).length;
  if (modes !== 1) fail('give exactly one of --node ID, --coordinator, --admin or --all');
  if (o.node !== undefined && !deploy.nodeIdOk(o.node)) fail(`--node must match ${deploy.ID} and not be one of ${deploy.RESERVED_IDS.join(', ')} (got "${o.node}")`);
  if (o.force && !o.all) fail('--force goes with --all only');
  return o;
}

const o = parse(process.argv.slice(2));
const region = o.region ? ` --region ${o.region}` : '';
const put = (unit: string, value: Secret) => console.log(`aws secretsmanager put-secret-value${region} --secret-id fedkms/${o.stage}/${unit} --secret-string '${JSON.stringify(value)}'`);
const once = '# The values are shown once and stored nowhere: run the commands now, then clear this terminal.';

function printNode(id: string, s: Secret) {
  console.log(`# Node "${id}" (stage ${o.stage}): its operator sets the secret its stack created, in the node's own account.`);
  console.log('# Set it once: its wrapping key protects the shares the node stores (to rotate, see docs/operators.md).');
  put(id, { wrapKey: s['wrapKey']!, x25519Private: s['x25519Private']!, signingPrivate: s['signingPrivate']! });
  console.log(`# ${id}: public keys, as its identity document (GET <endpoint>/identity) will show them:
#   signingPublic ${s['signingPublic']}
#   x25519Public  ${s['x25519Public']}
#   fingerprint   ${fingerprint(s['signingPublic']!, s['x25519Public']!)}   (read it to the administrator over a second channel)`);
}

function printCoordinator(c: Secret, d: Secret) {
  console.log(`# The coordinator's and the dashboard's secrets (stage ${o.stage}), in the coordinator operator's account.`);
  put('coordinator', { signingPrivate: c['privateKey']!, publicKey: c['publicKey']! });
  put('dashboard', { signingPrivate: d['privateKey']!, viewerToken: d['viewerToken']!, publicKey: d['publicKey']! });
  console.log(`# The viewerToken above opens the dashboard (HTTP Basic password or Bearer token): give it to its viewers only.
# coordinatorPublicKey (every node operator's config): ${c['publicKey']}
# dashboardPublicKey   (the coordinator operator's config): ${d['publicKey']}`);
}

function printAdmin(a: Secret) {
  console.log(`# The first administrator's key pair. The private key stays with the administrator, never in any stack:
export FEDKMS_CLIENT=admin FEDKMS_CLIENT_KEY='${a['privateKey']}'
# adminPublicKey (every node operator's config): ${a['publicKey']}`);
}

if (o.node !== undefined) {
  printNode(o.node, nodeSecret());
  console.log(once);
} else if (o.coordinator) {
  const s = generateSecrets([]);
  printCoordinator(s['coordinator']!, s['dashboard']!);
  console.log(once);
} else if (o.admin) {
  printAdmin(generateSecrets([])['admin']!);
  console.log(once);
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadConfig } = require('../deploy/federation.cjs') as { loadConfig: () => { threshold: number; nodes: { id: string }[] } };
  let nodes: string[];
  let threshold: number;
  try {
    const cfg = loadConfig();
    nodes = cfg.nodes.map((n) => n.id);
    threshold = cfg.threshold;
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
  }
  const file = process.env['FEDKMS_PUBLIC_KEYS'] ?? path.join(__dirname, '..', 'deploy', `${o.stage}.public-keys.json`);
  if (existsSync(file) && !o.force) {
    fail(`${file} exists: the deployed units may already trust those keys. Pass --force to replace it (then set every secret again and redeploy)`);
  }
  const s = generateSecrets(nodes);
  const publicKeys = { coordinator: s['coordinator']!['publicKey'], admin: s['admin']!['publicKey'], dashboard: s['dashboard']!['publicKey'] };
  writeFileSync(file, `${JSON.stringify(publicKeys, null, 2)}\n`);
  console.log(`# fedkms in one account, stage ${o.stage}, nodes ${nodes.join(', ')}. Public keys written to ${path.relative(process.cwd(), file)}.
# 1. Keep the administrator's key where your CLI runs:`);
  printAdmin(s['admin']!);
  console.log(`# 2. Deploy: npx serverless deploy --stage ${o.stage}${region}
# 3. Then set the secrets the stack created:`);
  printCoordinator(s['coordinator']!, s['dashboard']!);
  for (const id of nodes) printNode(id, s[id]!);
  console.log(`# 4. Form the federation as the administrator, from each node's identity document (docs/operators.md):
#      curl -fsS https://<api>/nodes/<id>/identity > <id>.json     (for ${nodes.join(', ')})
#      npx fedkms nodes add ${nodes.map((id) => `${id}.json`).join(' ')} --threshold ${threshold}
${once}`);
}
