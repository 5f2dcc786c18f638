import yargs from 'yargs';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import * as agent from './commands/agent.js';
import * as anchorKeeper from './commands/anchor-keeper.js';
import * as sink from './commands/sink.js';
import * as sql from './commands/sql.js';
import * as up from './commands/up.js';
import * as demo from './commands/demo.js';
import * as instances from './commands/instances.js';
import * as restoreCmd from './commands/restore.js';
import * as windows from './commands/windows.js';
import * as api from './commands/api.js';
import * as restorer from './commands/restorer.js';
import * as history from './commands/history.js';

/** Exit code a command handler sets; yargs handlers cannot return one. */
export const exit = { code: 0 };

/**
 * The `flashback` command. Returns the exit code instead of exiting, so tests
 * call it in-process. Every flag can also come from a FLASHBACK_* env var
 * (--node-id ⇔ FLASHBACK_NODE_ID).
 */
export async function runCli(argv: string[]): Promise<number> {
  exit.code = 0;
  let failed: unknown;
  /** A command module whose handler does not run once validation failed. */
  const guard = <M extends { handler: (args: never) => Promise<void> }>(mod: M): M => ({
    ...mod,
    handler: (args: never) => (failed === undefined ? mod.handler(args) : Promise.resolve()),
  });
  await yargs(argv)
    .scriptName('flashback')
    .env('FLASHBACK')
    // Env-only settings: declared so .strict() accepts them when .env() maps FLASHBACK_* onto flags.
    .option('log-level', {
      type: 'string',
      hidden: true,
      global: true,
      describe: 'log level (env FLASHBACK_LOG_LEVEL)',
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
    .usage(
      '$0 <command> [options]\n\nPoint-in-time recovery for Redis: capture every mutation, query history with SQL, restore any instant.',
    )
    .command(guard(up))
    .command(guard(demo))
    .command(guard(agent))
    .command(guard(anchorKeeper))
    .command(guard(sink))
    .command(guard(sql))
    .command(guard(restoreCmd))
    .command(guard(windows))
    .command(guard(api))
    .command(guard(restorer))
    .command(guard(history))
    .command(guard(instances))
    .demandCommand(1, 'name a command: flashback --help lists them')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
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
