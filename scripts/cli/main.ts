/**
 * `fedkms`: drive a federation from a terminal or a script. Every API operation has a
 * command; the table below is the whole command line (help, options, dispatch).
 *
 * Human output by default (tables, and progress lines while it waits on nodes);
 * `--json` prints exactly one JSON document on stdout. Exit codes: EXIT in output.ts.
 */
import { UnreachableError } from '../../lib/client/api.js';
import { commandHelp, groupHelp, parseCommandLine, positionals, usageLine, UsageError, type CommandSpec, type OptionSpec } from './args.js';
import { cmdApprovalsApprove, cmdApprovalsList, cmdApprovalsOpen, cmdClientsAdd, cmdClientsList, cmdClientsStatus } from './admin.js';
import { cmdNodesAdd, cmdNodesList, cmdNodesRemove } from './nodes.js';
import { cmdAuditVerify, cmdCreate, cmdKeysList, cmdKeysShow, cmdPolicy, cmdPublic, cmdReconstruct, cmdReshare, cmdState, cmdStatus } from './keys.js';
import { EXIT, err, out } from './output.js';
import { cmdSign, cmdVerify } from './sign.js';
import { cmdDecrypt, cmdEncrypt, cmdReencrypt } from './encrypt.js';
import { keyIdArg, resolveTarget, type Ctx } from './target.js';

export { EXIT };

const opt = (type: OptionSpec['type'], value: string | undefined, help: string): OptionSpec => ({ type, ...(value ? { value } : {}), help });
const MESSAGE: Record<string, OptionSpec> = {
  message: opt('string', 'TEXT', 'the message, as UTF-8 text'),
  file: opt('string', 'PATH|-', 'the message, raw bytes from a file (- for stdin); same as the FILE argument'),
  digest: opt('string', 'HEX', 'a 32- or 64-byte digest (signs "fedkms/digest/v1\\n" || digest)'),
};

