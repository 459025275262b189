/**
 * Renders the per-node parts of serverless.yml from one node list (fedkms.config.json,
 * or the file named by FEDKMS_CONFIG): one function, one bucket and one IAM role per
 * node. Adding a node is a config change, not a copy-pasted section.
 *
 * Two targets, chosen by configuration rather than code paths in the functions:
 * - AWS (default): names and URLs are CloudFormation intrinsics; secrets are
 *   Secrets Manager dynamic references resolved at deploy time.
 * - A local stack (FEDKMS_LOCAL_STACK names a JSON file written by tools/local-stack.ts):
 *   plain names, loopback endpoints and the generated dev secrets.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ID = /^[a-z0-9-]{1,32}$/;

/**
 * How many requests each function serves at once: its reserved concurrency in AWS, and the
 * admission limit of the local stack's front doors (tools/admission.ts). Beyond it a request is
 * refused at once with 429 and Retry-After, before any work. A node takes a little more than
 * the coordinator, so the coordinator's own fan-outs (and the dashboard's) never find it full.
 */
const DEFAULT_CONCURRENCY = { coordinator: 4, node: 6, dashboard: 2 };

function loadConfig(file = process.env.FEDKMS_CONFIG || path.join(__dirname, '..', 'fedkms.config.json')) {
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  const nodes = (cfg.nodes || []).map((n, i) => ({ id: n.id, index: n.index || i + 1 }));
  if (nodes.length < 2 || nodes.some((n) => !ID.test(n.id)) || new Set(nodes.map((n) => n.id)).size !== nodes.length) {
    throw new Error(`${file}: need at least two nodes with unique ids matching ${ID}`);
  }
  if (!Number.isInteger(cfg.threshold) || cfg.threshold < 2 || cfg.threshold > nodes.length) {
    throw new Error(`${file}: threshold must be an integer from 2 to the number of nodes`);
  }
  if (cfg.apiAuthorizer !== undefined && !['none', 'aws_iam'].includes(cfg.apiAuthorizer)) {
    throw new Error(`${file}: apiAuthorizer must be "none" or "aws_iam"`);
  }
  const concurrency = { ...DEFAULT_CONCURRENCY, ...(cfg.concurrency || {}) };
  if (Object.values(concurrency).some((c) => !Number.isInteger(c) || c < 1 || c > 1000)) {
    throw new Error(`${file}: concurrency values must be integers from 1 to 1000`);
  }
  return { threshold: cfg.threshold, nodes, requestBudgetMs: cfg.requestBudgetMs || 20000, concurrency, apiAuthorizer: cfg.apiAuthorizer || 'none' };
}

function loadLocal() {
  const file = process.env.FEDKMS_LOCAL_STACK;
  return file ? JSON.parse(fs.readFileSync(file, 'utf8')) : undefined;
}

const KMS_ADMIN_ACTIONS = [
  'kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:PutKeyPolicy', 'kms:GetKeyRotationStatus', 'kms:EnableKeyRotation',
  'kms:DisableKeyRotation', 'kms:ListResourceTags', 'kms:TagResource', 'kms:UntagResource', 'kms:EnableKey',
  'kms:DisableKey', 'kms:ScheduleKeyDeletion', 'kms:CancelKeyDeletion', 'kms:UpdateKeyDescription',
  'kms:CreateGrant', 'kms:ListGrants', 'kms:RevokeGrant', 'kms:Decrypt', 'kms:GenerateDataKey',
];

const logical = (id) => id.replace(/(^|-)([a-z0-9])/g, (_, __, c) => c.toUpperCase());
const bucketLogicalId = (id) => `FragmentBucket${logical(id)}`;

