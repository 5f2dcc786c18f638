import { ANCHOR_CHANNEL } from '../../core/bus/baseline.js';
import { EventKind, type FlashbackEvent } from '../../core/bus/event.js';
import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import type { RedisTarget } from '../../core/redis/redis-url.js';
import { RespError, RespReader, type RespValue } from '../../core/redis/resp.js';
import { mergeNotifyFlags } from '../monitor/notifications.js';
import { ConsumerCreations, shiftBehind, type FoundConsumer } from './consumer-creations.js';

/** The keyevent a consumer's creation publishes (class t, stream): its message is the key, nothing more. */
export const CREATECONSUMER_PATTERN = '__keyevent@*__:xgroup-createconsumer';
const CHANNEL_DB = /^__keyevent@(\d+)__:/;

/** Whether the server creates a consumer for a group read that delivers nothing, without replicating it. */
export function createsConsumersSilently(source: { server: string; version: string }): boolean {
  if (source.server === 'valkey') return true;
  const [major = 0, minor = 0] = source.version.split('.').map(Number);
  return major > 7 || (major === 7 && minor >= 2);
}

interface Pending {
  events: FlashbackEvent[];
  release: () => void;
  anchor: string | undefined;
  since: number;
  /** Master offset after the output's last entry. */
  endOffset: number;
}

/**
 * Entries after which `(db, key)` may hold another stream than the one a notification named (or none): a lookup that
 * ran after one of them describes that other stream. Keyless ones (SWAPDB, FLUSHALL, FLUSHDB) move every key.
 */
const REPLACES_KEY = new Set([
  'SWAPDB',
  'FLUSHDB',
  'FLUSHALL',
  'MOVE',
  'RENAME',
  'RENAMENX',
  'DEL',
  'UNLINK',
  'RESTORE',
  'COPY',
  'SET',
]);

/**
 * With attribution off, the consumers a group read creates without delivering (Redis 7.2+, Valkey: nothing of them
 * reaches the replication stream) are found from the keyevent `xgroup-createconsumer`. It names only the key, so a
 * second connection lists that stream's groups and consumers (`XINFO`) and ConsumerCreations adds those not known yet
 * to the interval's output, after its last entry on that stream. The subscriber also receives the anchors (`__flashback__:anchor`): pub/sub messages
 * reach it in the order the server ran their commands, so each notification falls in a known anchor interval, and
 * the output of that interval waits here until it is listed. A consumer created and deleted within one interval, or
 * listed a little early (created after the notification, before the XINFO), is the inexactness left
 * (docs/exactness.md). If the subscriber fails or is late, outputs go on as they are and the watch starts again.
 */
