import { ProtocolError } from '../errors.js';
import type { RawRedis } from './raw-redis.js';
import { RespError, type RespValue } from './resp.js';

/** Where a key spec starts looking for keys (`begin_search` of COMMAND INFO). */
export type BeginSearch =
  | { type: 'index'; index: number }
  /**
   * Search for `keyword` (case-insensitive) from `startFrom`; a negative `startFrom` counts from the end and searches
   * backwards.
   */
  | { type: 'keyword'; keyword: Buffer; startFrom: number }
  | { type: 'unknown' };

/** How a key spec finds its keys once it has a start (`find_keys` of COMMAND INFO). */
export type FindKeys =
  /** `lastKey` relative to the start (negative: from the end of argv); `limit` > 0 divides the remaining args. */
  | { type: 'range'; lastKey: number; keyStep: number; limit: number }
  /** The number of keys is at start + `keyNumIndex`; keys begin at start + `firstKey`. */
  | { type: 'keynum'; keyNumIndex: number; firstKey: number; keyStep: number }
  | { type: 'unknown' };

/** One key spec of a command, as the server describes it (Redis 7 key specs). */
export interface KeySpec {
  /** `RW`, `RO`, `OW`, `RM`, `access`, `update`, `insert`, `delete`, `incomplete` … */
  flags: ReadonlySet<string>;
  beginSearch: BeginSearch;
  findKeys: FindKeys;
}

/** What the connected server says about one command or subcommand. */
export interface CommandSpec {
  /** Lower-case name; subcommands as `xgroup|create`. */
  name: string;
  /** Redis arity: positive = exact argc, negative = at least -arity. */
  arity: number;
  flags: ReadonlySet<string>;
  /** Command tips (`nondeterministic_output`, `request_policy:all_shards` …); empty before Redis 7. */
  tips: ReadonlySet<string>;
  /** Changes data (`write` flag). */
  write: boolean;
  /** May block the client (`blocking` flag). */
  blocking: boolean;
  /** Its output is not determined by its input (tip `nondeterministic_output`, or the pre-7 `random` flag). */
  nondeterministic: boolean;
  /** Redis 7 key specs; empty for commands without keys (and before Redis 7, see `legacyKeys`). */
  keySpecs: readonly KeySpec[];
  /** first/last/step of the pre-7 key positions, used when the server gives no key specs. */
  legacyKeys: { first: number; last: number; step: number };
  /** Subcommands by name, for container commands (XGROUP, FUNCTION, CONFIG, OBJECT …). */
  subcommands?: ReadonlyMap<string, CommandSpec>;
}

