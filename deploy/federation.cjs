/**
 * serverless.yml: the whole federation in one stack and one account, for a first try. It is the
 * same units as the per-operator stacks (deploy/parts.cjs), one per node of fedkms.config.json
 * (or FEDKMS_CONFIG) plus the coordinator's: each node keeps its own bucket, KMS key, tables,
 * secret and role. One account administrator can still reach every unit here; for a real
 * federation each operator deploys serverless.node.yml or serverless.coordinator.yml in its own account.
 *
 * The public keys the units trust (coordinator, first administrator, dashboard) come from the
 * file `npm run secrets:aws` writes, deploy/<stage>.public-keys.json (or FEDKMS_PUBLIC_KEYS).
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { nodeUnit, coordinatorUnit, concurrencyOf, apiUrl } = require('./parts.cjs');
const { stageOf, ID, RESERVED_IDS, nodeIdOk } = require('./settings.cjs');

function loadConfig(file = process.env.FEDKMS_CONFIG || path.join(__dirname, '..', 'fedkms.config.json')) {
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  const nodes = (cfg.nodes || []).map((n) => ({ id: n.id }));
  if (nodes.length < 2 || nodes.some((n) => !nodeIdOk(n.id)) || new Set(nodes.map((n) => n.id)).size !== nodes.length) {
    throw new Error(`${file}: need at least two nodes with unique ids matching ${ID}, none of ${RESERVED_IDS.join(', ')}`);
  }
  if (!Number.isInteger(cfg.threshold) || cfg.threshold < 2 || cfg.threshold > nodes.length) {
    throw new Error(`${file}: threshold must be an integer from 2 to the number of nodes`);
  }
  if (cfg.apiAuthorizer !== undefined && !['none', 'aws_iam'].includes(cfg.apiAuthorizer)) {
    throw new Error(`${file}: apiAuthorizer must be "none" or "aws_iam"`);
  }
  return { threshold: cfg.threshold, nodes, requestBudgetMs: cfg.requestBudgetMs || 20000, concurrency: concurrencyOf(cfg.concurrency, file), apiAuthorizer: cfg.apiAuthorizer || 'none' };
}

function publicKeys(stage) {
  const file = process.env.FEDKMS_PUBLIC_KEYS || path.join(__dirname, `${stage}.public-keys.json`);
  if (!fs.existsSync(file)) throw new Error(`${file} not found: run \`npm run secrets:aws -- --stage ${stage}\` first (it writes the public keys the units trust)`);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function render(stage, configFile) {
  const cfg = loadConfig(configFile);
  const keys = publicKeys(stage);
  const functions = {};
  const Resources = {};
  const merge = (unit) => {
    for (const [k, v] of Object.entries(unit.functions)) {
      if (functions[k]) throw new Error(`two units declare function ${k}`);
      functions[k] = v;
    }
    for (const [k, v] of Object.entries(unit.resources)) {
      if (Resources[k]) throw new Error(`two units declare resource ${k}`);
      Resources[k] = v;
    }
  };
  for (const n of cfg.nodes) {
    merge(nodeUnit({ stage, id: n.id, coordinatorPublicKey: keys.coordinator, adminPublicKey: keys.admin, concurrency: cfg.concurrency.node }));
  }
  merge(coordinatorUnit({
    stage,
    // Every node sits under this stack's own API.
    seeds: cfg.nodes.map((n) => ({ id: n.id, url: apiUrl(`/nodes/${n.id}`) })),
    dashboardPublicKey: keys.dashboard,
    concurrency: cfg.concurrency,
    requestBudgetMs: cfg.requestBudgetMs,
    apiAuthorizer: cfg.apiAuthorizer,
  }));
  return { cfg, functions, resources: { Resources } };
}

module.exports = {
  functions: ({ options }) => render(stageOf(options)).functions,
  resources: ({ options }) => render(stageOf(options)).resources,
  render,
  loadConfig,
};
