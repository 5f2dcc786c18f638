import {
  ClickHouseError,
  ClickHouseLogLevel,
  createClient,
  type ClickHouseClient,
  type ClickHouseSettings,
} from '@clickhouse/client';
import { ConfigError, ConnectionError, ErrorCode, FlashbackError, InputError } from '../errors.js';
import {
  ADDED_COLUMNS,
  addedColumnSql,
  BASELINES_TABLE,
  BROKEN_EVENTS_TABLE,
  columnsSql,
  DATABASE,
  distributedTablesSql,
  EPOCHS_TABLE,
  EVENTS_TABLE,
  schemaFeatures,
  schemaStatements,
  versionSql,
  type BaselineRow,
  type BrokenEventRow,
  type EpochRow,
  type EventRow,
  type SchemaFeatures,
} from './schema.js';

/** Options of {@link openClickHouse}. */
export interface ClickHouseOptions {
  /** Time one HTTP request (query or insert) may take, ms. @default 120_000 */
  requestTimeoutMs?: number;
  /** Parallel HTTP connections to the server. @default 10 */
  maxOpenConnections?: number;
  /** User name; overrides one in the URL. @default the URL's, else `default` */
  user?: string;
  /** Password of `user`; overrides one in the URL. @default the URL's, else none */
  password?: string;
  /**
   * The user's own profile sets readonly=1 and the limits of user SQL (core/servers/clickhouse-server.ts,
   * CLICKHOUSE_SQL_USER): {@link Store.readOnlySql} then sends no settings, since readonly=1 refuses any. @default false
   */
  serverLimits?: boolean;
}

/** ClickHouse credentials a service takes besides the URL (`--clickhouse-user`, FLASHBACK_CLICKHOUSE_PASSWORD(_FILE)). */
export interface ClickHouseAuth {
  user?: string;
  password?: string;
}

/** Options of {@link Store.readOnlySql}. */
export interface ReadOnlySqlOptions {
  /** Refuse results with more rows than this (the server stops and errors). @default 10_000 */
  maxRows?: number;
  /** Stop the query after this many seconds. @default 30 */
  maxSeconds?: number;
}

/** Result of a user SQL query: columns with ClickHouse types, rows as arrays (UInt64/Int64 as strings, exact). */
export interface SqlResult {
  columns: { name: string; type: string }[];
  rows: unknown[][];
}

/** The flashback store in ClickHouse. */
export interface Store {
  /** Server URL, password hidden. */
  readonly url: string;
  /** `SELECT version()` of the server (`18.16.1`). */
  readonly version: string;
  /** What the server's DDL may use (LowCardinality, CODEC). */
  readonly features: SchemaFeatures;
  /**
   * The underlying client, for streaming large results (the restore's replay); pass its errors through {@link
   * translateClickHouseError}.
   */
  readonly client: ClickHouseClient;
  /** Creates the database and tables if missing (idempotent). */
  ensureSchema(): Promise<void>;
  /** Inserts rows into flashback.events (one HTTP request; JSONEachRow). */
  insertEvents(rows: readonly EventRow[]): Promise<void>;
  /** Inserts rows into flashback.baselines. */
  insertBaselines(rows: readonly BaselineRow[]): Promise<void>;
  /** Inserts rows into flashback.epochs. */
  insertEpochs(rows: readonly EpochRow[]): Promise<void>;
  /** Events a restore server could not load (restorer/broken-events.ts). */
  insertBrokenEvents(rows: readonly BrokenEventRow[]): Promise<void>;
  /**
   * Runs one of our own SELECTs (built with core/sql-literal.ts) and returns
   * its rows (JSONEachRow). 64-bit integers come back as numbers: exact below
   * 2^53, which holds for every seq, epoch and µs timestamp we store.
   */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** Runs one of our own statements that returns no rows (DDL, ALTER … DROP PARTITION). */
  command(sql: string): Promise<void>;
  /**
   * Runs a user's SQL with readonly=1 and result/time limits. Anything but
   * one SELECT/WITH/SHOW/DESCRIBE/EXPLAIN/EXISTS statement is refused with
   * InputError(ReadOnlySql) before it reaches the server; readonly=1 is the
   * guard that holds when that check is fooled.
   */
  readOnlySql(sql: string, o?: ReadOnlySqlOptions): Promise<SqlResult>;
  /** True when the server answers. */
  ping(): Promise<boolean>;
  /** Closes the HTTP connections (idempotent). */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Validated connection settings from a ClickHouse URL: `http(s)://[user[:password]@]host:port`. */
export interface ClickHouseUrl {
  /** Origin without credentials. */
  origin: string;
  username?: string;
  password?: string;
  /** URL for messages: the password replaced by `***`. */
  display: string;
}

/** Parses and validates a ClickHouse HTTP URL; ConfigError names the URL and the accepted form. */
export function parseClickHouseUrl(url: string): ClickHouseUrl {
  const form = 'use http://[user:password@]host:port, e.g. http://127.0.0.1:8123';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // The parser's own error repeats the input, password included: it is not kept as the cause.
    throw new ConfigError(`ClickHouse URL "${url.replace(/\/\/[^/@]*@/, '//***@')}" is malformed; ${form}`);
  }
  const display = u.password ? url.replace(`:${u.password}@`, ':***@') : url;
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ConfigError(`ClickHouse URL "${display}" is not HTTP (ClickHouse's HTTP port, 8123 by default); ${form}`);
  if (u.hostname === '') throw new ConfigError(`ClickHouse URL "${display}" has no host; ${form}`);
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '')
    throw new ConfigError(`ClickHouse URL "${display}" has a path or query; ${form}`);
  return {
    origin: u.origin,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    display,
  };
}

