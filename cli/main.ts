import yargs from 'yargs';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import * as agent from './commands/agent.js';
import * as sink from './commands/sink.js';
import * as sql from './commands/sql.js';
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
  await yargs(argv)
    .scriptName('flashback')
    .env('FLASHBACK')
    .usage('$0 <command> [options]\n\nPoint-in-time recovery for Redis: capture every mutation, query history with SQL, restore any instant.')
    .command(agent)
    .command(sink)
    .command(sql)
    .command(restoreCmd)
    .command(windows)
    .command(api)
    .command(restorer)
    .command(history)
    .demandCommand(1, 'name a command: flashback --help lists them')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      failed = err ?? new FlashbackError(ErrorCode.BadInput, msg);
    })
    .parseAsync()
    .catch((err: unknown) => {
      failed = err;
    });
  if (failed !== undefined) {
    process.stderr.write(`flashback: ${describeError(failed)}\n`);
    return failed instanceof FlashbackError && failed.code === ErrorCode.BadInput ? 2 : 1;
  }
  return exit.code;
}
