import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { ErrorCode, FlashbackError } from '../core/errors.js';
import { encodeCommand } from '../core/redis/resp.js';
import type { ReplayItem } from '../core/store/event-store.js';

export type { ReplayItem };

/** What {@link IncrWriter.end} reports. */
export interface IncrWriteResult {
  /** Items written with {@link IncrWriter.write}. */
  events: number;
  /** Bytes written in total (tail, SELECT/MULTI/EXEC, items, raw). */
  bytes: number;
}

/** Options of {@link IncrWriter}. */
export interface IncrWriterOptions {
  /** Small pieces are gathered up to this many bytes before one write to the stream. @default 65_536 */
  chunkBytes?: number;
}

const MULTI = encodeCommand(['MULTI']);
const EXEC = encodeCommand(['EXEC']);
const UNKNOWN_DB = -1;

/**
 * Writes the incr file of a multi-part AOF: the baseline's replication tail, then the events in order, with
 * `SELECT` wherever the db changes and `MULTI`/`EXEC` around each transaction. Streams: holds at most one
 * chunk in memory and waits for `'drain'` when the stream pushes back.
 *
 * The AOF loader runs every command on one fake client, so the db it is in carries over from command to command —
 * including across `EXEC` (a `SELECT` queued inside `MULTI` runs at `EXEC`). The writer tracks it the same way.
 */
export class IncrWriter {
  private readonly out: NodeJS.WritableStream;
  private readonly chunkBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private db = UNKNOWN_DB;
  private tx = 0;
  private events = 0;
  private bytes = 0;
  private ended = false;

  constructor(out: NodeJS.WritableStream, options: IncrWriterOptions = {}) {
    this.out = out;
    this.chunkBytes = options.chunkBytes ?? 65_536;
  }

  /**
   * The baseline's replication tail (already RESP, with its own SELECTs). After it the db is unknown, so the next item
   * SELECTs.
   */
  async writeTail(tail: Buffer): Promise<void> {
    this.endTxInternal();
    this.push(tail);
    this.db = UNKNOWN_DB;
    await this.flushIfFull();
  }

  /**
   * One event: `SELECT` when its db differs from the current one, `MULTI` before the first event of a tx,
   * `EXEC` when the tx id changes (or at {@link endTx} / {@link end}). A tx's `SELECT` goes before its `MULTI`,
   * and inside it only when the tx itself changes db.
   */
  async write(item: ReplayItem): Promise<void> {
    this.assertOpen();
    if (item.tx !== this.tx) {
      this.endTxInternal();
      if (item.tx !== 0) {
        this.select(item.db);
        this.push(MULTI);
        this.tx = item.tx;
      }
    }
    this.select(item.db);
    this.push(item.resp);
    this.events++;
    await this.flushIfFull();
  }

  /** Closes the open transaction, if any, with `EXEC`. Needed only when the next tx could reuse the same id. */
  async endTx(): Promise<void> {
    this.endTxInternal();
    await this.flushIfFull();
  }

  /** Appends raw RESP (e.g. the keep-ttl-relative EVAL) after closing any open tx; the db is unknown afterwards. */
  async writeRaw(resp: Buffer): Promise<void> {
    this.endTxInternal();
    this.push(resp);
    this.db = UNKNOWN_DB;
    await this.flushIfFull();
  }

  /** Closes any open tx, flushes, ends the stream and waits until it has finished writing. */
  async end(): Promise<IncrWriteResult> {
    this.assertOpen();
    this.endTxInternal();
    await this.flush();
    this.ended = true;
    this.out.end();
    await finished(this.out);
    return { events: this.events, bytes: this.bytes };
  }

  private endTxInternal(): void {
    this.assertOpen();
    if (this.tx === 0) return;
    this.push(EXEC);
    this.tx = 0;
  }

  private select(db: number): void {
    if (db === this.db) return;
    this.push(selectCommand(db));
    this.db = db;
  }

  private push(b: Buffer): void {
    this.pending.push(b);
    this.pendingBytes += b.length;
    this.bytes += b.length;
  }

  private async flushIfFull(): Promise<void> {
    if (this.pendingBytes >= this.chunkBytes) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    // once() rejects on 'error', so a failing disk surfaces here instead of hanging.
    if (!this.out.write(chunk)) await once(this.out as NodeJS.EventEmitter, 'drain');
  }

  private assertOpen(): void {
    if (this.ended)
      throw new FlashbackError(ErrorCode.Internal, 'IncrWriter: written to after end(); use one writer per incr file');
  }
}

const selects = new Map<number, Buffer>();
function selectCommand(db: number): Buffer {
  let b = selects.get(db);
  if (!b) selects.set(db, (b = encodeCommand(['SELECT', db])));
  return b;
}