/** Every command. A group (`keys`, `clients`, `approvals`; `nodes` when the federation membership lands) is its first word. */
const COMMANDS: CommandSpec<Ctx>[] = [
  { words: ['status'], args: [], summary: 'federation health: every node, up or down, with latency (exit 4 without a quorum)', options: {}, federation: true, run: (c) => cmdStatus(c) },

  { words: ['keys', 'list'], args: [], summary: 'every key and the nodes that hold it', options: {}, federation: true, run: (c) => cmdKeysList(c) },
  { words: ['keys', 'show'], args: ['<keyId>'], summary: 'threshold, version, state, fragment availability per node, quorum margin', options: {}, federation: true, run: (c, p) => cmdKeysShow(c, keyIdArg(p.args[0])) },
  {
    words: ['keys', 'import'], args: ['<keyId>'], summary: 'import a secret (1 to 4096 bytes), dealt as one verifiable share per node',
    details: 'Exactly one of --hex, --base64 or --file. --hex and --base64 take text (- reads that text from stdin:\n`printf A94F3D82C1B7E6F9 | fedkms keys import example --hex -`); --file takes raw bytes. A --file\nholding only hex digits is refused unless --raw says the text itself is the secret.',
    options: {
      hex: opt('string', 'HEX|-', 'the secret in hex (- reads the hex from stdin)'),
      base64: opt('string', 'B64|-', 'the secret in base64 (- reads it from stdin)'),
      file: opt('string', 'PATH|-', 'the secret as raw bytes from a file (- for stdin)'),
      raw: opt('boolean', undefined, 'with --file: import the bytes as they are, even if they read as hex'),
      threshold: opt('string', 'T', 'shares needed to use the key (default: the federation\'s)'),
      nodes: opt('string', 'a,b,c', 'the nodes to hold the key, comma-separated (default: every member); every node checks it'),
    },
    federation: true, run: (c, p) => cmdCreate(c, keyIdArg(p.args[0]), 'import'),
  },
  {
    words: ['keys', 'create'], args: ['<keyId>'], summary: 'generate a secret key, or (--type ed25519|encrypt) a signing or encryption key born by DKG',
    options: {
      length: opt('string', 'BYTES', 'secret length in bytes, 1 to 4096 (default 32)'),
      type: opt('string', 'secret|ed25519|encrypt', 'ed25519 (signing) or encrypt (threshold decryption): the nodes generate the key together (DKG); no one ever holds it'),
      threshold: opt('string', 'T', 'shares needed to use the key (default: the federation\'s)'),
      nodes: opt('string', 'a,b,c', 'the nodes to hold the key, comma-separated (default: every member); every node checks it'),
    },
    federation: true, run: (c, p) => cmdCreate(c, keyIdArg(p.args[0]), 'create'),
  },
  {
    words: ['keys', 'public'], args: ['<keyId>'], summary: 'the public key: OpenSSH, PEM and hex (readable without a client identity)',
    options: { format: opt('string', 'pem|ssh|hex', 'print only that form (ssh: an authorized_keys / allowed_signers line)') },
    federation: true, run: (c, p) => cmdPublic(c, keyIdArg(p.args[0])),
  },
  {
    words: ['keys', 'state'], args: ['<keyId>', '<state>'], summary: 'lifecycle transition on every node: active, disabled, compromised, destroyed (or pre-active)',
    details: 'disabled: every node refuses to use the key until it is active again. compromised: for good, never used again.\ndestroyed: every version deleted from every node, for good (needs --yes); the key then answers 410.\nTransitions: pre-active -> active, compromised, destroyed; active -> disabled, compromised;\ndisabled -> active, compromised, destroyed; compromised -> destroyed.',
    options: { reason: opt('string', 'TEXT', 'recorded in the audit chain'), yes: opt('boolean', undefined, 'confirm destruction') },
    federation: true, run: (c, p) => cmdState(c, keyIdArg(p.args[0]), p.args[1]!),
  },
  {
    words: ['keys', 'policy'], args: ['<keyId>'], summary: 'show the policy version, or replace the policy on every node (--set)',
    details: 'A policy names who may sign, reconstruct, describe and admin the key (client:NAME, role:ROLE), the approvals a\nreconstruction needs, and whether the coordinator may combine shares. --set takes the whole policy, e.g.\n{"sign":["role:admin"],"reconstruct":["client:alice"],"describe":["role:admin"],"admin":["role:admin"],\n "approvals":{"required":2,"approvers":["role:approver"]},"serverSideCombine":false}',
    options: { set: opt('string', 'JSON|FILE|-', 'the new policy: inline JSON, a file, or - for stdin') },
    federation: true, run: (c, p) => cmdPolicy(c, keyIdArg(p.args[0])),
  },
  { words: ['keys', 'refresh'], args: ['<keyId>'], summary: 'new shares of the same key for the same nodes; the old version is retired', options: {}, federation: true, run: (c, p) => cmdReshare(c, keyIdArg(p.args[0]), 'refresh') },
  {
    words: ['keys', 'reshare'], args: ['<keyId>'], summary: 'new shares for a new threshold and/or node set; the group key stays',
    options: { threshold: opt('string', 'T', 'the new threshold'), nodes: opt('string', 'a,b,c', 'the new node set, comma-separated node ids') },
    federation: true, run: (c, p) => cmdReshare(c, keyIdArg(p.args[0]), 'reshare'),
  },

  {
    words: ['sign'], args: ['<keyId>', '[FILE]'], summary: 'threshold Ed25519 signature (FROST); prints it in hex, or as an armored SSH signature',
    details: 'The message: exactly one of --message, --file, --digest or FILE (- for stdin).\n--ssh NAMESPACE prints an SSHSIG for `ssh-keygen -Y verify -n NAMESPACE` (git: NAMESPACE "git"); progress then\ngoes to stderr, so stdout is the signature file.',
    options: { ...MESSAGE, ssh: opt('string', 'NAMESPACE', 'an SSH signature (PROTOCOL.sshsig) for this namespace'), output: opt('string', 'FILE', 'with --ssh: write the signature to FILE') },
    federation: true, run: (c, p) => cmdSign(c, keyIdArg(p.args[0]), p.args[1]),
  },
  {
    words: ['verify'], args: ['[keyId]', '[FILE]'], summary: 'check a signature here (OpenSSL), against a key of the federation or a public key file',
    details: 'fedkms verify <keyId> --signature SIG [FILE]              the key the federation serves\nfedkms verify --public-key FILE --signature SIG [FILE]   no federation, no client identity needed\nSIG: 128 hex digits, an armored SSH signature, or a file holding either (SSH signatures need --ssh NAMESPACE).\nThe public key file: PEM, an OpenSSH line, or 64 hex digits. Exit 0 valid, 1 invalid.',
    options: { ...MESSAGE, signature: opt('string', 'SIG', 'the signature (hex, SSHSIG armor, or a file)'), 'public-key': opt('string', 'FILE', 'verify against this public key instead of asking a federation'), ssh: opt('string', 'NAMESPACE', 'accept an SSH signature made for this namespace') },
    federation: 'optional', run: (c, p) => cmdVerify(c, p.args),
  },
  {
    words: ['reconstruct'], args: ['<keyId>'], summary: 'rebuild the key from t verified fragments, end to end (the nodes seal to this process)',
    options: {
      'server-side': opt('boolean', undefined, 'the coordinator combines (only where the key\'s policy allows it)'),
      request: opt('string', 'FILE', 'the request file `approvals open` wrote, for a key that needs approvals'),
    },
    federation: true, run: (c, p) => cmdReconstruct(c, keyIdArg(p.args[0])),
  },
  {
    words: ['encrypt'], args: ['[IN]', '[OUT]'], summary: 'envelope-encrypt a file of any size to an encrypt key; no node involved',
    details: 'A fresh data key encrypts IN (chunked AES-256-GCM) and is wrapped to the key\'s public key under the encryption\ncontext. IN and OUT default to stdin and stdout (- too). OUT is written to a temporary file and renamed at the end.\nProgress goes to stderr for large inputs. Here --key names the encrypt key: give the client key with FEDKMS_CLIENT_KEY or\n--federation.',
    options: { key: opt('string', 'ID', 'the encrypt key (keys create ID --type encrypt)'), context: { type: 'string', value: 'K=V', multiple: true, help: 'encryption context entry (repeatable); decryption needs exactly the same' } },
    federation: true, run: (c, p) => cmdEncrypt(c, p.args),
  },
  {
    words: ['decrypt'], args: ['[IN]', '[OUT]'], summary: 'decrypt a file made by `fedkms encrypt`: the data key by threshold decryption, end to end',
    details: 'Each node checks your request and the key\'s decrypt permission, and seals a proven partial to this process;\nproofs are verified here and a lying node is named. Exit 1 and no output when the context is wrong or the data\nwas altered or truncated. IN and OUT default to stdin and stdout.',
    options: { context: { type: 'string', value: 'K=V', multiple: true, help: 'the encryption context the file was encrypted under (repeatable)' } },
    federation: true, run: (c, p) => cmdDecrypt(c, p.args),
  },
  {
    words: ['reencrypt'], args: ['[IN]', '[OUT]'], summary: 're-encrypt a file made by `fedkms encrypt` to another key (or the latest version of one); plaintext stays here',
    details: 'The data key is unwrapped by threshold decryption (the nodes audit a re-encryption to --key under --to-context),\nthe payload is decrypted and encrypted again under a fresh data key wrapped to --key, with no node: the\ncoordinator never sees plaintext. Exit 1 and no output when the context is wrong or the data was altered.\nIN and OUT default to stdin and stdout. Here --key names the destination key, as in `fedkms encrypt`.',
    options: {
      key: opt('string', 'DEST', 'the destination encrypt key'),
      context: { type: 'string', value: 'K=V', multiple: true, help: 'the encryption context IN was encrypted under (repeatable)' },
      'to-context': { type: 'string', value: 'K=V', multiple: true, help: 'the new encryption context (repeatable; default: the same as --context)' },
    },
    federation: true, run: (c, p) => cmdReencrypt(c, p.args),
  },
  { words: ['audit', 'verify'], args: [], summary: 'verify every audit chain (signatures, witnessed checkpoints); name the component and first bad position', options: {}, federation: true, run: (c) => cmdAuditVerify(c) },

  { words: ['clients', 'list'], args: [], summary: 'the client registry, as a threshold of nodes agree on it', options: {}, federation: true, run: (c) => cmdClientsList(c) },
  {
    words: ['clients', 'add'], args: ['<name>'], summary: 'register a client (or replace its record); administrators only',
    options: {
      'public-key': opt('string', 'KEY|FILE', 'its Ed25519 public key: base64, PEM, OpenSSH or hex, or a file'),
      'generate-key': opt('string', 'FILE', 'generate its key pair here; the private key goes to FILE (mode 600)'),
      roles: opt('string', 'a,b', 'roles: admin, key-creator, approver, auditor, or your own'),
      status: opt('string', 'active|disabled', 'default active'),
    },
    federation: true, run: (c, p) => cmdClientsAdd(c, p.args[0]!),
  },
  { words: ['clients', 'disable'], args: ['<name>'], summary: 'lock a client out on every node (its record stays)', options: {}, federation: true, run: (c, p) => cmdClientsStatus(c, p.args[0]!, 'disabled') },
  { words: ['clients', 'enable'], args: ['<name>'], summary: 'let a disabled client back in', options: {}, federation: true, run: (c, p) => cmdClientsStatus(c, p.args[0]!, 'active') },

  { words: ['approvals', 'list'], args: ['<keyId>'], summary: 'open reconstruction requests for a key, with who approved each', options: {}, federation: true, run: (c, p) => cmdApprovalsList(c, keyIdArg(p.args[0])) },
  {
    words: ['approvals', 'open'], args: ['<keyId>'], summary: 'open a reconstruction request (requester); writes a request file for `reconstruct --request`',
    options: { 'expires-in': opt('string', 'MINUTES', 'how long approvals stay valid (default 60, at most 1440)'), out: opt('string', 'FILE', 'the request file (default fedkms-request-<key>-<digest>.json)') },
    federation: true, run: (c, p) => cmdApprovalsOpen(c, keyIdArg(p.args[0])),
  },
  { words: ['approvals', 'approve'], args: ['<keyId>', '<digest>'], summary: "approve a request (another client): signs the request's digest with your key", options: {}, federation: true, run: (c, p) => cmdApprovalsApprove(c, keyIdArg(p.args[0]), p.args[1]!) },

  { words: ['nodes', 'list'], args: [], summary: 'the members: id, share index, up, keys held, endpoint, fingerprint', options: {}, federation: true, run: (c) => cmdNodesList(c) },
  {
    words: ['nodes', 'add'], args: ['<identity.json>...'], summary: 'add nodes from their identity documents (administrators); with no membership yet, form the federation',
    options: { threshold: opt('string', 'T', 'the federation threshold for new keys (default: unchanged, or a majority when forming)') },
    federation: true, run: (c, p) => cmdNodesAdd(c, p.args),
  },
  {
    words: ['nodes', 'remove'], args: ['<nodeId>'], summary: 'retire a node (administrators); reshare its keys off it first',
    options: { force: opt('boolean', '', 'remove it even if it may still hold shares (a node lost for good)') },
    federation: true, run: (c, p) => cmdNodesRemove(c, p.args[0]!),
  },
];

