import type { CommandSpec } from '../../core/redis/command-table.js';

/*
 * Relative expiries become absolute, as Redis 7.0 rewrites them for its AOF and
 * replicas (t_string.c setGenericCommand/getexCommand, expire.c
 * expireGenericCommand, cluster.c restoreCommand), so a restore applies the
 * expiry the source computed, not one computed at restore time.
 *
 * The clock. Redis adds mstime() read while the command runs; we only have the
 * MONITOR timestamp, gettimeofday() read right after the command ran
 * (replicationFeedMonitors). So floor(tsUs / 1000) is the source's ms or, when
 * the command straddled a millisecond boundary, 1 ms later: an absolute expiry
 * we compute may be 1 ms later than the source's (measured: see the test).
 *
 * A past expiry. At the source an expiry at or before now deletes the key at
 * once (checkAlreadyExpired: EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT, GETEX EXAT/PXAT,
 * RESTORE) or leaves it logically absent (SET … EXAT/PXAT in 7.0, which sets it
 * already expired). While an AOF loads, checkAlreadyExpired is false and nothing
 * expires, so a past PEXPIREAT would keep the key alive for every later command
 * of the replay (APPEND would extend a key the source had deleted). A past expiry
 * is therefore replayed as the deletion the source did: DEL where it was
 * unconditional, an EVAL that applies the command and DELs when it took effect
 * where the outcome depends on state (NX/XX/GT/LT, GET on a wrong type), and
 * nothing where the source could not have changed anything.
 */

/** EVAL body: DEL the key only when it holds a string (GETEX and SET … GET fail with WRONGTYPE otherwise). */
export const DEL_IF_STRING_SCRIPT =
  "if redis.call('TYPE', KEYS[1])['ok'] == 'string' then return redis.call('DEL', KEYS[1]) end return 0";

/** EVAL body: PEXPIREAT with its NX/XX/GT/LT condition; when it applied (a past time), DEL as the source did. */
export const CONDITIONAL_EXPIRE_SCRIPT =
  "if redis.call('PEXPIREAT', KEYS[1], ARGV[1], unpack(ARGV, 2)) == 1 then redis.call('DEL', KEYS[1]) return 1 end return 0";

/**
 * Replay of an expiration: delete the key only if it still carries an expiry that had passed by then. The
 * notification reaches the agent after the MONITOR line of the command that triggered a lazy expiry, so a key
 * re-created by that command (SET, with no or a later expiry) must survive the late deletion.
 */
export const EXPIRED_GUARD_SCRIPT =
  "local e = redis.call('PEXPIRETIME', KEYS[1]) if e >= 0 and e <= tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end return 0";

const B = (s: string) => Buffer.from(s, 'latin1');
const SET = B('SET');
const DEL = B('DEL');
const EVAL = B('EVAL');
const ONE = B('1');
const PXAT = B('PXAT');
const PEXPIREAT = B('PEXPIREAT');
const GETEX = B('GETEX');
const ABSTTL = B('ABSTTL');
const NOTHING: Buffer[] = [];

