/**
 * The deployment units of a federation, as functions of their settings. Three templates are
 * built from them, with no copy-paste between them:
 * - serverless.node.yml: one node's own stack (its operator's account: function, bucket, KMS key,
 *   tables, secret, role), rendered by deploy/node.cjs;
 * - serverless.coordinator.yml: the coordinator and the dashboard (deploy/coordinator.cjs);
 * - serverless.yml: every unit in one stack, for a first try in one account (deploy/federation.cjs).
 *
 * Two targets, chosen by settings rather than code paths in the functions: AWS (names and URLs
 * are CloudFormation intrinsics) and a local stack (`local` given: plain names, loopback
 * endpoints, secrets in the operator's data directory).
 */
'use strict';

/** Use of a node's KMS key stays with the node's role; the account keeps key administration, and use only through IAM via S3 or Secrets Manager (see `kmsKey`). */
const KMS_ADMIN_ACTIONS = [
  'kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:PutKeyPolicy', 'kms:GetKeyRotationStatus', 'kms:EnableKeyRotation',
  'kms:DisableKeyRotation', 'kms:ListResourceTags', 'kms:TagResource', 'kms:UntagResource', 'kms:EnableKey',
  'kms:DisableKey', 'kms:ScheduleKeyDeletion', 'kms:CancelKeyDeletion', 'kms:UpdateKeyDescription',
];

const logical = (id) => id.replace(/(^|-)([a-z0-9])/g, (_, __, c) => c.toUpperCase());
const sub = (s) => ({ 'Fn::Sub': s });
const tableArn = (t) => sub(`arn:\${AWS::Partition}:dynamodb:\${AWS::Region}:\${AWS::AccountId}:table/${t}`);
const secretArn = (name) => sub(`arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${name}-*`);
const apiUrl = (p = '') => sub(`https://\${HttpApi}.execute-api.\${AWS::Region}.\${AWS::URLSuffix}${p}`);

/** An on-demand DynamoDB table keyed by `hash` (and `range`); the local stack creates the same ones. */
const table = (name, hash, range, extra = {}) => ({
  Type: 'AWS::DynamoDB::Table',
  Properties: {
    TableName: name,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [hash, ...(range ? [range] : [])].map(([n, t]) => ({ AttributeName: n, AttributeType: t })),
    KeySchema: [{ AttributeName: hash[0], KeyType: 'HASH' }, ...(range ? [{ AttributeName: range[0], KeyType: 'RANGE' }] : [])],
    ...extra,
  },
});
const ttl = { TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true } };
const auditTable = (name) => ({ ...table(name, ['stream', 'S'], ['seq', 'N'], { PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } }), DeletionPolicy: 'Retain' });

/**
 * A KMS key whose use is granted only by IAM to the unit's own role. The account root keeps the
 * administrative actions AWS needs so the key can never become unmanageable (CloudFormation's
 * lockout check, rotation, deletion); it gets no cryptographic use (no Decrypt, no
 * GenerateDataKey, no CreateGrant). An account administrator could still rewrite the policy
 * (kms:PutKeyPolicy) to regain use: that is why one account holds at most one share.
 */
