/**
 * The command table's types and the one argument parser every command goes through.
 *
 * node:util parseArgs tokenizes (no dependency, shipped with Node); this module does the
 * rest: it finds the command from the leading words, allows each command only its own
 * options, and turns every mistake into one line that names the command and what is wrong,
 * instead of Node's raw message and the whole help.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  /** The command the error is about, for the "see fedkms <command> --help" hint. */
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** How the value is shown in help, e.g. `HEX|-`. Booleans have none. */
  value?: string;
  help: string;
  multiple?: boolean;
  short?: string;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  /** The command's words, e.g. ['keys', 'show']. */
  words: string[];
  /** Positionals after the command's words. */
  args: string[];
  values: Values;
}

export interface CommandSpec<Ctx> {
  words: string[];
  /** Positional arguments as shown in help: `<keyId>`, `[FILE]`. Required ones in angle brackets. */
  args: string[];
  summary: string;
  /** More lines of help: forms, rules, examples. */
  details?: string;
  options: Record<string, OptionSpec>;
  /** Whether the command talks to a federation (then --url, --client ... apply). */
  federation: boolean | 'optional';
  run: (ctx: Ctx, p: Parsed) => Promise<number>;
}

/** Options every command that talks to a federation takes. */
export const FEDERATION_OPTIONS: Record<string, OptionSpec> = {
  url: { type: 'string', value: 'URL', help: 'coordinator URL (env FEDKMS_URL)' },
  client: { type: 'string', value: 'NAME', help: 'client identity name (env FEDKMS_CLIENT)' },
  key: { type: 'string', value: 'FILE', help: "the client's Ed25519 private key, base64, in a file (env FEDKMS_CLIENT_KEY holds the key itself)" },
  federation: { type: 'string', value: 'FILE', help: 'federation file {url, client: {name, privateKey}, nodes, nodeKeys} (env FEDKMS_FEDERATION; default .local/federation.json, written by `npm start`)' },
  node: { type: 'string', value: 'ID=URL', multiple: true, help: "a node's public URL for progress probes (repeatable; env FEDKMS_NODE_URLS=\"id=url,...\")" },
  timeout: { type: 'string', value: 'MS', help: 'per-node probe timeout (default 3000)' },
};

export const COMMON_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean', help: 'one JSON document on stdout, no progress lines' },
  help: { type: 'boolean', short: 'h', help: 'help for this command' },
};

export function optionsOf<C>(c: CommandSpec<C>): Record<string, OptionSpec> {
  return { ...c.options, ...(c.federation ? FEDERATION_OPTIONS : {}), ...COMMON_OPTIONS };
}

/** Every option any command knows, so the tokenizer consumes values right whatever the command. */
function unionOptions<C>(commands: CommandSpec<C>[]): Record<string, { type: 'string' | 'boolean'; short?: string }> {
  const all: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const c of commands) {
    for (const [name, o] of Object.entries(optionsOf(c))) {
      if (all[name] && all[name]!.type !== o.type) throw new Error(`option --${name} has two types in the command table`);
      all[name] = { type: o.type, ...(o.short ? { short: o.short } : {}) };
    }
  }
  return all;
}

export const commandName = (words: string[]) => `fedkms ${words.join(' ')}`;

/**
 * Find the command and check its options. Returns the command (undefined when the words
 * name only a group, e.g. `fedkms keys`, or nothing) and what was parsed.
 */