/** Settings user SQL runs with: readonly, bounded result, bounded time. */
export function readOnlySettings(maxRows: number, maxSeconds: number): ClickHouseSettings {
  return {
    readonly: '1',
    max_result_rows: String(maxRows),
    result_overflow_mode: 'throw',
    max_execution_time: maxSeconds,
    // Exact 64-bit integers for people's queries (cityHash64 and such exceed 2^53).
    output_format_json_quote_64bit_integers: 1,
  };
}

const READ_ONLY_STATEMENT = /^(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b/i;

/**
 * The statement to send for a user query, or InputError(ReadOnlySql): one
 * statement (a trailing `;` is dropped), starting with a read-only keyword.
 * Comments, string literals and quoted identifiers are skipped when looking
 * for `;`, so `SELECT ';'` is one statement.
 */
export function checkReadOnlySql(sql: string): string {
  const refuse = (why: string) =>
    new InputError(
      ErrorCode.ReadOnlySql,
      `only read-only queries may run here (one SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS statement): ${why}`,
    );
  let i = 0;
  let firstCode = -1;
  let end = -1;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const close = sql.indexOf('*/', i + 2);
      if (close < 0) throw refuse('the query has an unterminated /* comment');
      i = close + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      if (firstCode < 0) firstCode = i;
      let j = i + 1;
      while (j < n && sql[j] !== c) j += sql[j] === '\\' ? 2 : 1;
      if (j >= n) throw refuse(`the query has an unterminated ${c} quote`);
      i = j + 1;
    } else if (c === ';') {
      if (end < 0) end = i;
      i++;
    } else if (/\s/.test(c)) {
      i++;
    } else {
      if (end >= 0) throw refuse('it holds more than one statement');
      if (firstCode < 0) firstCode = i;
      i++;
    }
  }
  if (firstCode < 0) throw refuse('the query is empty');
  const statement = sql.slice(0, end < 0 ? n : end);
  if (/\bFORMAT\s+\w+\s*$/i.test(statement)) {
    throw new InputError(
      ErrorCode.BadInput,
      'leave out the FORMAT clause: results come back as columns and rows (use --format json for JSON)',
    );
  }
  const head = statement.slice(firstCode).replace(/^\(+\s*/, '');
  if (!READ_ONLY_STATEMENT.test(head)) {
    const word = /^[A-Za-z_]+/.exec(head)?.[0] ?? head.slice(0, 20);
    throw refuse(`"${word}" statements are not allowed`);
  }
  return statement;
}

/** ClickHouse error codes caused by the query itself (the user can fix them). */
const USER_ERROR_CODES = new Set([
  6, 27, 36, 38, 41, 42, 43, 44, 46, 47, 48, 49, 53, 60, 62, 69, 70, 73, 81, 107, 115, 179, 184, 190, 215, 352, 386,
  394,
]);
/** Server-side conditions that pass (load, merges, memory, network). */
const RETRYABLE_CODES = new Set([159, 202, 209, 210, 241, 242, 252, 279, 425]);