const kmsKey = (description, viaServices) => ({
  Type: 'AWS::KMS::Key',
  Properties: {
    Description: description,
    EnableKeyRotation: true,
    KeyPolicy: {
      Version: '2012-10-17',
      Statement: [
        { Sid: 'AccountAdministersOnly', Effect: 'Allow', Principal: { AWS: sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') }, Action: KMS_ADMIN_ACTIONS, Resource: '*' },
        // Use is granted by IAM policies of principals in this account (the unit's own role names this key),
        // and only through the services that hold data under it: a node's S3 and Secrets Manager, the coordinator's Secrets Manager.
        { Sid: 'UseThroughIamPolicies', Effect: 'Allow', Principal: { AWS: sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') }, Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: '*', Condition: { StringEquals: { 'kms:CallerAccount': sub('${AWS::AccountId}'), 'kms:ViaService': viaServices.map((v) => sub(`${v}.\${AWS::Region}.amazonaws.com`)) } } },
      ],
    },
  },
});

/**
 * A secret whose value the operator sets after deploy (`npm run secrets:aws`); the template
 * holds a random placeholder only, encrypted under the unit's own KMS key.
 */
const secretResource = (name, kmsLogicalId) => ({
  Type: 'AWS::SecretsManager::Secret',
  DeletionPolicy: 'Retain',
  Properties: { Name: name, Description: `fedkms: set with npm run secrets:aws; the function reads it at run time`, KmsKeyId: { Ref: kmsLogicalId }, GenerateSecretString: { PasswordLength: 32, ExcludePunctuation: true } },
});

// The native signing backend ships beside the bundle: only the Linux prebuilds Lambda can load.
const nativeBackendOnly = { patterns: ['!node_modules/sodium-native/prebuilds/!(linux-arm64|linux-x64)/**'] };

const localAws = (local) => (local ? { FEDKMS_S3_ENDPOINT: local.s3Endpoint, FEDKMS_DYNAMODB_ENDPOINT: local.dynamoEndpoint, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } : {});

const NODE_ROUTES = [
  ['GET', 'status'], ['GET', 'identity'], ['GET', 'membership'], ['PUT', 'membership'], ['GET', 'audit/verify'], ['GET', 'audit/records'], ['POST', 'audit/witness'], ['GET', 'audit/witnessed'],
  ['GET', 'keys'], ['GET', 'key'], ['GET', 'clients'], ['PUT', 'client'], ['POST', 'key/state'], ['PUT', 'key/policy'],
  ['GET', 'fragment'], ['PUT', 'fragment'], ['DELETE', 'fragment'],
  ...['round1', 'confirm', 'round2', 'round3', 'commit', 'abort'].map((r) => ['POST', `dkg/${r}`]),
  ['POST', 'sign/commit'], ['POST', 'sign/preprocess'], ['POST', 'sign/share'], ['POST', 'decrypt'], ['POST', 'datakey'],
  ...['deal', 'receive', 'commit'].map((r) => ['POST', `reshare/${r}`]),
];

/** The resource names of one node, in one place: the template test checks no two units share one. */
function nodeNames(stage, id, local) {
  return {
    bucket: local ? `fedkms-${stage}-${id}` : sub(`fedkms-${stage}-${id}-\${AWS::AccountId}-\${AWS::Region}`),
    auditTable: `fedkms-${stage}-${id}-audit`,
    replayTable: `fedkms-${stage}-${id}-replay`,
    secret: `fedkms/${stage}/${id}`,
  };
}

/**
 * One node: its function, bucket, KMS key, audit and replay tables, secret and role. It names no
 * resource of any other unit; it trusts the coordinator's and the first administrator's public keys.
 * s = { stage, id, coordinatorPublicKey, adminPublicKey, concurrency, local? }
 */
function nodeUnit(s) {
  const { stage, id, local } = s;
  const L = logical(id);
  const names = nodeNames(stage, id, local);
  const ids = { bucket: `FragmentBucket${L}`, key: `NodeKey${L}`, audit: `AuditTable${L}`, replay: `ReplayTable${L}`, secret: `NodeSecret${L}` };
  const bucketArn = local ? `arn:aws:s3:::${names.bucket}` : { 'Fn::GetAtt': [ids.bucket, 'Arn'] };
  const objectsArn = local ? `${bucketArn}/*` : sub(`\${${ids.bucket}.Arn}/*`);
  const fn = {
    handler: 'functions/node.handler',
    reservedConcurrency: s.concurrency,
    package: nativeBackendOnly,
    description: `fedkms node ${id}: one share of every key, in its own bucket, under its own secret`,
    environment: {
      ...localAws(local),
      NODE_ID: id,
      NODE_ENDPOINT: local ? local.endpoint : apiUrl(`/nodes/${id}`),
      FRAGMENT_BUCKET: names.bucket,
      AUDIT_TABLE: names.auditTable,
      REPLAY_TABLE: names.replayTable,
      // Where the secret is, never what it is: read at run time under this role (lib/aws/secrets.ts).
      ...(local ? { NODE_SECRETS_FILE: local.secretsFile } : { NODE_SECRET_ID: names.secret }),
      COORDINATOR_PUBLIC_KEY: s.coordinatorPublicKey,
      FEDKMS_ADMIN_PUBLIC_KEY: s.adminPublicKey,
      // The federation-wide minimum this node enforces (deploy/settings.cjs; defaults 2 and 3).
      FEDKMS_MIN_THRESHOLD: String(s.minThreshold ?? 2),
      FEDKMS_MIN_NODES: String(s.minNodes ?? 3),
    },
    // Least privilege: this node's own bucket, tables, key and secret; nothing else.
    iamRoleStatements: [
      // DeleteObjectVersion and ListBucketVersions: a deleted share is erased version by version (lib/aws/fragment-store.ts).
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:DeleteObjectVersion'], Resource: [objectsArn] },
      { Effect: 'Allow', Action: ['s3:ListBucket', 's3:ListBucketVersions'], Resource: [bucketArn] },
      { Effect: 'Allow', Action: ['dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:Scan'], Resource: [tableArn(names.auditTable)] },
      { Effect: 'Allow', Action: ['dynamodb:PutItem'], Resource: [tableArn(names.replayTable)] },
      ...(local ? [] : [
        { Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: [{ 'Fn::GetAtt': [ids.key, 'Arn'] }] },
        { Effect: 'Allow', Action: ['secretsmanager:GetSecretValue'], Resource: [{ Ref: ids.secret }] },
      ]),
    ],
    events: NODE_ROUTES.map(([method, p]) => ({ httpApi: { method, path: `/nodes/${id}/${p}` } })),
  };
  const Resources = {
    [ids.audit]: auditTable(names.auditTable),
    [ids.replay]: table(names.replayTable, ['pk', 'S'], undefined, ttl),
  };
  if (!local) {
    Resources[ids.key] = kmsKey(`fedkms ${stage} ${id}: bucket and secret encryption`, ['s3', 'secretsmanager']);
    Resources[ids.secret] = secretResource(names.secret, ids.key);
    Resources[ids.bucket] = {
      Type: 'AWS::S3::Bucket',
      DeletionPolicy: 'Retain',
      Properties: {
        BucketName: names.bucket,
        VersioningConfiguration: { Status: 'Enabled' },
        // A share a refresh, reshare or destroy deleted must not live on as a noncurrent version: with it, one
        // account read later would still hold its old-version share, and old shares of t nodes combine. The node
        // deletes every version itself (lib/aws/fragment-store.ts); this rule is the backstop for anything
        // overwritten (control documents, the registry) and for a delete that failed half way.
        LifecycleConfiguration: {
          Rules: [
            { Id: 'ExpireReplacedShares', Status: 'Enabled', NoncurrentVersionExpiration: { NoncurrentDays: 1 }, ExpiredObjectDeleteMarker: true },
            { Id: 'AbortIncompleteUploads', Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } },
          ],
        },
        PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [ids.key, 'Arn'] } }, BucketKeyEnabled: true }] },
      },
    };
  }
  return { functions: { [id]: fn }, resources: Resources, names };
}

