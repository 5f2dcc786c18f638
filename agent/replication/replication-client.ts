import { ConnectionError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { redisAddress, type RedisTarget } from '../../core/redis/redis-url.js';
import { encodeCommand } from '../../core/redis/resp.js';
import { readRole } from '../source-role.js';
import { ReplicaLink } from './replica-link.js';

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
  private link: ReplicaLink | undefined;
  private phase: 'reply' | 'rdb' | 'stream' | 'done' = 'reply';
  private settled = false;
  private resolve!: (b: ReplicationBaseline) => void;
  private reject!: (e: Error) => void;
  private timer: NodeJS.Timeout | undefined;
  private offset = 0;
  /** Settles when `onRdbDone` has; the capture resolves only after it. */
  private markerPublished: Promise<void> | undefined;
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
      this.timer = setTimeout(() => {
        const at =
          this.phase === 'rdb' || this.phase === 'stream'
            ? `${this.phase}, ${this.link?.rdbBytes ?? 0} RDB bytes received`
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
      this.link = ReplicaLink.open({
        target: this.o.target,
        clientName: 'flashback-baseline',
        ackIntervalMs: this.o.ackIntervalMs,
        rdbHighWaterMarkBytes: this.o.rdbHighWaterMarkBytes,
        logger: this.logger,
        handlers: {
          onFullResync: (at) => {
            this.offset = at.offset;
            this.phase = 'rdb';
          },
          writeRdb: (rdb) => this.o.writeRdb(rdb),
          onRdbStored: () => {
            this.phase = 'stream';
            this.logger.debug({ rdbBytes: this.link?.rdbBytes }, 'RDB stored; publishing the marker');
            this.markerPublished = this.o.onRdbDone();
            this.markerPublished.catch((err: unknown) =>
              this.fail(err instanceof Error ? err : new Error(String(err))),
            );
          },
          onCommand: (argv) => this.onCommand(argv),
          // This link keeps nothing but the tail, which is whole once the marker is in: it acknowledges what it read.
          ackOffset: () => this.link?.offset ?? 0,
          onClose: (err) => this.onClose(err),
        },
      });
    });
  }

  private onClose(err: Error): void {
    if (this.settled || this.phase === 'done') return;
    if (!(err instanceof ConnectionError) || !/closed the replication link/.test(err.message)) {
      this.fail(err);
      return;
    }
    // A master demoted by a failover drops its replicas, our link among them: say so rather than blame a buffer limit.
    void this.demotedTo().then((master) => {
      if (master !== undefined) {
        this.fail(
          new ConnectionError(
            `${this.where} closed the replication link because the node was demoted to a replica${master ? ` of ${master}` : ''} (a failover): take the baseline on the shard's new master`,
          ),
        );
        return;
      }
      const hint =
        this.phase === 'stream'
          ? ' (before the marker arrived; client-output-buffer-limit replica may be too small for the write load while the RDB was stored)'
          : '';
      this.fail(new ConnectionError(`${err.message}${hint}; see the master's log`));
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
      const role = await readRole(conn);
      if (role.role !== 'slave') return undefined;
      return role.master ? `${role.master.host}:${role.master.port}` : '';
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
    clearTimeout(this.timer);
    this.link?.close();
    this.reject(err);
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.phase = 'done';
    clearTimeout(this.timer);
    const link = this.link!;
    link.close();
    const tail = Buffer.concat(this.tailChunks);
    this.tailChunks = [];
    const result: ReplicationBaseline = {
      replid: link.replid,
      offset: this.offset,
      rdbBytes: link.rdbBytes,
      framing: link.rdbFraming,
      tail,
      tailCommands: this.tailCommands,
    };
    this.logger.info({ ...result, tail: undefined, tailBytes: tail.length }, 'replication baseline captured');
    this.resolve(result);
  }

  /**
   * The marker is in: stop reading, and resolve once `onRdbDone` has resolved too (its EXEC reply may come after the
   * stream).
   */
  private markerArrived(): void {
    this.phase = 'done';
    this.link?.close();
    void this.markerPublished!.then(
      () => this.finish(),
      () => undefined,
    );
  }

  private onCommand(argv: Buffer[]): void {
    // Commands before our RDB is stored belong to the tail too (the stream does not wait for the object store).
    if (this.phase === 'done') return;
    const name = argv[0]!.toString('latin1').toLowerCase();
    switch (name) {
      case 'ping':
      case 'replconf':
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
          argv[1]!.toString('latin1') === this.o.markerChannel &&
          argv[2]!.includes(this.o.markerId)
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
          argv[1]!.equals(this.markerKey) &&
          argv[2]!.includes(this.o.markerId)
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