/** FNV-1a over the ASCII-lower-cased bytes: lookup needs no string per MONITOR line. */
function hashLower(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    let c = b[i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h >>> 0;
}

/** `lower` must already be lower-case. */
function equalsLower(b: Buffer, lower: Buffer): boolean {
  if (b.length !== lower.length) return false;
  for (let i = 0; i < b.length; i++) {
    let c = b[i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower[i]) return false;
  }
  return true;
}

/** A case-insensitive map from byte names to values, O(1) per lookup and allocation-free. */
class ByteNameMap<V> {
  private readonly buckets = new Map<number, { name: Buffer; value: V }[]>();

  set(name: string, value: V): void {
    const lower = Buffer.from(name.toLowerCase(), 'latin1');
    const h = hashLower(lower);
    const bucket = this.buckets.get(h);
    if (bucket) bucket.push({ name: lower, value });
    else this.buckets.set(h, [{ name: lower, value }]);
  }

  get(name: Buffer): V | undefined {
    const bucket = this.buckets.get(hashLower(name));
    if (!bucket) return undefined;
    for (const e of bucket) if (equalsLower(name, e.name)) return e.value;
    return undefined;
  }
}

const text = (v: RespValue | undefined): string =>
  Buffer.isBuffer(v) ? v.toString('latin1') : typeof v === 'string' ? v : String(v ?? '');
const num = (v: RespValue | undefined): number => (typeof v === 'number' ? v : Number(text(v)));
const list = (v: RespValue | undefined): RespValue[] => (Array.isArray(v) ? v : []);

/** A RESP2 flat map `[k1, v1, k2, v2 …]` as a Map keyed by text. */
function flatMap(v: RespValue | undefined): Map<string, RespValue> {
  const out = new Map<string, RespValue>();
  const a = list(v);
  for (let i = 0; i + 1 < a.length; i += 2) out.set(text(a[i]), a[i + 1]!);
  return out;
}

function parseKeySpec(v: RespValue): KeySpec {
  const m = flatMap(v);
  const flags = new Set(list(m.get('flags')).map(text));
  const bs = flatMap(m.get('begin_search'));
  const bsSpec = flatMap(bs.get('spec'));
  let beginSearch: BeginSearch;
  switch (text(bs.get('type'))) {
    case 'index':
      beginSearch = { type: 'index', index: num(bsSpec.get('index')) };
      break;
    case 'keyword':
      beginSearch = {
        type: 'keyword',
        keyword: Buffer.from(text(bsSpec.get('keyword')).toLowerCase(), 'latin1'),
        startFrom: num(bsSpec.get('startfrom')),
      };
      break;
    default:
      beginSearch = { type: 'unknown' };
  }
  const fk = flatMap(m.get('find_keys'));
  const fkSpec = flatMap(fk.get('spec'));
  let findKeys: FindKeys;
  switch (text(fk.get('type'))) {
    case 'range':
      findKeys = {
        type: 'range',
        lastKey: num(fkSpec.get('lastkey')),
        keyStep: num(fkSpec.get('keystep')),
        limit: num(fkSpec.get('limit')),
      };
      break;
    case 'keynum':
      findKeys = {
        type: 'keynum',
        keyNumIndex: num(fkSpec.get('keynumidx')),
        firstKey: num(fkSpec.get('firstkey')),
        keyStep: num(fkSpec.get('keystep')),
      };
      break;
    default:
      findKeys = { type: 'unknown' };
  }
  return { flags, beginSearch, findKeys };
}

/**
 * One entry of a COMMAND / COMMAND INFO reply: [name, arity, flags, first, last, step, acl, tips, key specs,
 * subcommands].
 */
function parseCommand(v: RespValue): CommandSpec | undefined {
  if (!Array.isArray(v) || v.length < 6) return undefined;
  const name = text(v[0]).toLowerCase();
  const flags = new Set(list(v[2]).map((f) => text(f).toLowerCase()));
  const tips = new Set(list(v[7]).map((t) => text(t).toLowerCase()));
  const spec: CommandSpec = {
    name,
    arity: num(v[1]),
    flags,
    tips,
    // PFCOUNT is flagged read-only but rewrites the HLL's cached cardinality (Redis propagates it): a write for us.
    write: flags.has('write') || name === 'pfcount',
    blocking: flags.has('blocking'),
    nondeterministic: tips.has('nondeterministic_output') || flags.has('random'),
    keySpecs: list(v[8]).map(parseKeySpec),
    legacyKeys: { first: num(v[3]), last: num(v[4]), step: num(v[5]) },
  };
  const subs = list(v[9]);
  if (subs.length > 0) {
    const map = new Map<string, CommandSpec>();
    for (const s of subs) {
      const sub = parseCommand(s);
      if (sub) map.set(sub.name.slice(sub.name.indexOf('|') + 1), sub);
    }
    spec.subcommands = map;
  }
  return spec;
}

/**
 * The command table of the connected server (`COMMAND`), never a hand-written
 * list: flags, tips and key specs decide what is a write and which keys an
 * argv touches, so module and newer-version commands are covered as the
 * server describes them.
 */
const NAMES = new WeakMap<CommandSpec, string>();

/** The command's name as events show it (`XGROUP` for `xgroup|create`), made once per command, not per line. */
export function commandName(spec: CommandSpec): string {
  let n = NAMES.get(spec);
  if (n === undefined) {
    n = spec.name.split('|')[0]!.toUpperCase();
    NAMES.set(spec, n);
  }
  return n;
}

export class CommandTable {
  private readonly byName = new ByteNameMap<CommandSpec>();
  private readonly subByName = new Map<CommandSpec, ByteNameMap<CommandSpec>>();
  /** Every top-level command, by lower-case name. */
  readonly commands: ReadonlyMap<string, CommandSpec>;

  private constructor(commands: Map<string, CommandSpec>) {
    this.commands = commands;
    for (const spec of commands.values()) {
      this.byName.set(spec.name, spec);
      if (spec.subcommands) {
        const subs = new ByteNameMap<CommandSpec>();
        for (const [sub, s] of spec.subcommands) subs.set(sub, s);
        this.subByName.set(spec, subs);
      }
    }
  }

  /** Reads the table from the server with `COMMAND` (Redis 7 includes subcommands and key specs). */
  static async load(conn: RawRedis): Promise<CommandTable> {
    const reply = await conn.call(['COMMAND']);
    if (reply instanceof RespError) {
      throw new ProtocolError(
        `Redis refused COMMAND (${reply.message}); the agent needs it to tell writes from reads: allow it for the agent's user (ACL +command)`,
      );
    }
    return CommandTable.fromReply(reply);
  }

  /** Builds a table from a saved `COMMAND` (or `COMMAND INFO …`) reply. */
  static fromReply(reply: RespValue): CommandTable {
    if (!Array.isArray(reply)) throw new ProtocolError('COMMAND reply is not an array; is this a Redis server?');
    const commands = new Map<string, CommandSpec>();
    for (const entry of reply) {
      const spec = parseCommand(entry);
      if (spec) commands.set(spec.name, spec);
    }
    return new CommandTable(commands);
  }

  /** The spec for argv (container commands resolve their subcommand: XGROUP CREATE, FUNCTION LOAD, CONFIG SET …). */
  lookup(argv: readonly Buffer[]): CommandSpec | undefined {
    const name = argv[0];
    if (name === undefined) return undefined;
    const spec = this.byName.get(name);
    if (!spec?.subcommands || argv.length < 2) return spec;
    return this.subByName.get(spec)!.get(argv[1]!) ?? spec;
  }

  /**
   * Keys argv touches, from the key specs (begin_search index/keyword, find_keys range/keynum); exact Buffers, each
   * once.
   */
  keys(argv: readonly Buffer[], spec: CommandSpec | undefined = this.lookup(argv)): Buffer[] {
    if (!spec) return [];
    const out: Buffer[] = [];
    if (spec.keySpecs.length === 0) {
      const { first, last, step } = spec.legacyKeys;
      if (first > 0) {
        const end = last < 0 ? argv.length + last : last;
        for (let i = first; i <= end && i < argv.length; i += Math.max(1, step)) addKey(out, argv[i]!);
      }
      return out;
    }
    let keywordMatched = false;
    for (const ks of spec.keySpecs) {
      const found = keysOfSpec(argv, ks);
      if (found === undefined) {
        // SORT's STORE (and BY/GET patterns) are 'unknown' specs: Redis finds them with sortGetKeys, which COMMAND does
        // not expose.
        if (spec.name === 'sort') addSortStoreKey(out, argv);
        continue;
      }
      if (ks.beginSearch.type === 'keyword' && found.length > 0) keywordMatched = true;
      for (const k of found) addKey(out, k);
    }
    // MIGRATE … "" … KEYS k1 k2: the single-key slot is empty then (Redis's migrateGetKeys drops it).
    if (spec.name === 'migrate' && keywordMatched && argv[3]?.length === 0) {
      const i = out.findIndex((k) => k.length === 0);
      if (i >= 0) out.splice(i, 1);
    }
    return out;
  }
}

function addKey(out: Buffer[], k: Buffer): void {
  for (const o of out) if (o.equals(k)) return;
  out.push(k);
}

/** Mirrors Redis's getKeysUsingKeySpecs (db.c) for one spec; undefined for an 'unknown' spec. */
function keysOfSpec(argv: readonly Buffer[], ks: KeySpec): Buffer[] | undefined {
  const argc = argv.length;
  let first = 0;
  const bs = ks.beginSearch;
  if (bs.type === 'index') {
    first = bs.index;
  } else if (bs.type === 'keyword') {
    const start = bs.startFrom > 0 ? bs.startFrom : argc + bs.startFrom;
    const end = bs.startFrom > 0 ? argc - 1 : 0;
    for (let i = start; i !== end; i = start <= end ? i + 1 : i - 1) {
      if (i >= argc || i < 1) break;
      if (equalsLower(argv[i]!, bs.keyword)) {
        first = i + 1;
        break;
      }
    }
    if (first === 0) return [];
  } else {
    return undefined;
  }
  const fk = ks.findKeys;
  let last: number;
  let step: number;
  if (fk.type === 'range') {
    step = fk.keyStep;
    if (fk.lastKey >= 0) last = first + fk.lastKey;
    else if (!fk.limit) last = argc + fk.lastKey;
    else last = first + (Math.floor((argc - first) / fk.limit) + fk.lastKey);
  } else if (fk.type === 'keynum') {
    step = fk.keyStep;
    const at = first + fk.keyNumIndex;
    if (at >= argc) return [];
    const n = Number(argv[at]!.toString('latin1'));
    if (!Number.isInteger(n) || n < 0) return [];
    first += fk.firstKey;
    last = first + n - 1;
  } else {
    return undefined;
  }
  if (last >= argc || last < first || first >= argc) return [];
  const keys: Buffer[] = [];
  for (let i = first; i <= last; i += Math.max(1, step)) keys.push(argv[i]!);
  return keys;
}

const LIMIT = Buffer.from('limit');
const GET = Buffer.from('get');
const BY = Buffer.from('by');
const STORE = Buffer.from('store');

/**
 * SORT key [BY p] [LIMIT o c] [GET p …] [ASC|DESC] [ALPHA] [STORE dst]: the last STORE wins, as in Redis's sortGetKeys.
 */
function addSortStoreKey(out: Buffer[], argv: readonly Buffer[]): void {
  let store: Buffer | undefined;
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (equalsLower(a, LIMIT)) i += 2;
    else if (equalsLower(a, GET) || equalsLower(a, BY)) i += 1;
    else if (equalsLower(a, STORE) && i + 1 < argv.length) store = argv[++i];
  }
  if (store) addKey(out, store);
}
