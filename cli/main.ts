import yargs, { type Argv, type CommandModule as YargsCommand } from 'yargs';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import { formatTsUs, parseRelativeTime } from '../core/time.js';
import { packageVersion } from '../core/version.js';
import { contextToken, findContext } from './context.js';
import { parseDuration } from './duration.js';
import { stopSettings } from './run-service.js';
import { EXAMPLES } from './examples.js';

/** Exit code a command handler sets; yargs handlers cannot return one. */
export const exit = { code: 0 };

/** The API port `up` and `api` listen on and the CLI calls when nothing else is said. */
export const DEFAULT_API_PORT = 7480;

/** What a command module exports (one yargs module per subcommand). */
interface CommandModule {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv<object>;
  handler: (args: never) => Promise<void>;
}

/**
 * The subcommands. A module is imported only when its name is on the command line: the services pull in
 * ioredis, NATS, ClickHouse and Hono, which would cost every `flashback --help` half a second.
 * `command` and `summary` mirror the module's own (test/cli-ops.test.ts checks `command`).
 */
export const COMMANDS: { command: string; summary: string; load: () => Promise<CommandModule> }[] = [
  { command: 'up', summary: 'run the whole stack on this machine', load: () => import('./commands/up.js') },
  { command: 'demo', summary: 'the seed scenario against a running stack', load: () => import('./commands/demo.js') },
  {
    command: 'agent',
    summary: 'capture one Redis node into NATS JetStream',
    load: () => import('./commands/agent.js'),
  },
  {
    command: 'anchor-keeper',
    summary: "keep time in a node's replication stream while its agent is away",
    load: () => import('./commands/anchor-keeper.js'),
  },
  { command: 'sink', summary: 'store events from JetStream in ClickHouse', load: () => import('./commands/sink.js') },
  {
    command: 'nats-setup',
    summary: 'create the streams and buckets, with JetStream replicas',
    load: () => import('./commands/nats-setup.js'),
  },
  { command: 'sql <query>', summary: 'read-only SQL over the history', load: () => import('./commands/sql.js') },
  {
    command: 'restore',
    summary: 'restore a node (or a Cluster) at an instant or before one event',
    load: () => import('./commands/restore.js'),
  },
  { command: 'windows', summary: 'restorable windows per node', load: () => import('./commands/windows.js') },
  { command: 'api', summary: 'serve the HTTP API', load: () => import('./commands/api.js') },
  {
    command: 'restorer',
    summary: 'run restore jobs from the work queue',
    load: () => import('./commands/restorer.js'),
  },
  { command: 'history', summary: 'the events that touched a key', load: () => import('./commands/history.js') },
  {
    command: 'instances [action] [id]',
    summary: 'instances restores spawned; stop one',
    load: () => import('./commands/instances.js'),
  },
];

/** Commands an operator runs beside a stack: they find it through its context file (cli/context.ts). */
const CLIENT_COMMANDS = new Set(['windows', 'sql', 'history', 'restore', 'instances', 'demo']);
/** Commands that only talk to the API: without any API setting they call the default port. */
const API_ONLY_COMMANDS = new Set(['instances', 'demo']);
/** Flags that take an instant, which may be relative (`--to -5m`). */
const TIME_FLAGS = ['to', 'since', 'until'] as const;

/**
 * The `flashback` command. Returns the exit code instead of exiting, so tests
 * call it in-process. Every flag can also come from a FLASHBACK_* env var
 * (--node-id ⇔ FLASHBACK_NODE_ID).
 */