/** ASCII case-insensitive equality with a lower-case literal, no string allocation. */
function is(b: Buffer, lower: string): boolean {
  if (b.length !== lower.length) return false;
  for (let i = 0; i < b.length; i++) {
    let c = b[i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** A Redis long long as a JS number; undefined when not an integer or beyond 2^53 (left as issued). */
function int(b: Buffer | undefined): number | undefined {
  if (!b || b.length === 0 || b.length > 20) return undefined;
  const s = b.toString('latin1');
  if (!/^-?\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

const ms = (n: number) => B(String(n));

/**
 * The argv to replay for a command: `argv` itself (the same array: the codec
 * stores replay only when it differs) when nothing changes, else a new array.
 * Relative expiries become absolute from the event's own time `tsUs`; past
 * expiries become the deletion the source did (see the file comment).
 * An empty array means the command could not have changed anything.
 */
export function normalizeArgv(argv: Buffer[], tsUs: number, spec: CommandSpec | undefined): Buffer[] {
  if (!spec || !spec.write) return argv;
  const nowMs = Math.floor(tsUs / 1000);
  switch (spec.name) {
    case 'set':
      return normalizeSet(argv, nowMs);
    case 'setex':
    case 'psetex': {
      const n = int(argv[2]);
      // n <= 0 is an error at the source ("invalid expire time"): no effect to reproduce.
      if (argv.length !== 4 || n === undefined) return argv;
      if (n <= 0) return NOTHING;
      return [SET, argv[1]!, argv[3]!, PXAT, ms(nowMs + (spec.name === 'setex' ? n * 1000 : n))];
    }
    case 'getex':
      return normalizeGetex(argv, nowMs);
    case 'expire':
    case 'pexpire':
    case 'expireat':
    case 'pexpireat':
      return normalizeExpire(argv, nowMs, spec.name);
    case 'restore':
    case 'restore-asking':
      return normalizeRestore(argv, nowMs);
    case 'migrate':
      return normalizeMigrate(argv);
    case 'hexpire':
    case 'hpexpire':
    case 'hexpireat':
    case 'hpexpireat':
      return normalizeFieldExpire(argv, nowMs, spec.name);
    case 'hsetex':
      return normalizeHsetex(argv, nowMs);
    case 'hgetex':
      return normalizeHgetex(argv, nowMs);
    default:
      return argv;
  }
}

/*
 * Hash-field TTLs (Redis 7.4+), made absolute as the replication stream carries them (t_hash.c: HPEXPIREAT for
 * HEXPIRE/HPEXPIRE/HEXPIREAT and HGETEX, HSETEX … PXAT; checked on 8.0.2), and a time already past as the HDEL the
 * source propagates for it: while an AOF loads, a past field TTL is set, not applied.
 */

/** EVAL body: HPEXPIREAT with its NX/XX/GT/LT condition (ARGV: when, condition, n, fields); HDEL what it applied to. */
export const CONDITIONAL_FIELD_EXPIRE_SCRIPT =
  "local r = redis.call('HPEXPIREAT', KEYS[1], ARGV[1], ARGV[2], 'FIELDS', ARGV[3], unpack(ARGV, 4)) local d = {} for i, v in ipairs(r) do if v == 1 or v == 2 then d[#d + 1] = ARGV[3 + i] end end if #d > 0 then redis.call('HDEL', KEYS[1], unpack(d)) end return #d";

/** EVAL body: HSETEX with its FNX/FXX condition at a past time (ARGV: condition, when, n, field value …); HDEL if set. */
export const CONDITIONAL_HSETEX_SCRIPT =
  "local n = tonumber(ARGV[3]) if redis.call('HSETEX', KEYS[1], ARGV[1], 'PXAT', ARGV[2], 'FIELDS', n, unpack(ARGV, 4)) == 1 then local d = {} for i = 1, n do d[i] = ARGV[2 + 2 * i] end redis.call('HDEL', KEYS[1], unpack(d)) return 1 end return 0";

/**
 * EVAL body: a `hexpired` notification's replay — HDEL the fields of KEYS[1] whose TTL had passed at ARGV[1] (ms).
 * While a restore loads on the source's clock every field alive after the baseline is visible to HKEYS.
 */
export const FIELD_EXPIRED_SCRIPT = Buffer.from(
  "if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end local names = redis.call('HKEYS', KEYS[1]) local n = 0 for i = 1, #names, 500 do local c = {unpack(names, i, math.min(i + 499, #names))} local t = redis.call('HPEXPIRETIME', KEYS[1], 'FIELDS', #c, unpack(c)) local d = {} for j, e in ipairs(t) do if e >= 0 and e <= tonumber(ARGV[1]) then d[#d + 1] = c[j] end end if #d > 0 then n = n + redis.call('HDEL', KEYS[1], unpack(d)) end end return n",
  'latin1',
);

const HPEXPIREAT = B('HPEXPIREAT');
const HDEL = B('HDEL');
const FIELDS = B('FIELDS');

/** Index of `FIELDS` at or after `from` when `FIELDS n` names exactly the rest of argv (`perField` args each). */
function fieldsAt(argv: Buffer[], from: number, perField: number): number {
  for (let i = from; i < argv.length; i++) {
    if (!is(argv[i]!, 'fields')) continue;
    const n = int(argv[i + 1]);
    return n !== undefined && n > 0 && argv.length === i + 2 + n * perField ? i : -1;
  }
  return -1;
}

function normalizeFieldExpire(argv: Buffer[], nowMs: number, name: string): Buffer[] {
  const n = int(argv[2]);
  if (argv.length < 6 || n === undefined) return argv;
  const at = fieldsAt(argv, 3, 1);
  // A malformed call is refused at the source and replays refused: left as issued.
  if (at < 0 || at > 4) return argv;
  const condition = at === 4 ? argv[3]! : undefined;
  if (condition && !(is(condition, 'nx') || is(condition, 'xx') || is(condition, 'gt') || is(condition, 'lt')))
    return argv;
  const relative = name === 'hexpire' || name === 'hpexpire';
  const unit = name === 'hexpire' || name === 'hexpireat' ? 1000 : 1;
  if (n < 0) return argv; // "invalid expire time": refused
  const when = n * unit + (relative ? nowMs : 0);
  const fields = argv.slice(at + 2);
  if (when <= nowMs) {
    if (!condition) return [HDEL, argv[1]!, ...fields];
    return [EVAL, B(CONDITIONAL_FIELD_EXPIRE_SCRIPT), ONE, argv[1]!, ms(when), condition, argv[at + 1]!, ...fields];
  }
  if (name === 'hpexpireat') return argv;
  return [HPEXPIREAT, argv[1]!, ms(when), ...(condition ? [condition] : []), FIELDS, argv[at + 1]!, ...fields];
}

function normalizeHsetex(argv: Buffer[], nowMs: number): Buffer[] {
  const at = fieldsAt(argv, 2, 2);
  if (at < 0) return argv;
  let condition: Buffer | undefined;
  let when: number | undefined;
  let relative = false;
  for (let i = 2; i < at; i++) {
    const a = argv[i]!;
    if (is(a, 'fnx') || is(a, 'fxx')) condition = a;
    else if (is(a, 'keepttl')) continue;
    else if (is(a, 'ex') || is(a, 'px') || is(a, 'exat') || is(a, 'pxat')) {
      const v = int(argv[i + 1]);
      if (v === undefined || when !== undefined) return argv;
      if (v <= 0) return NOTHING; // "invalid expire time": refused
      relative = is(a, 'ex') || is(a, 'px');
      when = v * (is(a, 'ex') || is(a, 'exat') ? 1000 : 1) + (relative ? nowMs : 0);
      i++;
    } else return argv;
  }
  if (when === undefined) return argv;
  const pairs = argv.slice(at + 2);
  if (when <= nowMs) {
    const fields = pairs.filter((_, i) => i % 2 === 0);
    if (!condition) return [HDEL, argv[1]!, ...fields];
    return [EVAL, B(CONDITIONAL_HSETEX_SCRIPT), ONE, argv[1]!, condition, ms(when), argv[at + 1]!, ...pairs];
  }
  return [B('HSETEX'), argv[1]!, ...(condition ? [condition] : []), PXAT, ms(when), FIELDS, argv[at + 1]!, ...pairs];
}

function normalizeHgetex(argv: Buffer[], nowMs: number): Buffer[] {
  const at = fieldsAt(argv, 2, 1);
  if (at !== 4) return argv; // no expiry option (or PERSIST), or malformed
  const a = argv[2]!;
  const v = int(argv[3]);
  if (v === undefined || !(is(a, 'ex') || is(a, 'px') || is(a, 'exat') || is(a, 'pxat'))) return argv;
  if (v <= 0) return NOTHING;
  const when = v * (is(a, 'ex') || is(a, 'exat') ? 1000 : 1) + (is(a, 'ex') || is(a, 'px') ? nowMs : 0);
  const fields = argv.slice(at + 2);
  if (when <= nowMs) return [HDEL, argv[1]!, ...fields];
  if (is(a, 'pxat')) return argv;
  return [HPEXPIREAT, argv[1]!, ms(when), FIELDS, argv[at + 1]!, ...fields];
}

/**
 * MIGRATE is never replayed: a loading server would really connect to the
 * host in the argv and write old data into it. Its local effect is what
 * Redis propagates for it: DEL of the moved keys, nothing with COPY. MONITOR
 * cannot show whether the transfer succeeded; a failed MIGRATE (IOERR) left
 * the keys in place, which this replay does not reproduce.
 */
function normalizeMigrate(argv: Buffer[]): Buffer[] {
  let copy = false;
  let keys: Buffer[] = argv[3] && argv[3].length > 0 ? [argv[3]] : [];
  for (let i = 6; i < argv.length; i++) {
    const a = argv[i]!;
    if (is(a, 'copy')) copy = true;
    else if (is(a, 'auth')) i++;
    else if (is(a, 'auth2')) i += 2;
    else if (is(a, 'keys')) {
      keys = argv.slice(i + 1);
      break;
    }
  }
  if (copy || keys.length === 0) return NOTHING;
  return [DEL, ...keys];
}

function normalizeSet(argv: Buffer[], nowMs: number): Buffer[] {
  let nx = false;
  let xx = false;
  let get = false;
  let at = -1;
  let when = 0;
  let absoluteMs = false;
  for (let i = 3; i < argv.length; i++) {
    const a = argv[i]!;
    if (is(a, 'nx')) nx = true;
    else if (is(a, 'xx')) xx = true;
    else if (is(a, 'get')) get = true;
    else if (is(a, 'keepttl')) continue;
    else if (is(a, 'ex') || is(a, 'px') || is(a, 'exat') || is(a, 'pxat')) {
      const n = int(argv[i + 1]);
      if (n === undefined || at >= 0) return argv;
      if (n <= 0) return NOTHING; // "invalid expire time": the SET failed
      at = i;
      const unit = is(a, 'ex') || is(a, 'exat') ? 1000 : 1;
      const relative = is(a, 'ex') || is(a, 'px');
      absoluteMs = is(a, 'pxat');
      when = n * unit + (relative ? nowMs : 0);
      i++;
    } else return argv; // a syntax error at the source; replay fails the same way
  }
  if (at < 0 || (nx && xx)) return argv;
  if (when <= nowMs) {
    // Set already expired = absent at the source. NX either lost or created a key that is gone: no change.
    if (nx) return NOTHING;
    if (get) return [EVAL, B(DEL_IF_STRING_SCRIPT), ONE, argv[1]!];
    return [DEL, argv[1]!];
  }
  if (absoluteMs) return argv;
  const out = argv.slice();
  out[at] = PXAT;
  out[at + 1] = ms(when);
  return out;
}

function normalizeGetex(argv: Buffer[], nowMs: number): Buffer[] {
  if (argv.length !== 4) return argv;
  const a = argv[2]!;
  const n = int(argv[3]);
  if (n === undefined) return argv;
  if (n <= 0) return NOTHING;
  if (is(a, 'ex') || is(a, 'px')) return [GETEX, argv[1]!, PXAT, ms(nowMs + (is(a, 'ex') ? n * 1000 : n))];
  if (is(a, 'exat') || is(a, 'pxat')) {
    const when = is(a, 'exat') ? n * 1000 : n;
    if (when <= nowMs) return [EVAL, B(DEL_IF_STRING_SCRIPT), ONE, argv[1]!];
    return argv;
  }
  return argv;
}

function normalizeExpire(argv: Buffer[], nowMs: number, name: string): Buffer[] {
  if (argv.length < 3) return argv;
  const n = int(argv[2]);
  if (n === undefined) return argv;
  const relative = name === 'expire' || name === 'pexpire';
  const unit = name === 'expire' || name === 'expireat' ? 1000 : 1;
  const when = n * unit + (relative ? nowMs : 0);
  const conditions = argv.slice(3);
  for (const c of conditions) if (!(is(c, 'nx') || is(c, 'xx') || is(c, 'gt') || is(c, 'lt'))) return argv;
  if (when <= nowMs) {
    if (conditions.length === 0) return [DEL, argv[1]!];
    return [EVAL, B(CONDITIONAL_EXPIRE_SCRIPT), ONE, argv[1]!, ms(when), ...conditions];
  }
  if (name === 'pexpireat') return argv;
  return [PEXPIREAT, argv[1]!, ms(when), ...conditions];
}

function normalizeRestore(argv: Buffer[], nowMs: number): Buffer[] {
  if (argv.length < 4) return argv;
  const ttl = int(argv[2]);
  if (ttl === undefined || ttl < 0) return argv;
  if (ttl === 0) return argv;
  let replace = false;
  let absttl = false;
  for (let i = 4; i < argv.length; i++) {
    const a = argv[i]!;
    if (is(a, 'replace')) replace = true;
    else if (is(a, 'absttl')) absttl = true;
    else if (is(a, 'idletime') || is(a, 'freq')) i++;
  }
  const when = absttl ? ttl : nowMs + ttl;
  if (when <= nowMs) {
    // Without REPLACE the source either refused (BUSYKEY) or created nothing.
    return replace ? [DEL, argv[1]!] : NOTHING;
  }
  if (absttl) return argv;
  const out = argv.slice();
  out[2] = ms(when);
  out.push(ABSTTL);
  return out;
}

/**
 * Where `replay` holds an absolute expiry that normalizeArgv computed from a
 * relative one (SET EX/PX, SETEX, PSETEX, GETEX EX/PX, EXPIRE, PEXPIRE,
 * RESTORE ttl), or -1. The agent corrects that value when the MONITOR time
 * leaves the source's millisecond uncertain (agent/monitor/expiry-corrector.ts).
 */
export function relativeExpiryIndex(spec: CommandSpec | undefined, argv: Buffer[], replay: Buffer[]): number {
  if (!spec || replay === argv || replay.length === 0) return -1;
  switch (spec.name) {
    case 'set': {
      if (!is(replay[0]!, 'set')) return -1;
      const relative = argv.some((a, i) => i >= 3 && (is(a, 'ex') || is(a, 'px')));
      if (!relative) return -1;
      const at = replay.findIndex((a, i) => i >= 3 && is(a, 'pxat'));
      return at >= 0 ? at + 1 : -1;
    }
    case 'setex':
    case 'psetex':
      return is(replay[0]!, 'set') ? 4 : -1;
    case 'getex':
      return is(replay[0]!, 'getex') && (is(argv[2]!, 'ex') || is(argv[2]!, 'px')) ? 3 : -1;
    case 'expire':
    case 'pexpire':
      return is(replay[0]!, 'pexpireat') ? 2 : -1;
    case 'restore':
    case 'restore-asking':
      return is(replay[0]!, spec.name) && replay.length === argv.length + 1 ? 2 : -1;
    default:
      return -1;
  }
}