const GROUPS: [string, string][] = [
  ['keys', 'create, import, list, show, public keys; lifecycle state, policy, refresh, reshare'],
  ['clients', 'the client registry: list, add, disable, enable'],
  ['approvals', 'm-of-n reconstruction approvals: list, open, approve'],
  ['nodes', 'the federation\'s members: list, add, remove'],
];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => usageLine(c).length - 'fedkms '.length));
  const line = (c: CommandSpec<Ctx>) => `  ${usageLine(c).slice('fedkms '.length).padEnd(width)}  ${c.summary}`;
  return [
    'usage: fedkms <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map(line),
    '',
    'groups (`fedkms <group> --help`):',
    ...GROUPS.map(([g, s]) => `  ${g.padEnd(10)}  ${s}`),
    '',
    'Every command takes --json (one JSON document on stdout, no progress lines) and -h/--help.',
    'The federation: --url, then FEDKMS_URL, then --federation FILE / FEDKMS_FEDERATION, or .local/federation.json',
    '(written by `npm start`). The identity: --client NAME --key FILE, or FEDKMS_CLIENT and FEDKMS_CLIENT_KEY, or that file.',
    'Node identity keys to pin for reconstruct: FEDKMS_NODE_KEYS="id=base64key,..." (or nodeKeys in the federation file).',
    '',
    'exit codes: 0 ok, 1 operation failed, 2 usage error, 3 authentication error,',
    '            4 not enough nodes, 5 coordinator unreachable or unavailable',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let json = argv.includes('--json');
  let found: string | undefined;
  try {
    const { command, group, parsed } = parseCommandLine(argv, COMMANDS);
    json = parsed.values['json'] === true;
    found = command?.words.join(' ');
    const help = parsed.values['help'] === true;
    if (!command) {
      const [g] = group;
      if (g && help) {
        out(groupHelp(g, COMMANDS));
        return EXIT.ok;
      }
      if (g) throw new UsageError(parsed.args.length ? `unknown command "${parsed.args[0]}" (commands: ${COMMANDS.filter((c) => c.words[0] === g).map((c) => c.words[1]).join(', ')})` : `fedkms ${g}: which command? (${COMMANDS.filter((c) => c.words[0] === g).map((c) => c.words[1]).join(', ')})`, g);
      if (help) {
        out(mainHelp());
        return EXIT.ok;
      }
      if (parsed.args.length === 0) {
        err(mainHelp());
        return EXIT.usage;
      }
      throw new UsageError(`unknown command: ${parsed.args[0]}`);
    }
    if (help) {
      out(commandHelp(command));
      return EXIT.ok;
    }
    const p = { ...parsed, args: positionals(command, parsed) };
    let target: ReturnType<typeof resolveTarget> | undefined;
    const ctx: Ctx = { json, values: parsed.values, target: () => (target ??= resolveTarget(parsed.values, json)) };
    return await command.run(ctx, p);
  } catch (e) {
    if (e instanceof UsageError) {
      // One line that names the command and what is wrong, then where the help is.
      const cmd = e.command ?? found;
      const msg = e.message.startsWith('fedkms ') ? e.message.slice('fedkms '.length) : cmd ? `${cmd}: ${e.message}` : e.message;
      err(`fedkms: ${msg}`);
      err(`(run \`fedkms ${cmd ? `${cmd} ` : ''}--help\` for usage)`);
      return EXIT.usage;
    }
    if (e instanceof UnreachableError) {
      if (json) out(JSON.stringify({ error: { code: 'unreachable', message: e.message } }));
      else err(`fedkms: ${e.message}: is the federation running?`);
      return EXIT.unavailable;
    }
    err(`fedkms: unexpected error: ${(e as Error)?.message ?? String(e)}`);
    return EXIT.failed;
  }
}

// `tsx scripts/cli/main.ts …` runs it directly; bin/fedkms calls main() itself.
if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = EXIT.failed;
    },
  );
}