export async function runCli(
  rawArgv: string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Promise<number> {
  exit.code = 0;
  const argv = joinRelativeTimes(rawArgv);
  const say = (s: string) => process.stderr.write(`flashback: ${s}\n`);
  let failed: unknown;
  /** A command module whose handler does not run once validation failed. */
  const guard = (mod: CommandModule, name: string): YargsCommand => ({
    command: mod.command,
    describe: mod.describe,
    builder: (y: Argv) => (EXAMPLES[name] ?? []).reduce((acc, [cmd, what]) => acc.example(cmd, what), mod.builder(y)),
    handler: (args) => (failed === undefined ? mod.handler(args as never) : Promise.resolve()),
  });
  const named = new Set(argv);
  let y: Argv<object> = yargs(argv)
    .scriptName('flashback')
    .env('FLASHBACK')
    // Env-only settings: declared so .strict() accepts them when .env() maps FLASHBACK_* onto flags.
    .option('log-level', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'log level (env FLASHBACK_LOG_LEVEL)',
    })
    .option('log-format', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'json or pretty (env FLASHBACK_LOG_FORMAT; default: pretty on a terminal)',
    })
    .option('api-tokens', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'tokens the API accepts (env FLASHBACK_API_TOKENS)',
    })
    .option('api-url', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'API URL for CLI commands (env FLASHBACK_API_URL)',
    })
    .option('api-token', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'API token for CLI commands (env FLASHBACK_API_TOKEN)',
    })
    .option('stop-timeout', {
      type: 'string',
      global: true,
      describe:
        'services: after SIGINT/SIGTERM, exit by this deadline whatever is unreachable, logging what was not flushed (a second signal exits at once)',
      default: '10s',
    })
    .option('data-dir', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'data dir of the local stack (env FLASHBACK_DATA_DIR)',
    })
    .usage(
      '$0 <command> [options]\n\nPoint-in-time recovery for Redis: capture every mutation, query history with SQL, restore any instant.',
    );
  for (const entry of COMMANDS) {
    const name = entry.command.split(' ')[0]!;
    if (named.has(name)) y = y.command(guard(await entry.load(), name));
    else
      y = y.command(entry.command, entry.summary, {}, () => {
        throw new FlashbackError(ErrorCode.Internal, `command ${name} was not loaded`);
      });
  }
  await y
    .middleware((args) => {
      const name = String(args._[0] ?? '');
      stopSettings.timeoutMs = parseDuration(String(args.stopTimeout ?? '10s'), '--stop-timeout');
      resolveTimes(args, say);
      if (CLIENT_COMMANDS.has(name)) applyStackContext(args, argv, env, cwd, name, say);
    })
    .completion('completion', 'print a bash/zsh completion script: flashback completion >> ~/.bashrc')
    .example('$0 up --demo --fast', 'the whole stack on this machine, with the seed demo')
    .example('$0 windows', 'in a second terminal: restorable windows of the running stack')
    .example('$0 restore --node 127.0.0.1:6379 --to -5m --spawn', 'a node as it was 5 minutes ago')
    .epilogue(
      'Beside a running `flashback up`, commands find its stack through <data dir>/context.json ' +
        '(FLASHBACK_DATA_DIR, else the nearest ./.flashback). Elsewhere: FLASHBACK_API_URL and FLASHBACK_API_TOKEN, ' +
        'or FLASHBACK_CLICKHOUSE / FLASHBACK_NATS. Every flag also reads FLASHBACK_<FLAG>.',
    )
    .demandCommand(1, 'name a command: flashback --help lists them')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(packageVersion())
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      // A FLASHBACK_* variable this command has no flag for (an env file shared by all services) is not an error.
      if (!err && envOnlyUnknowns(msg, argv, env)) return;
      // yargs 18 still runs the command's handler after a failed check (throwing here escapes parseAsync): see guard().
      failed ??= err ?? new FlashbackError(ErrorCode.BadInput, msg);
    })
    .parseAsync()
    .catch((err: unknown) => {
      failed = err;
    });
  if (failed !== undefined) {
    process.stderr.write(
      `flashback: ${describeError(failed)
        .replace(/\s*\n\s*/g, ' ')
        .trim()}\n`,
    );
    return failed instanceof FlashbackError && failed.code === ErrorCode.BadInput ? 2 : 1;
  }
  return exit.code;
}

/**
 * Whether a strict-mode message names only settings that came from FLASHBACK_* variables, none from the command line:
 * `Unknown argument: clickhouse` for FLASHBACK_CLICKHOUSE under `flashback agent`.
 */
function envOnlyUnknowns(msg: string | undefined, argv: string[], env: NodeJS.ProcessEnv): boolean {
  const m = /^Unknown arguments?: (.+)$/.exec(msg ?? '');
  if (!m) return false;
  return m[1]!.split(', ').every((name) => {
    const envName =
      'FLASHBACK_' +
      name
        .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
        .replace(/-/g, '_')
        .toUpperCase();
    return env[envName] !== undefined && !onCommandLine(argv, name);
  });
}