/** Routes anyone may call (health, a key's public key): outside the optional IAM authorizer. */
const PUBLIC_ROUTES = new Set(['/status', '/keys/{keyId}/public']);

function coordinatorNames(stage) {
  const t = (x) => `fedkms-${stage}-coordinator-${x}`;
  return { auditTable: t('audit'), replayTable: t('replay'), poolTable: t('commitments'), approvalsTable: t('approvals'), secret: `fedkms/${stage}/coordinator`, dashboardSecret: `fedkms/${stage}/dashboard` };
}

/**
 * The coordinator and the dashboard: their functions, tables, secrets and roles. It reaches no
 * node resource: nodes are HTTPS endpoints to it, learned from the seeds and the membership.
 * s = { stage, seeds: [{id, url}], dashboardPublicKey, concurrency, requestBudgetMs, apiAuthorizer, local? }
 */
function coordinatorUnit(s) {
  const { stage, local } = s;
  const names = coordinatorNames(stage);
  const timeout = Number(process.env.FEDKMS_FUNCTION_TIMEOUT) || 29;
  const reconstruct = {
    handler: 'functions/reconstruct.handler',
    reservedConcurrency: s.concurrency.coordinator,
    package: nativeBackendOnly,
    description: 'fedkms coordinator: learns the members from the nodes, fans out, verifies and combines',
    // API Gateway HTTP APIs stop waiting at 30 s; a local stack may allow more (FEDKMS_FUNCTION_TIMEOUT).
    timeout,
    environment: {
      ...localAws(local),
      AUDIT_TABLE: names.auditTable,
      POOL_TABLE: names.poolTable,
      APPROVALS_TABLE: names.approvalsTable,
      REPLAY_TABLE: names.replayTable,
      // Seeds under this same stack's API are intrinsics (the one-account template); one Fn::Sub renders them all.
      FEDKMS_SEEDS: s.seeds.every((x) => typeof x.url === 'string') ? JSON.stringify(s.seeds) : sub(JSON.stringify(s.seeds.map((x) => ({ id: x.id, url: typeof x.url === 'string' ? x.url : x.url['Fn::Sub'] })))),
      REQUEST_BUDGET_MS: String(s.requestBudgetMs),
      ...(local ? { COORDINATOR_SECRETS_FILE: local.secretsFile } : { COORDINATOR_SECRET_ID: names.secret }),
      // The dashboard function's public key: accepted on the two /federation routes only.
      DASHBOARD_PUBLIC_KEY: s.dashboardPublicKey,
    },
    iamRoleStatements: [
      { Effect: 'Allow', Action: ['dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:Scan'], Resource: [tableArn(names.auditTable)] },
      { Effect: 'Allow', Action: ['dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:BatchWriteItem', 'dynamodb:DeleteItem'], Resource: [tableArn(names.poolTable)] },
      { Effect: 'Allow', Action: ['dynamodb:PutItem'], Resource: [tableArn(names.replayTable)] },
      // Approvals are signatures that every node re-checks; the table only collects them.
      { Effect: 'Allow', Action: ['dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], Resource: [tableArn(names.approvalsTable)] },
      ...(local ? [] : [
        { Effect: 'Allow', Action: ['secretsmanager:GetSecretValue'], Resource: [{ Ref: 'CoordinatorSecret' }] },
        { Effect: 'Allow', Action: ['kms:Decrypt'], Resource: [{ 'Fn::GetAtt': ['CoordinatorKey', 'Arn'] }] },
      ]),
    ],
    events: [
      ['GET', '/status'], ['GET', '/keys'], ['POST', '/keys'], ['GET', '/keys/{keyId}'], ['POST', '/keys/{keyId}/reconstruct'],
      ['POST', '/keys/{keyId}/decrypt'], ['POST', '/keys/{keyId}/datakey'], ['POST', '/keys/{keyId}/reencrypt'],
      ['POST', '/keys/{keyId}/sign'], ['POST', '/keys/{keyId}/preprocess'], ['GET', '/keys/{keyId}/public'], ['POST', '/keys/{keyId}/refresh'],
      ['POST', '/keys/{keyId}/reshare'], ['GET', '/audit/verify'], ['GET', '/clients'], ['POST', '/clients'], ['POST', '/keys/{keyId}/state'],
      ['PUT', '/keys/{keyId}/policy'], ['GET', '/approvals'], ['POST', '/approvals'], ['GET', '/nodes'], ['PUT', '/nodes'],
      ['GET', '/federation/state'], ['POST', '/federation/refusals'],
      // Defence in depth: with apiAuthorizer "aws_iam", API Gateway also demands SigV4 from an IAM
      // principal. The public routes and the dashboard's /federation routes stay outside it.
    ].map(([method, p]) => ({ httpApi: { method, path: p, ...(s.apiAuthorizer === 'aws_iam' && !PUBLIC_ROUTES.has(p) && !p.startsWith('/federation/') ? { authorizer: { type: 'aws_iam' } } : {}) } })),
  };
  const dashboard = {
    handler: 'functions/dashboard.handler',
    reservedConcurrency: s.concurrency.dashboard,
    description: 'fedkms dashboard: node health, fragment availability, events, security log (read-only)',
    timeout,
    environment: {
      COORDINATOR_URL: local ? local.url : apiUrl(),
      ...(local ? { DASHBOARD_SECRETS_FILE: local.dashboardSecretsFile } : { DASHBOARD_SECRET_ID: names.dashboardSecret }),
    },
    // No AWS permission beyond its own secret: it reaches no node, bucket or table.
    iamRoleStatements: local ? [] : [
      { Effect: 'Allow', Action: ['secretsmanager:GetSecretValue'], Resource: [{ Ref: 'DashboardSecret' }] },
      { Effect: 'Allow', Action: ['kms:Decrypt'], Resource: [{ 'Fn::GetAtt': ['CoordinatorKey', 'Arn'] }] },
    ],
    events: [['GET', '/dashboard'], ['GET', '/dashboard/api/state']].map(([method, p]) => ({ httpApi: { method, path: p } })),
  };
  const Resources = {
    CoordinatorAuditTable: auditTable(names.auditTable),
    CoordinatorCommitmentTable: table(names.poolTable, ['keyId', 'S'], ['sk', 'S'], ttl),
    CoordinatorReplayTable: table(names.replayTable, ['pk', 'S'], undefined, ttl),
    CoordinatorApprovalTable: table(names.approvalsTable, ['keyId', 'S'], ['digest', 'S'], ttl),
  };
  if (!local) {
    Resources.CoordinatorKey = kmsKey(`fedkms ${stage} coordinator and dashboard secrets`, ['secretsmanager']);
    Resources.CoordinatorSecret = secretResource(names.secret, 'CoordinatorKey');
    Resources.DashboardSecret = secretResource(names.dashboardSecret, 'CoordinatorKey');
  }
  return { functions: { reconstruct, dashboard }, resources: Resources, names };
}

const DEFAULT_CONCURRENCY = { coordinator: 4, node: 6, dashboard: 2 };
function concurrencyOf(c, where) {
  const out = { ...DEFAULT_CONCURRENCY, ...(c || {}) };
  if (Object.values(out).some((x) => !Number.isInteger(x) || x < 1 || x > 1000)) throw new Error(`${where}: concurrency values must be integers from 1 to 1000`);
  return out;
}

module.exports = { nodeUnit, coordinatorUnit, nodeNames, coordinatorNames, concurrencyOf, DEFAULT_CONCURRENCY, KMS_ADMIN_ACTIONS, apiUrl };
