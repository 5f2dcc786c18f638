import { ConfigError, ConnectionError, ProtocolError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../../core/redis/redis-url.js';
import { encodeCommand, RespError, RespReader, type RespValue } from '../../core/redis/resp.js';

/** Where a replica stands in its master's replication history. */
export interface ReplicationPosition {
  replid: string;
  /** Master offset of the last byte consumed. */
  offset: number;
  /**
   * Database the stream had selected there: a continued stream does not repeat its `SELECT` (the master sends one
   * only when the db changes), so a restarted agent must know it.
   */
  db?: number;
  /** The epoch ended here (its stream could not go on): no restart may continue from this position. */
  ended?: boolean;
  /**
   * Events the agent added to the stream's own in this epoch up to here (attribution's consumers and audit rows, the
   * consumer watch's consumers): a restart can publish the entries after a durable position again, not these.
   */
  inserted?: number;
}

/** What the link reports, in stream order. */
export interface ReplicaLinkHandlers {
  /** `+FULLRESYNC`: the dataset at `offset` follows as an RDB, handed to `writeRdb`. */
  onFullResync?(at: ReplicationPosition): void;
  /** Consumes the RDB bytes (e.g. an object-store put); resolves when all is stored. */
  writeRdb(rdb: ReadableStream<Uint8Array>): Promise<void>;
  /** The whole RDB is in and `writeRdb` resolved. */
  onRdbStored?(): void;
  /** `+CONTINUE`: the stream goes on from the position asked for. */
  onContinue?(at: ReplicationPosition): void;
  /** One entry of the command stream (PING and REPLCONF included) and the master offset after it. */
  onCommand(argv: Buffer[], endOffset: number): void;
  /** The offset to acknowledge (`REPLCONF ACK`): what is kept for good, not what was merely read. */
  ackOffset(): number;
  /** The link ended other than by `close()`. */
  onClose(err: Error): void;
}

/** Options of {@link ReplicaLink.open}. */
export interface ReplicaLinkOptions {
  target: RedisTarget;
  /** Continue from here (`PSYNC <replid> <offset+1>`); undefined = full resync (`PSYNC ? -1`). */
  from?: ReplicationPosition;
  handlers: ReplicaLinkHandlers;
  clientName?: string;
  /** How often `REPLCONF ACK` goes to the master once the stream flows, ms. @default 1_000 */
  ackIntervalMs?: number;
  /** RDB bytes buffered for a slow `writeRdb` before the socket is paused. @default 1 MiB */
  rdbHighWaterMarkBytes?: number;
  logger?: Logger;
}

/** Length of the random `$EOF:` mark of a diskless RDB (CONFIG_RUN_ID_SIZE in redis). */
const EOF_MARK_BYTES = 40;
const RDB_MAGIC = Buffer.from('REDIS');
/** How often, and how long at most, `REPLCONF ACK` repeats after a diskless RDB until the command stream flows. */
const STREAM_START_ACK_INTERVAL_MS = 5;
const STREAM_START_ACK_WINDOW_MS = 10_000;

type Phase = 'connect' | 'reply' | 'header' | 'rdb' | 'stream' | 'closed';

/**
 * A replica's side of the replication protocol, as Redis 7 speaks it (docs/research/replication-stream-7.0.md):
 * `REPLCONF capa eof capa psync2`, `PSYNC`, the RDB of a full resync (`$<len>` or diskless `$EOF:<mark>`) streamed to
 * `writeRdb` with the socket paused while it is slow, then the command stream with each command's end offset.
 * It acknowledges what `ackOffset()` says (once a second, and at once on `REPLCONF GETACK`), never more.
 */
export class ReplicaLink {
  readonly where: string;
  private readonly logger: Logger;
  private conn: RawRedis | undefined;
  private phase: Phase = 'connect';
  private timer: NodeJS.Timeout | undefined;
  /** The position the stream started at and the replid it goes on under. */
  replid = '';
  private startOffset = 0;
  private head: Buffer = Buffer.alloc(0);
  private framing: 'disk' | 'diskless' = 'disk';
  private rdb: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** RDB bytes handed to `writeRdb`. */
  rdbBytes = 0;
  private rdbRemaining = 0;
  private eofMark: Buffer | undefined;
  private heldBack: Buffer = Buffer.alloc(0);
  private rdbStored: Promise<void> | undefined;
  private readonly stream = new RespReader();
  private paused = false;
  /** Bytes of the command stream read. */
  streamBytes = 0;

  private constructor(private readonly o: ReplicaLinkOptions) {
    this.where = `Redis ${redisAddress(o.target)}`;
    this.logger = o.logger ?? silentLogger;
  }

  /** Connects and asks for the stream; failures reach `handlers.onClose`. */
  static open(o: ReplicaLinkOptions): ReplicaLink {
    const link = new ReplicaLink(o);
    link.start().catch((err: Error) => link.fail(err));
    return link;
  }

  /** Master offset of the last command read. */
  get offset(): number {
    return this.startOffset + this.stream.consumed;
  }

  /** How the RDB came: after a BGSAVE to disk, or streamed from a fork (diskless). */
  get rdbFraming(): 'disk' | 'diskless' {
    return this.framing;
  }

  /** Sends `REPLCONF ACK` with `handlers.ackOffset()` (once the command stream flows). */
  ack(): void {
    if (this.phase !== 'stream') return;
    this.conn?.socket.write(encodeCommand(['REPLCONF', 'ACK', this.o.handlers.ackOffset()]));
  }

  /** Stops reading (Redis buffers for us, up to its `replica` output-buffer limit). */
  pause(): void {
    this.paused = true;
    if (this.phase === 'stream') this.conn?.socket.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.phase === 'stream') this.conn?.socket.resume();
  }

  /** Ends the link; no handler is called after this. */
  close(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearInterval(this.timer);
    try {
      this.rdb?.error(new ConnectionError(`the replication link to ${this.where} was closed`));
    } catch {
      // the RDB stream had ended already
    }
    this.conn?.close();
  }

  private fail(err: Error): void {
    if (this.phase === 'closed') return;
    this.close();
    this.o.handlers.onClose(err);
  }

  private async start(): Promise<void> {
    const conn = await RawRedis.connect(this.o.target, { clientName: this.o.clientName ?? 'flashback-replica' });
    if (this.phase === 'closed') {
      conn.close();
      return;
    }
    this.conn = conn;
    // capa eof lets the master stream a diskless RDB; psync2 is what every 4.0+ replica announces.
    const capa = await conn.call(['REPLCONF', 'capa', 'eof', 'capa', 'psync2']);
    if (capa instanceof RespError) throw this.refused('REPLCONF', capa.message);
    const { from } = this.o;
    // PSYNC must go alone: redis refuses it while a reply is still pending ("invalid with pending output").
    conn.send(from ? ['PSYNC', from.replid, from.offset + 1] : ['PSYNC', '?', '-1']);
    this.phase = 'reply';
    const rest = conn.detach();
    conn.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    conn.socket.on('close', () => this.fail(this.closedError()));
    conn.socket.on('error', () => undefined); // 'close' follows and says what we were doing
    if (rest.length > 0) this.onData(rest);
  }

  /** Why the master refused us, with the way out. */
  refused(command: string, message: string): Error {
    if (/^NOPERM/.test(message)) {
      return new ConfigError(
        `${this.where} refused ${command}: ${message}; the user in the URL needs +psync and +replconf (ACL SETUSER <user> +psync +replconf), or capture with --source monitor`,
        // Retryable: granting the rights at the source is the fix, and `flashback agent` waits for it (unready).
        { retryable: true },
      );
    }
    if (/^(NOMASTERLINK|LOADING|MASTERDOWN|BUSY)/.test(message)) {
      return new ConnectionError(`${this.where} cannot serve a replica now: ${message}; it will be retried`);
    }
    return new ProtocolError(`${this.where} refused ${command}: ${message}`);
  }

  private closedError(): Error {
    const what =
      this.phase === 'rdb'
        ? `while sending the RDB (${this.rdbBytes}${this.framing === 'disk' ? ` of ${this.rdbBytes + this.rdbRemaining}` : ''} bytes received)`
        : this.phase === 'stream'
          ? `at offset ${this.offset} (a replica that falls behind is cut off by client-output-buffer-limit replica; repl-timeout drops one that does not ACK)`
          : `during the PSYNC handshake`;
    return new ConnectionError(`${this.where} closed the replication link ${what}`);
  }

  private onData(chunk: Buffer): void {
    try {
      let rest: Buffer | undefined = chunk;
      while (rest && rest.length > 0) {
        switch (this.phase) {
          case 'reply':
          case 'header':
            rest = this.onHead(rest);
            break;
          case 'rdb':
            rest = this.onRdb(rest);
            break;
          case 'stream':
            this.onStream(rest);
            rest = undefined;
            break;
          default:
            rest = undefined;
        }
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Reads the PSYNC reply line and the RDB's `$` line, skipping the bare "\n" keepalives of a running BGSAVE. */
  private onHead(chunk: Buffer): Buffer | undefined {
    this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
    for (;;) {
      const nl = this.head.indexOf(0x0a);
      if (nl < 0) {
        if (this.head.length > 4096)
          throw new ProtocolError(
            `${this.where} sent ${this.head.length} bytes without a line end during the PSYNC handshake; is it a Redis server?`,
          );
        return undefined;
      }
      const line = this.head.toString('latin1', 0, nl > 0 && this.head[nl - 1] === 0x0d ? nl - 1 : nl);
      this.head = this.head.subarray(nl + 1);
      if (line === '') continue;
      if (this.phase === 'reply') {
        if (this.onReplyLine(line)) {
          const rest = this.head;
          this.head = Buffer.alloc(0);
          return rest;
        }
      } else {
        this.onHeaderLine(line);
        const rest = this.head;
        this.head = Buffer.alloc(0);
        return rest;
      }
    }
  }

  /** Returns true when the command stream starts right after this line (`+CONTINUE`). */
  private onReplyLine(line: string): boolean {
    if (line.startsWith('-')) throw this.refused('PSYNC', line.slice(1));
    const full = /^\+FULLRESYNC ([0-9a-f]{40}) (\d+)$/i.exec(line);
    if (full) {
      this.replid = full[1]!;
      this.startOffset = Number(full[2]);
      this.phase = 'header';
      this.logger.debug({ replid: this.replid, offset: this.startOffset }, 'FULLRESYNC');
      this.o.handlers.onFullResync?.({ replid: this.replid, offset: this.startOffset });
      return false;
    }
    const cont = /^\+CONTINUE(?: ([0-9a-f]{40}))?$/i.exec(line);
    if (cont && this.o.from) {
      // A master that changed its replid (a promoted replica) names the new one; the offsets go on.
      this.replid = cont[1] ?? this.o.from.replid;
      this.startOffset = this.o.from.offset;
      this.startStream();
      this.o.handlers.onContinue?.({ replid: this.replid, offset: this.startOffset });
      return true;
    }
    throw new ProtocolError(
      `${this.where} answered PSYNC with "${line.slice(0, 80)}"; expected +FULLRESYNC or +CONTINUE (is it Redis 4.0 or later?)`,
    );
  }

  private onHeaderLine(line: string): void {
    if (line.startsWith('-')) throw this.refused('the RDB transfer', line.slice(1));
    if (line.startsWith('$EOF:')) {
      const mark = Buffer.from(line.slice(5), 'latin1');
      if (mark.length !== EOF_MARK_BYTES)
        throw new ProtocolError(
          `${this.where} sent an RDB end mark of ${mark.length} bytes; expected ${EOF_MARK_BYTES}`,
        );
      this.framing = 'diskless';
      this.eofMark = mark;
    } else if (/^\$\d+$/.test(line)) {
      this.framing = 'disk';
      this.rdbRemaining = Number(line.slice(1));
    } else {
      throw new ProtocolError(
        `${this.where} sent "${line.slice(0, 80)}" where the RDB should start; expected $<length> or $EOF:<mark>`,
      );
    }
    this.phase = 'rdb';
    this.openRdbStream();
    if (this.framing === 'disk' && this.rdbRemaining === 0) this.rdbComplete();
  }

  private openRdbStream(): void {
    const { rdbHighWaterMarkBytes = 1024 * 1024 } = this.o;
    const rs = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.rdb = controller;
        },
        pull: () => {
          if (this.phase === 'rdb') this.conn?.socket.resume();
        },
        cancel: (reason) => {
          this.fail(new ConnectionError(`the RDB consumer of ${this.where} stopped reading: ${String(reason)}`));
        },
      },
      { highWaterMark: rdbHighWaterMarkBytes, size: (c) => c.byteLength },
    );
    this.rdbStored = this.o.handlers.writeRdb(rs);
    // Observed now so a rejection is never unhandled.
    this.rdbStored.then(
      () => {
        if (this.phase !== 'closed') this.o.handlers.onRdbStored?.();
      },
      (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))),
    );
  }

  private emitRdb(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.rdbBytes < RDB_MAGIC.length) {
      const got = bytes.subarray(0, RDB_MAGIC.length - this.rdbBytes);
      if (!got.equals(RDB_MAGIC.subarray(this.rdbBytes, this.rdbBytes + got.length))) {
        throw new ProtocolError(
          `${this.where} sent an RDB that does not start with "REDIS"; the transfer is corrupt or the framing was misread`,
        );
      }
    }
    this.rdbBytes += bytes.length;
    // A copy: the socket's chunk may be a view into a larger pooled buffer the consumer would keep alive.
    this.rdb!.enqueue(new Uint8Array(bytes));
    if ((this.rdb!.desiredSize ?? 1) <= 0) this.conn?.socket.pause();
  }

  private onRdb(chunk: Buffer): Buffer | undefined {
    if (this.framing === 'disk') {
      const n = Math.min(this.rdbRemaining, chunk.length);
      this.emitRdb(chunk.subarray(0, n));
      this.rdbRemaining -= n;
      if (this.rdbRemaining === 0) {
        this.rdbComplete();
        return chunk.subarray(n);
      }
      return undefined;
    }
    // Diskless: the RDB ends with the mark and nothing follows until we ACK, so the mark ends a read.
    const data = this.heldBack.length === 0 ? chunk : Buffer.concat([this.heldBack, chunk]);
    if (data.length >= EOF_MARK_BYTES && data.subarray(data.length - EOF_MARK_BYTES).equals(this.eofMark!)) {
      this.heldBack = Buffer.alloc(0);
      this.emitRdb(data.subarray(0, data.length - EOF_MARK_BYTES));
      this.rdbComplete();
      return undefined;
    }
    const keep = Math.min(EOF_MARK_BYTES, data.length);
    this.emitRdb(data.subarray(0, data.length - keep));
    this.heldBack = Buffer.from(data.subarray(data.length - keep));
    return undefined;
  }

  private rdbComplete(): void {
    if (this.rdbBytes < RDB_MAGIC.length)
      throw new ProtocolError(`${this.where} sent an RDB of ${this.rdbBytes} bytes; too short to be one`);
    this.rdb!.close();
    this.logger.debug({ rdbBytes: this.rdbBytes, framing: this.framing }, 'RDB received');
    this.startStream();
  }

  private startStream(): void {
    this.phase = 'stream';
    if (this.paused) this.conn?.socket.pause();
    else this.conn?.socket.resume();
    // A diskless master starts the command stream only after an ACK it takes once it has reaped its fork (serverCron,
    // up to 1/hz later): the first one is early, so they repeat (research §0). Every few ms until the stream flows, not
    // once a second: writes buffered meanwhile reach us late, and their time anchors with them (a second late, seen).
    this.ack();
    const { ackIntervalMs = 1_000 } = this.o;
    const steady = (): void => {
      this.timer = setInterval(() => this.ack(), ackIntervalMs);
      this.timer.unref();
    };
    if (this.framing !== 'diskless') return steady();
    const until = Date.now() + STREAM_START_ACK_WINDOW_MS;
    this.timer = setInterval(() => {
      this.ack();
      if (this.streamBytes === 0 && Date.now() < until) return;
      clearInterval(this.timer);
      steady();
    }, STREAM_START_ACK_INTERVAL_MS);
    this.timer.unref();
  }

  private onStream(chunk: Buffer): void {
    this.streamBytes += chunk.length;
    this.stream.push(chunk);
    let v: RespValue | undefined;
    while (this.phase === 'stream' && (v = this.stream.readCommand()) !== undefined) {
      if (!this.stream.lastWasCommand && !isCommand(v)) {
        throw new ProtocolError(
          `${this.where} sent a replication stream entry that is not a command (${describe(v)}); the stream is corrupt`,
        );
      }
      const argv = v as Buffer[];
      this.o.handlers.onCommand(argv, this.offset);
      if (isGetAck(argv)) this.ack();
    }
  }
}

function isCommand(v: RespValue): v is Buffer[] {
  if (!Array.isArray(v) || v.length === 0) return false;
  for (const a of v) if (!Buffer.isBuffer(a)) return false;
  return true;
}

/** `REPLCONF GETACK *`: the master (running WAIT) asks where we are. */
export function isGetAck(argv: Buffer[]): boolean {
  return (
    argv.length >= 2 &&
    argv[0]!.length === 8 &&
    argv[0]!.toString('latin1').toLowerCase() === 'replconf' &&
    argv[1]!.toString('latin1').toLowerCase() === 'getack'
  );
}

function describe(v: RespValue): string {
  if (v instanceof RespError) return `error ${v.message}`;
  if (Buffer.isBuffer(v)) return `bulk of ${v.length} bytes`;
  return JSON.stringify(v)?.slice(0, 60) ?? String(v);
}
