import { ConfigError, ConnectionError, ProtocolError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../../core/redis/redis-url.js';
import { encodeCommand, RespError, RespReader, type RespValue } from '../../core/redis/resp.js';

/** What a full resync gave us: the RDB (handed to `writeRdb`) and the replication commands up to the marker. */
export interface ReplicationBaseline {
  /** Replication id from `+FULLRESYNC`. */
  replid: string;
  /** Master offset of the RDB's dataset (from `+FULLRESYNC`). */
  offset: number;
  /** Bytes of the RDB payload handed to `writeRdb` (framing excluded). */
  rdbBytes: number;
  /**
   * How the master framed the RDB: `$<len>` after a BGSAVE to disk, or `$EOF:<mark>` streamed from a fork (diskless).
   */
  framing: 'disk' | 'diskless';
  /** RESP of the replication commands after the RDB and before the marker (no PING/REPLCONF, SELECT kept). */
  tail: Buffer;
  /** Commands in `tail`. */
  tailCommands: number;
}

/** Options of one full resync. */
export interface ReplicationBaselineOptions {
  target: RedisTarget;
  /** Consumes the RDB bytes (e.g. an object-store put); resolves when all is stored. */
  writeRdb: (rdb: ReadableStream<Uint8Array>) => Promise<void>;
  /** Called once the whole RDB is in; must make the marker PUBLISH happen at the source (the agent does it). */
  onRdbDone: () => Promise<void>;
  /** Channel of the marker PUBLISH. */
  markerChannel: string;
  /**
   * Key of the cluster-mode marker: in cluster mode Redis never puts PUBLISH into the replication stream, so the
   * marker MULTI also runs `SET markerKey <payload>` (then DEL), which it does carry. Undefined on a standalone node.
   */
  markerKey?: string;
  /**
   * The tail ends at `PUBLISH markerChannel <payload containing markerId>`, or at `SET markerKey <payload containing
   * it>`.
   */
  markerId: string;
  /** The whole exchange (wait for BGSAVE, RDB, tail) must finish within this, ms. @default 900_000 (15 min) */
  timeoutMs?: number;
  /** RDB bytes buffered for a slow `writeRdb` before the socket is paused. @default 1 MiB */
  rdbHighWaterMarkBytes?: number;
  /** How often `REPLCONF ACK <offset>` goes to the master once the RDB is in, ms. @default 1_000 */
  ackIntervalMs?: number;
  logger?: Logger;
}

/** Length of the random `$EOF:` mark of a diskless RDB (CONFIG_RUN_ID_SIZE in redis). */
const EOF_MARK_BYTES = 40;
const RDB_MAGIC = Buffer.from('REDIS');

type Phase = 'reply' | 'header' | 'rdb' | 'stream' | 'done';

/**
 * Takes a baseline without pausing writes, as a replica would: `PSYNC ? -1`,
 * the RDB streamed to `writeRdb` (the socket is paused while the consumer is
 * slow, so memory does not grow with the RDB), then the replication stream is
 * read until the marker that `onRdbDone` causes. RDB + tail is exactly the
 * dataset just before the marker.
 */
export function captureReplicationBaseline(o: ReplicationBaselineOptions): Promise<ReplicationBaseline> {
  return new ReplicationCapture(o).run();
}

class ReplicationCapture {
  private readonly where: string;
  private readonly logger: Logger;
  private conn: RawRedis | undefined;
  private phase: Phase = 'reply';
  private settled = false;
  private resolve!: (b: ReplicationBaseline) => void;
  private reject!: (e: Error) => void;
  private timers: NodeJS.Timeout[] = [];

  private replid = '';
  private offset = 0;
  private framing: 'disk' | 'diskless' = 'disk';
  /** Unparsed bytes of the reply/header phases (short lines). */
  private head: Buffer = Buffer.alloc(0);

  private rdb: ReadableStreamDefaultController<Uint8Array> | undefined;
  private rdbBytes = 0;
  /** Disk framing: RDB bytes still to come. */
  private rdbRemaining = 0;
  /** Diskless framing: the mark, and the last bytes held back because they may be it. */
  private eofMark: Buffer | undefined;
  private heldBack: Buffer = Buffer.alloc(0);
  private rdbStored: Promise<void> | undefined;
  /** Settles when `onRdbDone` has; the capture resolves only after it. */
  private markerPublished: Promise<void> | undefined;

  private readonly stream = new RespReader();
  private tailChunks: Buffer[] = [];
  private tailCommands = 0;
  /** Commands of an open MULTI, added to the tail at its EXEC (the marker may sit inside one). */
  private tx: Buffer[] | undefined;

  private readonly markerKey: Buffer | undefined;

  constructor(private readonly o: ReplicationBaselineOptions) {
    this.where = `Redis ${redisAddress(o.target)}`;
    this.markerKey = o.markerKey === undefined ? undefined : Buffer.from(o.markerKey);
    this.logger = o.logger ?? silentLogger;
  }

  run(): Promise<ReplicationBaseline> {
    return new Promise<ReplicationBaseline>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      const { timeoutMs = 900_000 } = this.o;
      const timer = setTimeout(() => {
        const at =
          this.phase === 'rdb' || this.phase === 'stream'
            ? `${this.phase}, ${this.rdbBytes} RDB bytes received`
            : this.phase;
        // A replica does not pass a PUBLISH run on itself down its replication stream, so the marker never comes.
        const hint =
          this.phase === 'stream'
            ? `the marker never arrived in the replication stream; point the agent at the master, not a replica`
            : `raise the baseline timeout or check the master's log`;
        this.fail(
          new ConnectionError(
            `baseline of ${this.where} did not finish within ${timeoutMs} ms (stopped in phase ${at}); ${hint}`,
          ),
        );
      }, timeoutMs);
      this.timers.push(timer);
      this.start().catch((err: Error) => this.fail(err));
    });
  }

  private async start(): Promise<void> {
    const conn = await RawRedis.connect(this.o.target, { clientName: 'flashback-baseline' });
    if (this.settled) {
      conn.close();
      return;
    }
    this.conn = conn;
    // capa eof lets the master stream a diskless RDB; psync2 is what every 4.0+ replica announces.
    const capa = await conn.call(['REPLCONF', 'capa', 'eof', 'capa', 'psync2']);
    if (capa instanceof RespError) throw this.refused('REPLCONF', capa.message);
    // PSYNC must go alone: redis refuses it while a reply is still pending ("invalid with pending output").
    conn.send(['PSYNC', '?', '-1']);
    const rest = conn.detach();
    const socket = conn.socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', () => undefined); // 'close' follows and says what we were doing
    if (rest.length > 0) this.onData(rest);
  }

  private refused(command: string, message: string): Error {
    if (/^NOPERM/.test(message)) {
      return new ConfigError(
        `${this.where} refused ${command}: ${message}; the user in the URL needs +psync and +replconf (ACL SETUSER <user> +psync +replconf)`,
      );
    }
    if (/^(NOMASTERLINK|LOADING|MASTERDOWN|BUSY)/.test(message)) {
      return new ConnectionError(`${this.where} cannot serve a full resync now: ${message}; it will be retried`);
    }
    return new ProtocolError(
      `${this.where} refused ${command}: ${message}; point the agent at a master (a replica does not pass its own PUBLISH on, so no marker would come)`,
    );
  }

  private onClose(): void {
    if (this.settled || this.phase === 'done') return;
    const what =
      this.phase === 'rdb'
        ? `while sending the RDB (${this.rdbBytes}${this.framing === 'disk' ? ` of ${this.rdbBytes + this.rdbRemaining}` : ''} bytes received)`
        : this.phase === 'stream'
          ? `before the marker arrived in the replication stream`
          : `during the PSYNC handshake`;
    // A master demoted by a failover drops its replicas, our link among them: say so rather than blame a buffer limit.
    void this.demotedTo().then((master) => {
      if (master !== undefined) {
        this.fail(
          new ConnectionError(
            `${this.where} closed the replication link ${what} because the node was demoted to a replica${master ? ` of ${master}` : ''} (a failover): take the baseline on the shard's new master`,
          ),
        );
        return;
      }
      const hint =
        this.phase === 'stream'
          ? ' (client-output-buffer-limit replica may be too small for the write load while the RDB was stored)'
          : '';
      this.fail(new ConnectionError(`${this.where} closed the replication link ${what}${hint}; see the master's log`));
    });
  }

  /**
   * After the link closed: the master the node now follows ('' when unknown), or undefined when it is no replica (or
   * cannot tell).
   */
  private async demotedTo(): Promise<string | undefined> {
    let conn: RawRedis | undefined;
    try {
      conn = await RawRedis.connect(this.o.target, { clientName: 'flashback-baseline', timeoutMs: 2_000 });
      const info = await conn.call(['INFO', 'replication']);
      const text = Buffer.isBuffer(info) ? info.toString('latin1') : '';
      if (!/^role:slave\r?$/m.test(text)) return undefined;
      const host = /^master_host:(.*?)\r?$/m.exec(text)?.[1];
      const port = /^master_port:(\d+)\r?$/m.exec(text)?.[1];
      return host && port ? `${host}:${port}` : '';
    } catch {
      return undefined;
    } finally {
      conn?.close();
    }
  }

  private fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.phase = 'done';
    for (const t of this.timers) clearTimeout(t);
    try {
      this.rdb?.error(err);
    } catch {
      // the stream was already closed
    }
    this.conn?.close();
    this.reject(err);
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.phase = 'done';
    for (const t of this.timers) clearTimeout(t);
    this.conn?.close();
    const tail = Buffer.concat(this.tailChunks);
    this.tailChunks = [];
    this.logger.info(
      {
        replid: this.replid,
        offset: this.offset,
        rdbBytes: this.rdbBytes,
        framing: this.framing,
        tailBytes: tail.length,
        tailCommands: this.tailCommands,
      },
      'replication baseline captured',
    );
    this.resolve({
      replid: this.replid,
      offset: this.offset,
      rdbBytes: this.rdbBytes,
      framing: this.framing,
      tail,
      tailCommands: this.tailCommands,
    });
  }

  private onData(chunk: Buffer): void {
    try {
      let rest: Buffer | undefined = chunk;
      while (rest && rest.length > 0 && !this.settled) {
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
          case 'done':
            rest = undefined;
            break;
        }
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /**
   * Reads the `+FULLRESYNC` line and the RDB's `$` line, skipping the bare "\n" keepalives the master sends while
   * BGSAVE runs.
   */
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
      if (this.phase === 'reply') this.onReplyLine(line);
      else {
        this.onHeaderLine(line);
        const rest = this.head;
        this.head = Buffer.alloc(0);
        return rest;
      }
    }
  }

  private onReplyLine(line: string): void {
    if (line.startsWith('-')) throw this.refused('PSYNC', line.slice(1));
    const m = /^\+FULLRESYNC ([0-9a-f]{40}) (\d+)$/i.exec(line);
    if (!m)
      throw new ProtocolError(
        `${this.where} answered PSYNC ? -1 with "${line.slice(0, 80)}"; expected +FULLRESYNC <replid> <offset>`,
      );
    this.replid = m[1];
    this.offset = Number(m[2]);
    this.phase = 'header';
    this.logger.debug({ replid: this.replid, offset: this.offset }, 'FULLRESYNC');
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
    this.logger.debug(
      { framing: this.framing, rdbBytes: this.framing === 'disk' ? this.rdbRemaining : undefined },
      'RDB transfer starts',
    );
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
          this.fail(
            new ConnectionError(`the RDB consumer of the baseline of ${this.where} stopped reading: ${String(reason)}`),
          );
        },
      },
      { highWaterMark: rdbHighWaterMarkBytes, size: (c) => c.byteLength },
    );
    this.rdbStored = this.o.writeRdb(rs);
    // Observe it now so a rejection is never unhandled; rdbComplete() awaits it.
    this.rdbStored.catch((err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
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
    this.phase = 'stream';
    this.conn!.socket.resume();
    this.rdb!.close();
    this.logger.debug({ rdbBytes: this.rdbBytes }, 'RDB received');
    // A diskless master only starts the command stream after our first ACK (repl_start_cmd_stream_on_ack).
    this.ack();
    const { ackIntervalMs = 1_000 } = this.o;
    const acks = setInterval(() => this.ack(), ackIntervalMs);
    acks.unref();
    this.timers.push(acks);
    this.markerPublished = this.afterRdb();
    this.markerPublished.catch((err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
  }

  private async afterRdb(): Promise<void> {
    await this.rdbStored;
    if (this.settled) return;
    this.logger.debug({ rdbBytes: this.rdbBytes }, 'RDB stored; publishing the marker');
    await this.o.onRdbDone();
  }

  /**
   * The marker is in: stop reading, and resolve once `onRdbDone` has resolved too (its EXEC reply may come after the
   * stream).
   */
  private markerArrived(): void {
    this.phase = 'done';
    this.conn?.close();
    void this.markerPublished!.then(
      () => this.finish(),
      () => undefined,
    );
  }

  private ack(): void {
    if (this.phase !== 'stream') return;
    this.conn?.socket.write(encodeCommand(['REPLCONF', 'ACK', this.offset + this.stream.consumed]));
  }

  private onStream(chunk: Buffer): void {
    this.stream.push(chunk);
    let v: RespValue | undefined;
    while (this.phase === 'stream' && (v = this.stream.read()) !== undefined) this.onCommand(v);
  }

  private onCommand(v: RespValue): void {
    if (!Array.isArray(v) || v.length === 0 || !v.every((a) => Buffer.isBuffer(a))) {
      throw new ProtocolError(
        `${this.where} sent a replication stream entry that is not a command (${describe(v)}); the stream is corrupt`,
      );
    }
    const argv = v as Buffer[];
    const name = argv[0].toString('latin1').toLowerCase();
    switch (name) {
      case 'ping':
        return;
      case 'replconf':
        if (argv[1]?.toString('latin1').toLowerCase() === 'getack') this.ack();
        return;
      case 'multi':
        this.tx = [encodeCommand(argv)];
        return;
      case 'exec':
        if (this.tx) {
          this.tx.push(encodeCommand(argv));
          this.addToTail(this.tx);
          this.tx = undefined;
        } else this.addToTail([encodeCommand(argv)]);
        return;
      case 'publish':
        if (
          argv.length === 3 &&
          argv[1].toString('latin1') === this.o.markerChannel &&
          argv[2].includes(this.o.markerId)
        ) {
          // Redis 7.0 propagates a lone PUBLISH from a MULTI without MULTI/EXEC; if it is wrapped, the tail ends before
          // MULTI.
          this.tx = undefined;
          this.markerArrived();
          return;
        }
        break;
      case 'set':
        if (
          this.markerKey !== undefined &&
          argv.length === 3 &&
          argv[1].equals(this.markerKey) &&
          argv[2].includes(this.o.markerId)
        ) {
          // Our MULTI holds only our own commands: the tail ends before its MULTI, as for a wrapped PUBLISH.
          this.tx = undefined;
          this.markerArrived();
          return;
        }
        break;
      default:
        break;
    }
    if (this.tx) this.tx.push(encodeCommand(argv));
    else this.addToTail([encodeCommand(argv)]);
  }

  private addToTail(commands: Buffer[]): void {
    this.tailChunks.push(...commands);
    this.tailCommands += commands.length;
  }
}

function describe(v: RespValue): string {
  if (v instanceof RespError) return `error ${v.message}`;
  if (Buffer.isBuffer(v)) return `bulk of ${v.length} bytes`;
  return JSON.stringify(v)?.slice(0, 60) ?? String(v);
}
