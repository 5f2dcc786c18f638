import { decodeCommand, encodeCommand } from '../core/redis/resp.js';

/*
 * Commands the source may have refused although MONITOR showed them.
 *
 * Redis checks some arguments only for ordinary clients: `mustObeyClient(c)` — the AOF loader's fake client and a
 * master link — skips them (7.0 t_string.c checkStringLength, bitops.c getBitOffsetFromArgument, t_stream.c
 * streamParseAddOrTrimArgsOrReply's LIMIT, cluster.c restoreCommand's deep sanitization). MONITOR shows a command
 * whether it ran or was refused, so a refused `SETRANGE k 9223372036854775807 A` reaches the history, and a restore's
 * AOF loader would execute it: an abort for out of memory (checked on 7.0.15), or a value the source never held.
 *
 * A command run by a script is checked like an ordinary client's even while an AOF loads (the script's client is
 * neither the AOF client nor a master), so the restore replays these commands inside `EVAL`, where the loading
 * server applies its own live rules — the same rules, state and configuration as the source, without mirroring
 * them here. The script must not return an error: Redis 7.0 crashes when a script run by the AOF client ends
 * with one (afterErrorReply reaches the fake client's NULL realcmd; checked on 7.0.15), hence `pcall` and a
 * constant reply.
 */

/** EVAL body: run ARGV[1] on KEYS[1] with the rest of ARGV, swallowing the error a refused command raises. */
export const REFUSAL_GUARD_SCRIPT = 'redis.pcall(ARGV[1], KEYS[1], unpack(ARGV, 2)) return 0';

/**
 * Names (lower case) of the commands with a check the AOF client skips, and what the source refuses:
 * - `setrange`, `append`: a string longer than `proto-max-bulk-len` ("string exceeds maximum allowed size");
 * - `setbit`, `bitfield`: a bit offset at or past `proto-max-bulk-len` × 8 ("bit offset is not an integer or out of
 * range");
 * - `xadd`, `xtrim`: `LIMIT` without `~` ("LIMIT cannot be used without the special ~ option"); and approximate
 *   trimming (`~`), which a client's command caps at `LIMIT` (default 100 × stream-node-max-entries) and the loader
 *   does not (checked on 7.0.15: `XTRIM s MAXLEN ~ 0` over 30 000 entries leaves 20 000 live, 0 when loaded).
 * Not here: a `RESTORE` payload with a valid checksum and a corrupt body makes a loading server exit even inside a
 * script (rdbReportError); a restore that breaks on one names it and later restores skip it
 * (restorer/broken-events.ts). Nor a `FUNCTION LOAD` the source refused for running past 500 ms: the loader does
 * not time it and loads the library (checked on 7.0.15), and FUNCTION is not allowed in a script.
 */
export const REFUSABLE_COMMANDS: ReadonlySet<string> = new Set([
  'setrange',
  'append',
  'setbit',
  'bitfield',
  'xadd',
  'xtrim',
]);

/** Lua's unpack() fails past its C stack (LUAI_MAXCSTACK 8000); longer commands stay as they are. */
const MAX_GUARDED_ARGS = 7_000;

const EVAL = Buffer.from('EVAL');
const SCRIPT = Buffer.from(REFUSAL_GUARD_SCRIPT);
const ONE = Buffer.from('1');

/**
 * The RESP to write into a restore's AOF for a captured command: `resp` itself, or, for a command of
 * {@link REFUSABLE_COMMANDS}, the same command inside the guard `EVAL`. Cheap for everything else: only the
 * command name is looked at.
 */
export function guardRefusable(resp: Buffer): Buffer {
  if (!mayBeRefusable(resp)) return resp;
  const name = commandName(resp);
  if (name === undefined || !REFUSABLE_COMMANDS.has(name)) return resp;
  const argv = decodeCommand(resp);
  if (argv.length < 2 || argv.length > MAX_GUARDED_ARGS) return resp;
  // Without `~` or LIMIT a stream command is checked alike by both (a field named "limit" is guarded needlessly,
  // harmlessly).
  if (
    (name === 'xadd' || name === 'xtrim') &&
    !argv.some(
      (a) => (a.length === 1 && a[0] === 0x7e) || (a.length === 5 && a.toString('latin1').toLowerCase() === 'limit'),
    )
  )
    return resp;
  return encodeCommand([EVAL, SCRIPT, ONE, argv[1]!, argv[0]!, ...argv.slice(2)]);
}

/**
 * A per-event fast path (a restore writes millions): false unless the name has one digit of length and starts with
 * the first letter of a refusable command (s, a, b, x), without building a string.
 */
function mayBeRefusable(resp: Buffer): boolean {
  const i = resp.indexOf(0x0a);
  if (i < 0 || resp[i + 1] !== 0x24 || resp[i + 3] !== 0x0d) return false;
  const c = (resp[i + 5] ?? 0) | 0x20;
  return c === 0x73 || c === 0x61 || c === 0x62 || c === 0x78;
}

/** The command name of one RESP command, lower case, without decoding the rest; undefined when it is not one. */
export function commandName(resp: Buffer): string | undefined {
  // *<n>\r\n$<len>\r\n<name>\r\n
  if (resp.length < 8 || resp[0] !== 0x2a) return undefined;
  let i = resp.indexOf(0x0a);
  if (i < 0 || resp[i + 1] !== 0x24) return undefined;
  const lenEnd = resp.indexOf(0x0d, i + 2);
  const len = Number(resp.toString('latin1', i + 2, lenEnd));
  if (!Number.isSafeInteger(len) || len <= 0 || len > 32) return undefined;
  i = lenEnd + 2;
  return resp.toString('latin1', i, i + len).toLowerCase();
}