/** `--to -5m` → `--to=-5m`: otherwise the parser reads `-5m` as the short flags -5 and -m. */
export function joinRelativeTimes(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (
      TIME_FLAGS.some((f) => a === `--${f}`) &&
      next !== undefined &&
      next.startsWith('-') &&
      parseRelativeTime(next) !== undefined
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Relative instants become absolute once, here, and the operator sees which instant that is. */
function resolveTimes(args: Record<string, unknown>, say: (s: string) => void): void {
  const nowUs = Date.now() * 1000;
  for (const flag of TIME_FLAGS) {
    const v = args[flag];
    if (typeof v !== 'string') continue;
    const us = parseRelativeTime(v, nowUs);
    if (us === undefined) continue;
    const iso = formatTsUs(us);
    args[flag] = iso;
    say(`--${flag} ${v} is ${iso} (${new Date(us / 1000).toString()})`);
  }
}

/** Whether `--flag` (or `--flag=…`) is on the command line itself. */
function onCommandLine(argv: string[], flag: string): boolean {
  return argv.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
}

/**
 * Fills `api`, `token`, `clickhouse` and `nats` of a client command from, in order: its flag, FLASHBACK_API_URL /
 * FLASHBACK_API_TOKEN / FLASHBACK_CLICKHOUSE / FLASHBACK_NATS (FLASHBACK_API and FLASHBACK_TOKEN still read, with a
 * deprecation line), the context of a running local stack, the defaults.
 */
function applyStackContext(
  args: Record<string, unknown>,
  argv: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
  name: string,
  say: (s: string) => void,
): void {
  if (env.FLASHBACK_API !== undefined)
    say('FLASHBACK_API is deprecated and will be dropped: set FLASHBACK_API_URL' + ignoredIf(env.FLASHBACK_API_URL));
  if (env.FLASHBACK_TOKEN !== undefined)
    say(
      'FLASHBACK_TOKEN is deprecated and will be dropped: set FLASHBACK_API_TOKEN' + ignoredIf(env.FLASHBACK_API_TOKEN),
    );
  const envApi = env.FLASHBACK_API_URL ?? env.FLASHBACK_API;
  const envToken = env.FLASHBACK_API_TOKEN ?? env.FLASHBACK_TOKEN;
  const explicit = {
    api: onCommandLine(argv, 'api') || envApi !== undefined,
    clickhouse: onCommandLine(argv, 'clickhouse') || env.FLASHBACK_CLICKHOUSE !== undefined,
    nats: onCommandLine(argv, 'nats') || env.FLASHBACK_NATS !== undefined,
  };
  if (!onCommandLine(argv, 'api') && envApi !== undefined) args.api = envApi;
  if (!onCommandLine(argv, 'token') && envToken !== undefined) args.token = envToken;
  const found = explicit.api || explicit.clickhouse ? undefined : findContext(env, cwd);
  if (found && !found.running) {
    say(
      `the stack of ${found.context.dataDir} is not running (its flashback up, pid ${found.context.pid}, is gone); ` +
        'start it again with flashback up, or name --api / --clickhouse',
    );
  } else if (found) {
    const ctx = found.context;
    // Naming a ClickHouse or NATS means "go there directly": the stack's API is then not used.
    if (!explicit.api && !explicit.clickhouse && !explicit.nats) {
      args.api = ctx.apiUrl;
      if (!onCommandLine(argv, 'token') && envToken === undefined) args.token = contextToken(ctx);
    }
    if (!explicit.clickhouse) args.clickhouse = ctx.clickhouseUrl;
    if (!explicit.nats) args.nats = ctx.natsUrl;
    if (process.stderr.isTTY) say(`using the stack of ${ctx.dataDir} (api ${ctx.apiUrl})`);
    return;
  }
  if (API_ONLY_COMMANDS.has(name) && args.api === undefined) args.api = `http://127.0.0.1:${DEFAULT_API_PORT}`;
}

function ignoredIf(newer: string | undefined): string {
  return newer === undefined ? '' : ' (it is set too, and wins)';
}