/** A ClickHouse error code and message from any server version (18.16 puts them in the message text). */
export function clickHouseCode(err: unknown): { code: number; message: string } | undefined {
  if (!(err instanceof Error)) return undefined;
  const old = /^Code: (\d+), e\.displayText\(\) = (?:DB::Exception: )?([\s\S]*?)(?:, e\.what\(\) = [\w:]+)?\s*$/.exec(
    err.message,
  );
  if (old) return { code: Number(old[1]), message: old[2]!.trim() };
  if (err instanceof ClickHouseError && /^\d+$/.test(err.code))
    return { code: Number(err.code), message: err.message.trim() };
  return undefined;
}

/**
 * Maps an error from @clickhouse/client to ours, once, keeping the original
 * as `cause`: mistakes in the query → InputError (BadInput, or ReadOnlySql for
 * writes under readonly=1); network failures and server overload →
 * retryable errors; anything else → a Storage error with the server's words.
 * @param where names the server in messages (`ClickHouse at http://…`).
 */
/** The ClickHouse code behind an error, translated (its cause) or not. */
export function clickHouseCodeOf(err: unknown): number | undefined {
  return clickHouseCode(err)?.code ?? clickHouseCode((err as { cause?: unknown } | null)?.cause)?.code;
}

export function translateClickHouseError(err: unknown, where = 'ClickHouse'): FlashbackError {
  if (err instanceof FlashbackError) return err;
  const ch = clickHouseCode(err);
  if (ch) {
    const { code, message } = ch;
    if ((code === 81 || code === 60) && /flashback/.test(message)) {
      return new FlashbackError(
        ErrorCode.NotFound,
        `${where} holds no flashback history yet (${message.split('\n')[0]}); start the sink (flashback sink or flashback up), which creates the tables`,
        { cause: err },
      );
    }
    if (code === 164)
      return new InputError(
        ErrorCode.ReadOnlySql,
        `only read-only queries may run here; ${where} refused: ${message}`,
        { cause: err },
      );
    if (code === 158 || code === 396)
      return new InputError(
        ErrorCode.BadInput,
        `the result is too large (${message}); add a LIMIT, aggregate, or raise the row limit`,
        { cause: err },
      );
    if (code === 159)
      return new InputError(
        ErrorCode.BadInput,
        `the query ran too long (${message}); narrow it (WHERE node = … AND time > …) or raise the time limit`,
        { cause: err },
      );
    if (code === 192 || code === 193 || code === 194 || code === 516)
      return new ConfigError(
        `${where} refused the login (${message}); check --clickhouse-user and FLASHBACK_CLICKHOUSE_PASSWORD(_FILE)`,
        {
          cause: err,
        },
      );
    if (USER_ERROR_CODES.has(code))
      return new InputError(ErrorCode.BadInput, `${where} rejected the query: ${message}`, { cause: err });
    return new FlashbackError(ErrorCode.Storage, `${where} failed (code ${code}): ${message}`, {
      cause: err,
      retryable: RETRYABLE_CODES.has(code),
    });
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new ConnectionError(`cannot reach ${where}: ${msg}; is clickhouse-server running?`, { cause: err });
}

/**
 * Connects to ClickHouse over HTTP: validates the URL (ConfigError), asks the
 * server's version (ConnectionError when it does not answer) and picks the
 * schema variant for it.
 */
export async function openClickHouse(url: string, o: ClickHouseOptions = {}): Promise<Store> {
  const { requestTimeoutMs = 120_000, maxOpenConnections = 10, serverLimits = false } = o;
  const target = parseClickHouseUrl(url);
  const username = o.user ?? target.username;
  const where = `ClickHouse at ${target.display}${username ? ` as ${username}` : ''}`;
  const client = createClient({
    url: target.origin,
    username,
    password: o.password ?? target.password,
    request_timeout: requestTimeoutMs,
    max_open_connections: maxOpenConnections,
    // Errors reach callers translated; the client's own logging would print each one twice.
    log: { level: ClickHouseLogLevel.OFF },
  });
  let version: string;
  try {
    const rows = await (await client.query({ query: versionSql(), format: 'JSONEachRow' })).json<{ version: string }>();
    version = rows[0]!.version;
  } catch (err) {
    await client.close();
    const e = translateClickHouseError(err, where);
    if (e instanceof ConnectionError)
      throw new ConnectionError(
        `cannot connect to ${where}; is clickhouse-server running? (${(err as Error).message})`,
        { cause: err },
      );
    throw e;
  }
  return createStore(client, `${target.display}${username ? ` as ${username}` : ''}`, version, serverLimits);
}

/**
 * The sharded layout lacks columns this version writes: the sink cannot add them (it reaches one server, and each
 * shard's `<table>_local` needs them too), so it names the statements and stops before inserting rows the shards
 * would refuse.
 */
function shardedColumnsMissing(where: string, missing: readonly (typeof ADDED_COLUMNS)[number][]): ConfigError {
  const names = missing.map((c) => `${DATABASE}.${c.table}.${c.column}`).join(', ');
  const local = missing.map((c) => addedColumnSql(`${c.table}_local`, c));
  const dist = missing.map((c) => addedColumnSql(c.table, c));
  return new ConfigError(
    `${where} has the sharded layout (Distributed tables) without ${names}, which this version stores; the sink adds ` +
      `columns on one server only, so add them yourself, then start the sink again: on every shard server (one ` +
      `replica of each shard for Replicated local tables) ${local.join('; ')}; then on every server ${dist.join('; ')}`,
  );
}

function createStore(client: ClickHouseClient, display: string, version: string, serverLimits: boolean): Store {
  const where = `ClickHouse at ${display}`;
  let closed: Promise<void> | undefined;
  const run = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      throw translateClickHouseError(err, where);
    }
  };
  const insert = async (table: string, rows: readonly object[]) => {
    if (rows.length === 0) return;
    await run(() =>
      client.insert({
        table,
        values: rows as object[],
        format: 'JSONEachRow',
        // Sharded layout (core/store/sharded-schema.ts): the insert returns once the rows are on their shard, so the
        // sink acknowledges only what a query can see; a table that is not Distributed ignores it.
        clickhouse_settings: { insert_distributed_sync: 1 },
      }),
    );
  };
  const close = () => (closed ??= client.close());
  return {
    url: display,
    version,
    features: schemaFeatures(version),
    client,
    async ensureSchema() {
      for (const statement of schemaStatements(version)) await run(() => client.command({ query: statement }));
      const rs = await run(async () =>
        (await client.query({ query: columnsSql(), format: 'JSONEachRow' })).json<{ table: string; name: string }>(),
      );
      const have = new Set(rs.map((c) => `${c.table}.${c.name}`));
      const missing = ADDED_COLUMNS.filter((c) => !have.has(`${c.table}.${c.column}`));
      if (missing.length === 0) return;
      const distributed = new Set(
        (
          await run(async () =>
            (await client.query({ query: distributedTablesSql(), format: 'JSONEachRow' })).json<{ name: string }>(),
          )
        ).map((t) => t.name),
      );
      const sharded = missing.filter((c) => distributed.has(c.table));
      if (sharded.length > 0) throw shardedColumnsMissing(where, sharded);
      for (const c of missing) await run(() => client.command({ query: addedColumnSql(c.table, c) }));
    },
    insertEvents: (rows) => insert(EVENTS_TABLE, rows),
    insertBaselines: (rows) => insert(BASELINES_TABLE, rows),
    insertEpochs: (rows) => insert(EPOCHS_TABLE, rows),
    insertBrokenEvents: (rows) => insert(BROKEN_EVENTS_TABLE, rows),
    query: <T>(sql: string) =>
      run(async () => {
        const rs = await client.query({
          query: sql,
          format: 'JSONEachRow',
          // distributed_product_mode: a subquery over a Distributed table reads the shard's own rows (sharded layout,
          // core/store/sharded-schema.ts: all of a node's rows are on one shard); no effect on plain tables.
          clickhouse_settings: { output_format_json_quote_64bit_integers: 0, distributed_product_mode: 'local' },
        });
        return rs.json<T>();
      }),
    async command(sql) {
      await run(() => client.command({ query: sql }));
    },
    async readOnlySql(sql, { maxRows = 10_000, maxSeconds = 30 } = {}) {
      const statement = checkReadOnlySql(sql);
      if (!Number.isSafeInteger(maxRows) || maxRows < 1)
        throw new InputError(ErrorCode.BadInput, `max rows ${maxRows} is not a positive integer`);
      if (!(maxSeconds > 0))
        throw new InputError(ErrorCode.BadInput, `max seconds ${maxSeconds} is not a positive number`);
      const doc = await run(async () => {
        const rs = await client.query({
          query: statement,
          format: 'JSONCompact',
          clickhouse_settings: serverLimits ? {} : readOnlySettings(maxRows, maxSeconds),
        });
        return rs.json<unknown[]>();
      });
      return { columns: (doc.meta ?? []).map(({ name, type }) => ({ name, type })), rows: doc.data };
    },
    async ping() {
      return (await client.ping()).success;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