export class ConsumerWatch {
  /** Outputs released without their interval (subscriber late or gone), and XINFO lookups made. */
  timedOut = 0;
  lookups = 0;
  readonly creations = new ConsumerCreations();
  private sub: RawRedis | undefined;
  private query: RawRedis | undefined;
  private live = false;
  private everLive = false;
  private closed = false;
  private current: { db: number; key: Buffer }[] = [];
  private readonly intervals = new Map<string, { db: number; key: Buffer }[]>();
  private readonly queue: Pending[] = [];
  private busy = false;
  /** Epochs ended while the watch ran (releaseAll). */
  private generation = 0;
  private restoreFlags: string | undefined;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: {
      target: RedisTarget;
      control: RawRedis;
      logger: Logger;
      /** Events were added to an output: the seqs after them, and the assembler's next one, move up by `n`. */
      onSeqsAdded: (n: number) => void;
      /** How long an output waits for its interval, ms. @default 1_000 */
      waitMs?: number;
    },
  ) {}

  /** Outputs waiting for their interval or its lookup. */
  get waiting(): number {
    return this.queue.length;
  }

  get active(): boolean {
    return this.live;
  }

  /** Turns on the stream notifications (put back on close) and subscribes; on failure logs and retries later. */
  async start(): Promise<void> {
    try {
      await this.ensureFlags();
      const sub = await RawRedis.connect(this.o.target, { clientName: 'flashback-consumers' });
      this.sub = sub;
      for (const argv of [
        ['SUBSCRIBE', ANCHOR_CHANNEL],
        ['PSUBSCRIBE', CREATECONSUMER_PATTERN],
      ]) {
        const r = await sub.call(argv);
        if (r instanceof RespError) throw new Error(`${argv[0]} refused: ${r.message}`);
      }
      this.query = await RawRedis.connect(this.o.target, { clientName: 'flashback-consumers-list' });
      const reader = new RespReader();
      const rest = sub.detach();
      const onData = (chunk: Buffer) => {
        reader.push(chunk);
        for (let v = reader.read(); v !== undefined; v = reader.read()) this.onMessage(v);
      };
      if (rest.length > 0) onData(rest);
      sub.socket.on('data', onData);
      sub.socket.once('close', () => {
        if (this.sub === sub) this.pause('the notification connection closed');
      });
      this.current = [];
      this.intervals.clear();
      this.live = true;
      this.everLive = true;
    } catch (err) {
      this.pause(describeError(err));
    }
  }

  /** An output of the assembler: `release` runs once consumers created in its interval are added. */
  submit(events: FlashbackEvent[], release: () => void, endOffset: number): void {
    const last = events[events.length - 1];
    const anchor =
      last?.kind === EventKind.Heartbeat && last.args.length === 3 ? last.args[2]!.toString('latin1') : undefined;
    this.queue.push({ events, release, anchor: this.live ? anchor : undefined, since: Date.now(), endOffset });
    this.drain(false);
  }

  /** An epoch ends: what waits goes as it is. */
  releaseAll(): void {
    // Everything goes now, as it is, to the ending epoch's publisher: a lookup in flight adds nothing when it returns
    // (the next epoch's assembler has started; its seqs cannot move up any more).
    this.generation++;
    this.busy = false;
    this.drain(true);
    this.creations.clear();
  }

  tick(): void {
    this.drain(false);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.stopConnections();
    this.releaseAll();
    if (this.restoreFlags !== undefined) {
      const r = await this.o.control
        .call(['CONFIG', 'SET', 'notify-keyspace-events', this.restoreFlags])
        .catch((err: unknown) => err as Error);
      if (r instanceof Error || r instanceof RespError)
        this.o.logger.warn({ error: r.message }, 'could not put notify-keyspace-events back; set it by hand');
      else this.o.logger.info({ value: this.restoreFlags }, 'notify-keyspace-events put back as it was');
      this.restoreFlags = undefined;
    }
  }

  private async ensureFlags(): Promise<void> {
    const got = await this.o.control.call(['CONFIG', 'GET', 'notify-keyspace-events']);
    if (got instanceof RespError || !Array.isArray(got)) throw new Error('cannot read notify-keyspace-events');
    const before = String(got[1] ?? '');
    const after = mergeNotifyFlags(before, 'Et');
    if (after === before) return;
    const r = await this.o.control.call(['CONFIG', 'SET', 'notify-keyspace-events', after]);
    if (r instanceof RespError) throw new Error(`cannot set notify-keyspace-events: ${r.message}`);
    this.restoreFlags ??= before;
    this.o.logger.info(
      { before, after },
      'notify-keyspace-events changed: stream events (t) are published, so consumers created by group reads that delivered nothing are seen',
    );
  }

  private onMessage(v: RespValue): void {
    if (!Array.isArray(v)) return;
    const kind = String(v[0]);
    if (kind === 'message' && v.length === 3) {
      this.intervals.set(String(v[2]), this.current);
      if (this.intervals.size > 10_000) this.intervals.delete(this.intervals.keys().next().value!);
      this.current = [];
      this.drain(false);
    } else if (kind === 'pmessage' && v.length === 4 && Buffer.isBuffer(v[3])) {
      const m = CHANNEL_DB.exec(String(v[2]));
      if (m) this.current.push({ db: Number(m[1]), key: Buffer.from(v[3]) });
    }
  }

  private drain(all: boolean): void {
    if (this.busy) return;
    const waitMs = this.o.waitMs ?? 1_000;
    while (this.queue.length > 0) {
      const p = this.queue[0]!;
      if (p.anchor !== undefined && !all) {
        const keys = this.intervals.get(p.anchor);
        if (!keys) {
          if (Date.now() - p.since < waitMs) return;
          this.timedOut++;
        } else {
          // Intervals no output asked for (an idle anchor not stored) give their keys to this one.
          const created: { db: number; key: Buffer }[] = [];
          for (const [k, ks] of this.intervals) {
            this.intervals.delete(k);
            created.push(...ks);
            if (k === p.anchor) break;
          }
          if (created.length > 0) {
            this.busy = true;
            const generation = this.generation;
            void this.list(created)
              .then((listed) => this.settle(listed))
              .then((found) => {
                if (generation !== this.generation) return; // released by releaseAll
                this.busy = false;
                this.add(p, found);
                this.queue.shift();
                p.release();
                this.drain(false);
              });
            return;
          }
        }
      }
      this.queue.shift();
      this.creations.forget(p.events);
      p.release();
    }
  }

  private add(p: Pending, found: FoundConsumer[]): void {
    const added = this.creations.insertInInterval(p.events, found);
    if (added === 0) return;
    shiftBehind(this.queue, added);
    this.o.onSeqsAdded(added);
  }

  /**
   * The consumers listed, less those of streams an entry may have replaced between the notification's interval and
   * the lookup (a SWAPDB brings another stream under the key: its consumers are not this one's). The entries up to
   * the lookup's offset are waited for (they are outputs queued behind the head, at most an anchor away); if they do
   * not come within the wait, nothing is added. Such a consumer is then missing, never wrongly added.
   */
  private async settle(listed: { found: FoundConsumer[]; fence: number }): Promise<FoundConsumer[]> {
    if (listed.found.length === 0) return [];
    const deadline = Date.now() + (this.o.waitMs ?? 1_000);
    const covered = () => this.queue.reduce((m, p) => Math.max(m, p.endOffset), 0);
    while (covered() < listed.fence) {
      if (Date.now() > deadline || !this.live) return [];
      await new Promise((r) => setTimeout(r, 1));
    }
    const replaced = new Set<string>();
    /** Databases whose every key may be another now (SWAPDB a b, FLUSHDB); 'all' for FLUSHALL. */
    const dbs = new Set<number | 'all'>();
    for (let i = 0; i < this.queue.length && !dbs.has('all'); i++) {
      if (i > 0 && this.queue[i - 1]!.endOffset >= listed.fence) break;
      for (const e of this.queue[i]!.events) {
        if (e.kind !== EventKind.Command || !REPLACES_KEY.has(e.command)) continue;
        if (e.command === 'SWAPDB') for (const a of e.args.slice(1, 3)) dbs.add(Number(a.toString('latin1')));
        else if (e.command === 'FLUSHDB') dbs.add(e.db);
        else if (e.command === 'FLUSHALL' || e.keys.length === 0) dbs.add('all');
        for (const k of e.keys) replaced.add(`${e.db}\0${k.toString('latin1')}`);
      }
    }
    if (dbs.has('all')) return [];
    return listed.found.filter((c) => !dbs.has(c.db) && !replaced.has(`${c.db}\0${c.key.toString('latin1')}`));
  }

  /**
   * Every consumer of every group of these streams, and the master offset by then (entries up to it ran before the
   * lookup); nothing when the lookup fails (logged, the watch restarts).
   */
  private async list(keys: { db: number; key: Buffer }[]): Promise<{ found: FoundConsumer[]; fence: number }> {
    const none = { found: [], fence: 0 };
    const query = this.query;
    if (!query) return none;
    const seen = new Set<string>();
    const out: FoundConsumer[] = [];
    try {
      for (const { db, key } of keys) {
        const id = `${db}\0${key.toString('latin1')}`;
        if (seen.has(id)) continue;
        seen.add(id);
        this.lookups++;
        const [, groups] = await Promise.all([query.call(['SELECT', db]), query.call(['XINFO', 'GROUPS', key])]);
        if (!Array.isArray(groups)) continue; // the key is gone, or no longer a stream
        const names = groups.map((g) => field(g, 'name')).filter((n): n is Buffer => Buffer.isBuffer(n));
        const lists = await Promise.all(names.map((g) => query.call(['XINFO', 'CONSUMERS', key, g])));
        names.forEach((group, i) => {
          const consumers = lists[i];
          if (!Array.isArray(consumers)) return;
          for (const c of consumers) {
            const consumer = field(c, 'name');
            if (Buffer.isBuffer(consumer)) out.push({ db, key, group, consumer: Buffer.from(consumer) });
          }
        });
      }
      const info = await query.call(['INFO', 'replication']);
      const fence = Number(
        /^master_repl_offset:(\d+)/m.exec(Buffer.isBuffer(info) ? info.toString('latin1') : '')?.[1],
      );
      if (!Number.isSafeInteger(fence)) return none;
      return { found: out, fence };
    } catch (err) {
      this.pause(`cannot list consumers: ${describeError(err)}`);
      return none;
    }
  }

  private stopConnections(): void {
    this.live = false;
    this.sub?.close();
    this.query?.close();
    this.sub = undefined;
    this.query = undefined;
  }

  private pause(reason: string): void {
    const wasLive = this.live;
    this.stopConnections();
    // Intervals will not come now: what waits for one goes as it is.
    for (const p of this.queue) if (p.anchor !== undefined) p.anchor = undefined;
    this.drain(false);
    if (this.closed) return;
    this.o.logger.warn(
      { reason },
      wasLive
        ? 'consumer watch paused: consumers created by group reads that delivered nothing are not recorded until it is back'
        : 'consumer watch unavailable: consumers created by group reads that delivered nothing are not recorded (needs +config|set, +subscribe, +psubscribe, +xinfo and read access to keys; or use --attribution monitor)',
    );
    // A watch that never ran was refused (rights, CONFIG): asking again every 10 s would only fill the ACL log.
    if (!this.everLive) return;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.start(), 10_000);
    this.retry.unref();
  }
}

/** A field of an XINFO reply (flat name/value array, RESP2). */
function field(entry: RespValue, name: string): RespValue | undefined {
  if (!Array.isArray(entry)) return undefined;
  for (let i = 0; i + 1 < entry.length; i += 2) if (String(entry[i]) === name) return entry[i + 1];
  return undefined;
}