/** `configFile` defaults to FEDKMS_CONFIG; the local stack also uses this to create the same tables. */
function render(stage, configFile) {
  const cfg = loadConfig(configFile);
  const local = loadLocal();
  const auditTable = `fedkms-${stage}-audit`;
  const replayTable = `fedkms-${stage}-replay`;
  const poolTable = `fedkms-${stage}-commitments`;
  const approvalsTable = `fedkms-${stage}-approvals`;
  const sm = (name, field) => `{{resolve:secretsmanager:fedkms/${stage}/${name}:SecretString:${field}}}`;
  const secret = (name, field) => (local ? local.secrets[name][field] : sm(name, field));
  const bucketName = (id) => (local ? `fedkms-${stage}-${id}` : { 'Fn::Sub': `fedkms-${stage}-${id}-\${AWS::AccountId}-\${AWS::Region}` });
  const nodeUrl = (id) => (local ? local.nodeUrls[id] : `https://\${HttpApi}.execute-api.\${AWS::Region}.\${AWS::URLSuffix}/nodes/${id}`);
  const peers = cfg.nodes.map((n) => ({ id: n.id, index: n.index, x25519Public: secret(n.id, 'x25519Public'), signingPublic: secret(n.id, 'signingPublic') }));
  const nodesJson = JSON.stringify(peers.map((p) => ({ ...p, url: nodeUrl(p.id) })));
  const tableArn = (t) => ({ 'Fn::Sub': `arn:\${AWS::Partition}:dynamodb:\${AWS::Region}:\${AWS::AccountId}:table/${t}` });
  const localAws = local
    ? { FEDKMS_S3_ENDPOINT: local.s3Endpoint, FEDKMS_DYNAMODB_ENDPOINT: local.dynamoEndpoint, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' }
    : {};

  // The native signing backend ships beside the bundle: keep only the Linux prebuilds the
  // Lambda runtime can load (arm64 as deployed, x64 if the architecture is changed).
  const nativeBackendOnly = { patterns: ['!node_modules/sodium-native/prebuilds/!(linux-arm64|linux-x64)/**'] };
  const functions = {};
  for (const n of cfg.nodes) {
    const bucketArn = local ? `arn:aws:s3:::fedkms-${stage}-${n.id}` : { 'Fn::GetAtt': [bucketLogicalId(n.id), 'Arn'] };
    const objectsArn = local ? `${bucketArn}/*` : { 'Fn::Sub': `\${${bucketLogicalId(n.id)}.Arn}/*` };
    functions[n.id] = {
      handler: 'functions/node.handler',
      reservedConcurrency: cfg.concurrency.node,
      package: nativeBackendOnly,
      description: `fedkms node ${n.id}: holds one share of every key, in its own bucket`,
      environment: {
        ...localAws,
        NODE_ID: n.id,
        NODE_INDEX: String(n.index),
        FRAGMENT_BUCKET: bucketName(n.id),
        AUDIT_TABLE: auditTable,
        REPLAY_TABLE: replayTable,
        NODE_WRAP_KEY: secret(n.id, 'wrapKey'),
        NODE_X25519_PRIVATE: secret(n.id, 'x25519Private'),
        COORDINATOR_PUBLIC_KEY: secret('coordinator', 'publicKey'),
        // The first administrator client; every other client is registered by an administrator.
        FEDKMS_ADMIN_PUBLIC_KEY: secret('admin', 'publicKey'),
        NODE_SIGNING_KEY: secret(n.id, 'signingPrivate'),
        NODE_PEERS: JSON.stringify(peers),
      },
      // Least privilege: this node's bucket, and only its own rows of the shared tables.
      iamRoleStatements: [
        { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], Resource: [objectsArn] },
        { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [bucketArn] },
        ...(local ? [] : [{ Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: [{ 'Fn::GetAtt': [`FragmentKey${logical(n.id)}`, 'Arn'] }] }]),
        {
          Effect: 'Allow',
          Action: ['dynamodb:PutItem', 'dynamodb:Query'],
          Resource: [tableArn(auditTable)],
          // Each execution environment writes its own chain, `node#<id>#<instance>`.
          Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`node#${n.id}#*`] } },
        },
        {
          Effect: 'Allow',
          Action: ['dynamodb:PutItem'],
          Resource: [tableArn(replayTable)],
          Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${n.id}#*`] } },
        },
      ],
      events: [
        ['GET', 'status'],
        ['GET', 'keys'],
        ['GET', 'key'],
        ['GET', 'clients'],
        ['PUT', 'client'],
        ['POST', 'key/state'],
        ['PUT', 'key/policy'],
        ['GET', 'fragment'],
        ['PUT', 'fragment'],
        ['DELETE', 'fragment'],
        ...['round1', 'confirm', 'round2', 'round3', 'commit', 'abort'].map((r) => ['POST', `dkg/${r}`]),
        ['POST', 'sign/commit'],
        ['POST', 'sign/preprocess'],
        ['POST', 'sign/share'],
        ...['deal', 'receive', 'commit'].map((r) => ['POST', `reshare/${r}`]),
      ].map(([method, p]) => ({ httpApi: { method, path: `/nodes/${n.id}/${p}` } })),
    };
  }
  // The API's own base URL: the dashboard reaches the coordinator there.
  const apiUrl = local ? local.url : { 'Fn::Sub': 'https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}' };
  // What the coordinator sees of the federation.
  const federationView = {
    ...localAws,
    AUDIT_TABLE: auditTable,
    FEDKMS_THRESHOLD: String(cfg.threshold),
    FEDKMS_NODES: local ? nodesJson : { 'Fn::Sub': nodesJson },
    REQUEST_BUDGET_MS: String(cfg.requestBudgetMs),
  };
  // Append to its own `<stream>#*` chains; read every chain for verification.
  const auditAccess = (...streams) => [
    { Effect: 'Allow', Action: ['dynamodb:PutItem', 'dynamodb:Query'], Resource: [tableArn(auditTable)], Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': streams.map((st) => `${st}#*`) } } },
    { Effect: 'Allow', Action: ['dynamodb:Scan'], Resource: [tableArn(auditTable)] },
  ];
  functions.reconstruct = {
    handler: 'functions/reconstruct.handler',
    reservedConcurrency: cfg.concurrency.coordinator,
    package: nativeBackendOnly,
    description: 'fedkms coordinator: fans out to the nodes, verifies and combines',
    // API Gateway HTTP APIs stop waiting at 30 s; a local stack may allow more (FEDKMS_FUNCTION_TIMEOUT).
    timeout: Number(process.env.FEDKMS_FUNCTION_TIMEOUT) || 29,
    environment: {
      ...federationView,
      COORDINATOR_SIGNING_KEY: secret('coordinator', 'privateKey'),
      // The dashboard function's key: accepted on the two /federation routes only.
      DASHBOARD_PUBLIC_KEY: secret('dashboard', 'publicKey'),
      POOL_TABLE: poolTable,
      APPROVALS_TABLE: approvalsTable,
      REPLAY_TABLE: replayTable,
    },
    // The coordinator reads no bucket; it writes its own audit stream and reads all for verification.
    // Plus the pre-published commitments (public values) it relays for one-round signing.
    iamRoleStatements: [
      // Its own chains, plus the `dashboard` chains where it records sign-ins the dashboard refused.
      ...auditAccess('reconstruct', 'dashboard'),
      { Effect: 'Allow', Action: ['dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:BatchWriteItem', 'dynamodb:DeleteItem'], Resource: [tableArn(poolTable)] },
      // Client request ids it has seen: only its own `coordinator#` rows.
      { Effect: 'Allow', Action: ['dynamodb:PutItem'], Resource: [tableArn(replayTable)], Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['coordinator#*'] } } },
      // Approvals are signatures that every node re-checks; the table only collects them.
      { Effect: 'Allow', Action: ['dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], Resource: [tableArn(approvalsTable)] },
    ],
    events: [
      ['GET', '/status'],
      ['GET', '/keys'],
      ['POST', '/keys'],
      ['GET', '/keys/{keyId}'],
      ['POST', '/keys/{keyId}/reconstruct'],
      ['POST', '/keys/{keyId}/sign'],
      ['POST', '/keys/{keyId}/preprocess'],
      ['GET', '/keys/{keyId}/public'],
      ['POST', '/keys/{keyId}/refresh'],
      ['POST', '/keys/{keyId}/reshare'],
      ['GET', '/audit/verify'],
      ['GET', '/clients'],
      ['POST', '/clients'],
      ['POST', '/keys/{keyId}/state'],
      ['PUT', '/keys/{keyId}/policy'],
      ['GET', '/approvals'],
      ['POST', '/approvals'],
      ['GET', '/federation/state'],
      ['POST', '/federation/refusals'],
      // Defence in depth: with apiAuthorizer "aws_iam", API Gateway also demands SigV4 from an
      // IAM principal. Clients still sign every request themselves and nodes still check it.
      // The /federation routes answer the dashboard function only (its own signed key), which holds
      // no IAM permission to sign with: they stay outside the IAM authorizer, like /status.
    ].map(([method, p]) => ({ httpApi: { method, path: p, ...(cfg.apiAuthorizer === 'aws_iam' && p !== '/status' && !p.startsWith('/federation/') ? { authorizer: { type: 'aws_iam' } } : {}) } })),
  };
  functions.dashboard = {
    handler: 'functions/dashboard.handler',
    reservedConcurrency: cfg.concurrency.dashboard,
    description: 'fedkms dashboard: node health, fragment availability, events, security log (read-only)',
    timeout: Number(process.env.FEDKMS_FUNCTION_TIMEOUT) || 29,
    environment: {
      COORDINATOR_URL: apiUrl,
      // Its own signing identity and viewer token: no coordinator key, no client key.
      DASHBOARD_SIGNING_KEY: secret('dashboard', 'privateKey'),
      DASHBOARD_TOKEN: secret('dashboard', 'viewerToken'),
    },
    // Least privilege: no AWS permission beyond its own logs. It reaches no node, bucket or
    // table; the coordinator serves it the state document over a call signed with its key.
    iamRoleStatements: [],
    events: [
      ['GET', '/dashboard'],
      ['GET', '/dashboard/api/state'],
    ].map(([method, p]) => ({ httpApi: { method, path: p } })),
  };

  /** An on-demand DynamoDB table keyed by `hash` (and `range`); the local stack creates the same ones. */
  const table = (name, hash, range, extra = {}) => ({
    Type: 'AWS::DynamoDB::Table',
    Properties: {
      TableName: name,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [hash, ...(range ? [range] : [])].map(([n, t]) => ({ AttributeName: n, AttributeType: t })),
      KeySchema: [
        { AttributeName: hash[0], KeyType: 'HASH' },
        ...(range ? [{ AttributeName: range[0], KeyType: 'RANGE' }] : []),
      ],
      ...extra,
    },
  });
  const ttl = { TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true } };
  const Resources = {
    AuditTable: { ...table(auditTable, ['stream', 'S'], ['seq', 'N'], { PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } }), DeletionPolicy: 'Retain' },
    CommitmentTable: table(poolTable, ['keyId', 'S'], ['sk', 'S'], ttl),
    ReplayTable: table(replayTable, ['pk', 'S'], undefined, ttl),
    ApprovalTable: table(approvalsTable, ['keyId', 'S'], ['digest', 'S'], ttl),
  };
  for (const n of cfg.nodes) {
    const keyId = `FragmentKey${logical(n.id)}`;
    Resources[keyId] = {
      Type: 'AWS::KMS::Key',
      Properties: {
        Description: `fedkms ${stage} ${n.id} bucket encryption`,
        EnableKeyRotation: true,
        KeyPolicy: {
          Version: '2012-10-17',
          // Key administration for the account, named action by action; use of the key is
          // granted only to this node's role (its IAM policy). In a key policy, Resource "*" means this key.
          Statement: [{ Effect: 'Allow', Principal: { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } }, Action: KMS_ADMIN_ACTIONS, Resource: '*' }],
        },
      },
    };
    Resources[bucketLogicalId(n.id)] = {
      Type: 'AWS::S3::Bucket',
      DeletionPolicy: 'Retain',
      Properties: {
        BucketName: bucketName(n.id),
        VersioningConfiguration: { Status: 'Enabled' },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [
            { ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] } }, BucketKeyEnabled: true },
          ],
        },
      },
    };
  }
  return { cfg, functions, resources: { Resources } };
}

const stageOf = (options) => (options && options.stage) || process.env.FEDKMS_STAGE || 'dev';

module.exports = {
  functions: ({ options }) => render(stageOf(options)).functions,
  resources: ({ options }) => render(stageOf(options)).resources,
  render,
  loadConfig,
};
