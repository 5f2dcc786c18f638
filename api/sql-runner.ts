import type { ClickHouseClient, ClickHouseSettings } from '@clickhouse/client';
import { ErrorCode, FlashbackError, InputError } from '../core/errors.js';
import {
  checkReadOnlySql,
  readOnlySettings,
  translateClickHouseError,
  type SqlResult,
} from '../core/store/clickhouse.js';

/** Options of {@link createSqlRunner}. */
export interface SqlRunnerOptions {
  client: ClickHouseClient;
  /** The client's user has readonly=1 and the limits in its profile: no settings are sent (readonly=1 refuses any). */
  serverLimits: boolean;
  /** Time limit of one query, s. @default 30 */
  maxSeconds?: number;
  /** Largest answer, bytes of JSON; also sent as max_result_bytes. @default 8_388_608 */
  maxBytes?: number;
  /** Queries running at once. @default 4 */
  concurrency?: number;
  /** Queries waiting for a turn; beyond them a query is refused with BUSY. @default 16 */
  maxQueued?: number;
}

/** Runs users' read-only SQL for `POST /sql`. */
export interface SqlRunner {
  run(sql: string, maxRows: number): Promise<SqlResult>;
}

/**
 * User SQL for the API: checked read-only (one SELECT/WITH/SHOW/… statement, no `INTO OUTFILE`), run with readonly=1
 * and row, byte, time and memory limits (or the user's profile's), at most `concurrency` at once (so slow queries
 * never take every connection, and `/health` never waits behind them), and read as a stream that is cut off at
 * `maxBytes`: an answer too large is refused without being held in memory.
 */
export function createSqlRunner(o: SqlRunnerOptions): SqlRunner {
  const { client, serverLimits, maxSeconds = 30, maxBytes = 8_388_608, concurrency = 4, maxQueued = 16 } = o;
  const gate = new Gate(concurrency, maxQueued);
  return {
    async run(sql, maxRows) {
      const statement = checkReadOnlySql(sql);
      if (/\bINTO\s+OUTFILE\b/i.test(withoutLiterals(statement)))
        throw new InputError(
          ErrorCode.ReadOnlySql,
          'INTO OUTFILE writes a file on the server and is not allowed here; the answer comes back in the response',
        );
      const release = await gate.enter();
      try {
        return await runCapped(client, statement, serverLimits ? {} : limits(maxRows, maxSeconds, maxBytes), maxBytes);
      } finally {
        release();
      }
    },
  };
}

function limits(maxRows: number, maxSeconds: number, maxBytes: number): ClickHouseSettings {
  return {
    ...readOnlySettings(maxRows, maxSeconds),
    max_result_bytes: String(maxBytes),
    // One user query must not take the server's memory from the sink's inserts.
    max_memory_usage: String(1_073_741_824),
  };
}

async function runCapped(
  client: ClickHouseClient,
  statement: string,
  settings: ClickHouseSettings,
  maxBytes: number,
): Promise<SqlResult> {
  const abort = new AbortController();
  let text: string;
  try {
    const { stream } = await client.exec({
      query: `${statement}\nFORMAT JSONCompact`,
      clickhouse_settings: settings,
      abort_signal: abort.signal,
    });
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        abort.abort();
        stream.destroy();
        throw new InputError(
          ErrorCode.BadInput,
          `the answer is over the API's limit of ${maxBytes} bytes; add a LIMIT, select fewer or shorter columns, or aggregate`,
        );
      }
      chunks.push(chunk);
    }
    text = Buffer.concat(chunks).toString('utf8');
  } catch (err) {
    throw err instanceof FlashbackError ? err : userSqlError(translateClickHouseError(err));
  }
  let doc: { meta?: { name: string; type: string }[]; data?: unknown[][] };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    // An error after the first bytes were sent (a limit hit mid-answer) comes as text appended to the JSON.
    const at = text.lastIndexOf('Code: ');
    throw userSqlError(
      translateClickHouseError(
        new Error(at >= 0 ? text.slice(at).trim() : `an answer that is not JSON (${text.length} bytes)`),
      ),
    );
  }
  return { columns: (doc.meta ?? []).map(({ name, type }) => ({ name, type })), rows: doc.data ?? [] };
}

/**
 * A user's query that ClickHouse refused is the user's to fix: 400, not 500, unless the server could not be reached
 * (then 503, retryable).
 */
function userSqlError(e: FlashbackError): FlashbackError {
  if (e.code !== ErrorCode.Storage || e.retryable) return e;
  return new InputError(ErrorCode.BadInput, e.message, { cause: e });
}

/** `sql` with string literals, quoted names and comments blanked, so a keyword check sees only code. */
function withoutLiterals(sql: string): string {
  return sql
    .replace(/'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`(?:\\.|[^`\\])*`/g, "''")
    .replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ');
}

/** At most `limit` holders at once, `maxQueued` waiting; one more is refused with BUSY (the API answers 429). */
class Gate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly limit: number,
    private readonly maxQueued: number,
  ) {}

  async enter(): Promise<() => void> {
    if (this.running >= this.limit) {
      if (this.waiting.length >= this.maxQueued)
        throw new FlashbackError(
          ErrorCode.Busy,
          `${this.running} SQL queries run and ${this.waiting.length} wait already, the API's limit; try again when they are done`,
          { retryable: true },
        );
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter.
      if (next) next();
      else this.running--;
    };
  }
}