export function parseCommandLine<C>(argv: string[], commands: CommandSpec<C>[]): { command?: CommandSpec<C>; group: string[]; parsed: Parsed } {
  const union = unionOptions(commands);
  const { values, positionals, tokens } = parseArgs({ args: argv, options: union, strict: false, allowPositionals: true, tokens: true });
  // The longest run of leading words that names a command.
  let command: CommandSpec<C> | undefined;
  for (const c of commands) {
    if (c.words.every((w, i) => positionals[i] === w) && (!command || c.words.length > command.words.length)) command = c;
  }
  // `fedkms keys ...` with no (or an unknown) subcommand: the group, for its help.
  const first = positionals[0];
  const group = command ? command.words : first !== undefined && commands.some((c) => c.words.length > 1 && c.words[0] === first) ? [first] : [];
  const allowed = command ? optionsOf(command) : COMMON_OPTIONS;
  const where = command ? commandName(command.words) : group.length ? commandName(group) : 'fedkms';
  const words = command?.words ?? group;
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const spec = allowed[t.name];
    const shown = t.rawName;
    if (!spec) {
      if (values['help'] === true) continue; // `--help` wins: show the help, not an error
      throw new UsageError(`${where}: unknown option ${shown}`, words.join(' '));
    }
    if (spec.type === 'boolean' && t.value !== undefined) throw new UsageError(`${where}: ${shown} takes no value`, words.join(' '));
    if (spec.type === 'string') {
      if (t.value === undefined) throw new UsageError(`${where}: ${shown} needs a value (${spec.value ?? 'VALUE'})`, words.join(' '));
      // `--hex --json` would otherwise read "--json" as the hex; `-` alone (stdin) is a value.
      if (!t.inlineValue && t.value.startsWith('-') && t.value !== '-') {
        throw new UsageError(`${where}: ${shown} needs a value (${spec.value ?? 'VALUE'}), got the option ${t.value}; write ${shown}=${t.value} if that is the value`, words.join(' '));
      }
    }
  }
  const v: Values = {};
  for (const [name, spec] of Object.entries(allowed)) {
    const raw = values[name];
    if (raw === undefined) continue;
    v[name] = spec.multiple ? (Array.isArray(raw) ? raw : [raw]).map(String) : Array.isArray(raw) ? String(raw.at(-1)) : (raw as string | boolean);
  }
  return { ...(command ? { command } : {}), group, parsed: { words, args: positionals.slice(words.length), values: v } };
}

/** Positionals against the command's declared ones: says which is missing, or which one is extra. */
export function positionals<C>(c: CommandSpec<C>, p: Parsed): string[] {
  const required = c.args.filter((a) => a.startsWith('<')).length;
  const where = commandName(c.words);
  if (p.args.length < required) {
    const missing = c.args[p.args.length]!;
    throw new UsageError(`${where}: missing ${missing} (usage: ${usageLine(c)})`, c.words.join(' '));
  }
  // A last argument written `<name>...` takes any number of values.
  const variadic = c.args.at(-1)?.endsWith('...') ?? false;
  if (!variadic && p.args.length > c.args.length) throw new UsageError(`${where}: unexpected argument "${p.args[c.args.length]}" (usage: ${usageLine(c)})`, c.words.join(' '));
  return p.args;
}

export function usageLine<C>(c: CommandSpec<C>): string {
  return [commandName(c.words), ...c.args].join(' ');
}

function optionLines(opts: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(opts).map(([name, o]) => [`${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` ${o.value}` : ''}`, o.help] as const);
  const width = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b]) => `  ${a.padEnd(width)}  ${b}`);
}

/** `fedkms <command> --help`. */
export function commandHelp<C>(c: CommandSpec<C>): string {
  const lines = [`usage: ${usageLine(c)} [options]`, '', c.summary];
  if (c.details) lines.push('', c.details);
  if (Object.keys(c.options).length) lines.push('', 'options:', ...optionLines(c.options));
  if (c.federation) lines.push('', 'federation options:', ...optionLines(FEDERATION_OPTIONS));
  lines.push('', 'common options:', ...optionLines(COMMON_OPTIONS));
  return lines.join('\n');
}

/** `fedkms keys --help`: the commands of a group. */
export function groupHelp<C>(group: string, commands: CommandSpec<C>[]): string {
  const mine = commands.filter((c) => c.words[0] === group);
  const width = Math.max(...mine.map((c) => usageLine(c).length));
  return [`usage: fedkms ${group} <command> [options]`, '', 'commands:', ...mine.map((c) => `  ${usageLine(c).padEnd(width)}  ${c.summary}`), '', `Run \`fedkms ${group} <command> --help\` for a command's options.`].join('\n');
}
