/**
 * Where each template's settings come from: a per-operator config file, named by
 * FEDKMS_OPERATOR_CONFIG (deploy/examples/*.json show the fields), and for a local stack the
 * descriptor tools/local-stack.ts writes (FEDKMS_LOCAL_STACK). Validation errors name the file.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { concurrencyOf } = require('./parts.cjs');

const ID = /^[a-z0-9-]{1,32}$/;
/** Node ids that would name the coordinator's resources (its tables and secrets fedkms-<stage>-coordinator-*, fedkms/<stage>/dashboard) or functions. */
const RESERVED_IDS = ['coordinator', 'dashboard', 'reconstruct'];
const nodeIdOk = (id) => typeof id === 'string' && ID.test(id) && !RESERVED_IDS.includes(id);
const B64_KEY = /^[A-Za-z0-9+/]{43}=$/;
const DYNAMIC = /^\{\{resolve:secretsmanager:[^}]+\}\}$/;

function readJson(file, what) {
  if (!file) throw new Error(`${what}: set FEDKMS_OPERATOR_CONFIG to your operator config file (see deploy/examples/)`);
  try {
    return JSON.parse(fs.readFileSync(path.resolve(file), 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the operator config (${e.message})`);
  }
}

function loadLocal(file = process.env.FEDKMS_LOCAL_STACK) {
  return file ? JSON.parse(fs.readFileSync(file, 'utf8')) : undefined;
}

const publicKey = (v, name, file) => {
  if (typeof v !== 'string' || !(B64_KEY.test(v) || DYNAMIC.test(v))) throw new Error(`${file}: ${name} must be a base64 Ed25519 public key`);
  return v;
};

/**
 * The federation-wide minimum a node enforces on every key it takes part in creating or
 * resharing (issue 13): threshold and node count. Defaults 2 and 3: today's smallest normal
 * federation, 2-of-3. Every operator should set the same values; each node enforces its own.
 */
const DEFAULT_MINIMUM = { minThreshold: 2, minNodes: 3 };
function minimumOf(c, file) {
  const minThreshold = c.minThreshold ?? DEFAULT_MINIMUM.minThreshold;
  const minNodes = c.minNodes ?? DEFAULT_MINIMUM.minNodes;
  for (const [name, v] of [['minThreshold', minThreshold], ['minNodes', minNodes]]) {
    if (!Number.isInteger(v) || v < 2 || v > 255) throw new Error(`${file}: ${name} must be an integer from 2 to 255`);
  }
  if (minThreshold > minNodes) throw new Error(`${file}: minThreshold cannot exceed minNodes`);
  return { minThreshold, minNodes };
}

/** A node operator's settings: { id, coordinatorPublicKey, adminPublicKey, concurrency?, minThreshold?, minNodes? }. */
function nodeSettings(stage, file = process.env.FEDKMS_OPERATOR_CONFIG, localFile = process.env.FEDKMS_LOCAL_STACK) {
  const c = readJson(file, 'node stack');
  if (!nodeIdOk(c.id)) throw new Error(`${file}: id must match ${ID} and not be one of ${RESERVED_IDS.join(', ')}`);
  return {
    ...minimumOf(c, file),
    stage,
    id: c.id,
    coordinatorPublicKey: publicKey(c.coordinatorPublicKey, 'coordinatorPublicKey', file),
    adminPublicKey: publicKey(c.adminPublicKey, 'adminPublicKey', file),
    concurrency: concurrencyOf({ node: c.concurrency }, file).node,
    local: loadLocal(localFile),
  };
}

/** The coordinator operator's settings: { seeds: [{id, url}], dashboardPublicKey, concurrency?, requestBudgetMs?, apiAuthorizer? }. */
function coordinatorSettings(stage, file = process.env.FEDKMS_OPERATOR_CONFIG, localFile = process.env.FEDKMS_LOCAL_STACK) {
  const c = readJson(file, 'coordinator stack');
  if (!Array.isArray(c.seeds) || c.seeds.length < 1 || c.seeds.some((x) => !nodeIdOk(x.id) || !/^https?:\/\/\S+$/.test(x.url || ''))) {
    throw new Error(`${file}: seeds must list at least one node as {"id", "url"}`);
  }
  if (c.apiAuthorizer !== undefined && !['none', 'aws_iam'].includes(c.apiAuthorizer)) throw new Error(`${file}: apiAuthorizer must be "none" or "aws_iam"`);
  const budget = c.requestBudgetMs ?? 20000;
  if (!Number.isInteger(budget) || budget < 100 || budget > 900000) throw new Error(`${file}: requestBudgetMs must be an integer from 100 to 900000`);
  return {
    stage,
    seeds: c.seeds.map((x) => ({ id: x.id, url: x.url })),
    dashboardPublicKey: publicKey(c.dashboardPublicKey, 'dashboardPublicKey', file),
    concurrency: concurrencyOf(c.concurrency, file),
    requestBudgetMs: budget,
    apiAuthorizer: c.apiAuthorizer || 'none',
    local: loadLocal(localFile),
  };
}

const stageOf = (options) => (options && options.stage) || process.env.FEDKMS_STAGE || 'dev';

module.exports = { DEFAULT_MINIMUM, minimumOf, nodeSettings, coordinatorSettings, loadLocal, stageOf, ID, RESERVED_IDS, nodeIdOk };
