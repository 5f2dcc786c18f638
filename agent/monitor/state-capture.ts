import type { CommandTable } from '../../core/redis/command-table.js';
import { EventKind, type FlashbackEvent } from '../../core/bus/event.js';
import type { Logger } from '../../core/log.js';
import type { RawRedis } from '../../core/redis/raw-redis.js';
import { RespError } from '../../core/redis/resp.js';
import { FollowedKeys, swappedDbs, targetDb, type DbKey } from '../../core/redis/key-moves.js';
import { autoIdIndex } from '../../core/redis/xadd.js';
import { HeldQueue } from './held-queue.js';
import { SETTLE_PROBE_SCRIPT, STATE_PROBE_SCRIPT } from './probe-scripts.js';

/**
 * Writes whose effect replay cannot reproduce: the tip `nondeterministic_output` (SPOP, XCLAIM …; XADD only with a
 * generated id) plus delivery-time writers — the group reads, which Redis 7.0 replication also carries only in part
 * (XCLAIM … LASTID without entries-read; nothing for a history read).
 */
const ALWAYS_PROBED = new Set(['XREADGROUP', 'XCLAIM', 'XAUTOCLAIM']);
/** Blocking writes: where the timeout argument is (negative = from the end). */
const BLOCKING_TIMEOUT_AT: Record<string, number> = {
  BLPOP: -1,
  BRPOP: -1,
  BZPOPMIN: -1,
  BZPOPMAX: -1,
  BLMOVE: -1,
  BRPOPLPUSH: -1,
  BLMPOP: 1,
  BZMPOP: 1,
};
const RESTORE = Buffer.from('RESTORE');
const DEL = Buffer.from('DEL');
const REPLACE = Buffer.from('REPLACE');
const ABSTTL = Buffer.from('ABSTTL');
const ZERO = Buffer.from('0');

interface Taint {
  db: number;
  key: Buffer;
  /** Seq of the last event that made the key's replayed state unknown. */
  since: number;
}

/** An XADD with a generated id, waiting for the id the source gave it. */
interface PendingId {
  event: FlashbackEvent;
  /** Index of the id in event.replay. */
  at: number;
  db: number;
  key: Buffer;
}

interface Probe {
  /**
   * `state`: DUMP + PEXPIRETIME script, placed by its placeholder events. `ids`: XRANGE of a stream's entries after the
   * last known id.
   */
  kind: 'state' | 'ids';
  db: number;
  keys: Buffer[];
  sentAt: number;
  /** Position in `held` of the probe's line, once seen. */
  at: number | undefined;
  placeholders: FlashbackEvent[] | undefined;
  /** XADDs this ids probe resolves: those of its key captured before its line. */
  covers: PendingId[] | undefined;
  reply: unknown;
  failed: string | undefined;
  /** A baseline's re-read (SETTLE_PROBE_SCRIPT). */
  settle?: boolean;
}

/** Held events from `from` up to (not including) `to` that must go out as one group: replay inside it is not exact. */
interface Stretch {
  from: number;
  /** Set once every key state the stretch waits for has its probe line (just after those placeholders). */
  to: number | undefined;
}

interface Blocked {
  db: number;
  keys: Buffer[];
  /** Server time (µs) after which the client has timed out; Infinity for timeout 0. */
  untilUs: number;
}

const keyId = (db: number, key: Buffer) => `${db}:${key.toString('hex')}`;

/** Options of a {@link StateCapture}. */
export interface StateCaptureOptions {
  /** The agent's own connection for the probes (DUMP + PEXPIRETIME scripts, stream id reads). */
  conn: RawRedis;
  /** The source server's command table: tells which writes are nondeterministic. */
  table: CommandTable;
  /** Receives the events in seq order, once their group's state is known. */
  out: (events: FlashbackEvent[]) => void;
  /** The state of some keys could not be read: the epoch must end (what follows cannot be proven exact). */
  onFailure: (reason: string) => void;
  logger: Logger;
  /**
   * How long the source may take to answer a probe, ms. (Its line comes as late as the agent lags: that lag has
   * its own guard.) @default 30_000
   */
  timeoutMs?: number;
  /** Bytes of held events (their args) at most. @default 64 MiB: what the agent lets Redis buffer for its MONITOR */
  maxHeldBytes?: number;
}

/**
 * Makes nondeterministic and served-later effects exact by capturing state.
 *
 * Replay cannot reproduce SPOP's choice, XREADGROUP/XCLAIM's delivery times,
 * nor a pop served to a blocked client by another client's push (MONITOR
 * shows only the BLPOP call, never the serve). For each, the agent reads the
 * touched keys' state — DUMP + PEXPIRETIME in one script on a connection of
 * its own — and the script's own MONITOR line gives that state its exact
 * position: a `state` event per key, replayed as RESTORE … REPLACE ABSTTL (or
 * DEL when the key is gone). Between the effect and the probe, other commands
 * may touch the key; their replay sees a wrong state, so whatever they write
 * is tainted and probed too, and the whole stretch from the first tainting
 * event to the point where every state is known again becomes one group (one
 * tx, the time of its last command): no cutoff falls where the replayed state
 * is unknown; a time inside the group resolves to just before it. The stretch
 * is held here, usually for one round trip.
 *
 * XADD with a generated id (`*`, `<ms>-*`) is the common stream write, and a
 * DUMP per XADD would cost the stream's size each time. Its only unknown is
 * the id: the agent reads, in one MULTI, the stream's counter of entries ever
 * added and every entry after the last id it knows (XINFO STREAM, XRANGE key
 * (id +): as many as were added, however far the agent lags. When the counter
 * moved by exactly the number of XADDs captured since the last known point
 * (none failed) and those entries are exactly them (same order, fields and
 * values), each id is written into its event's replay. The first XADD of a
 * stream in an epoch, anything else on that stream meanwhile, or a mismatch
 * falls back to the state (which also tells the counter and the last id).
 *
 * Blocked clients: a blocking write (BLPOP …, XREADGROUP BLOCK) marks its
 * client as possibly blocked on its keys until the client's next line or its
 * timeout. A write that may put data there (its keys; MOVE/COPY … DB into
 * that db; SWAPDB) may serve it right after that command, so the keys of the
 * blocked command are probed after it.
 */
export class StateCapture {
  private readonly taints = new Map<string, Taint>();
  /** XADDs waiting for their id, by key, not yet covered by an ids probe's line. */
  private readonly uncovered = new Map<string, PendingId[]>();
  /** A stream's count of entries ever added and its last id, at the last point its state or ids were known. */
  private readonly known = new Map<string, { added: number; lastId: Buffer }>();
  private readonly probes: Probe[] = [];
  private readonly held = new HeldQueue();
  /** Stretches of `held` whose replay is not exact until their states are in; in order, never overlapping. */
  private stretches: Stretch[] = [];
  private readonly blocked = new Map<string, Blocked>();
  private probeDb = -1;
  private timer: NodeJS.Timeout | undefined;
  private readonly nondeterministic = new Set<string>(ALWAYS_PROBED);
  /** Clients that may be blocked: the assembler reports their next line (onClientLine). */
  readonly watched = new Set<string>();
  probesSent = 0;
  statesCaptured = 0;
  idsResolved = 0;

  private readonly conn: RawRedis;
  private readonly out: (events: FlashbackEvent[]) => void;
  private readonly onFailure: (reason: string) => void;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly maxHeldBytes: number;

  constructor(options: StateCaptureOptions) {
    const { conn, table, out, onFailure, logger, timeoutMs = 30_000, maxHeldBytes = 64 * 1024 * 1024 } = options;
    this.conn = conn;
    this.out = out;
    this.onFailure = onFailure;
    this.logger = logger;
    this.timeoutMs = timeoutMs;
    this.maxHeldBytes = maxHeldBytes;
    for (const spec of table.commands.values())
      if (spec.write && spec.nondeterministic) this.nondeterministic.add(spec.name.toUpperCase());
    this.special = new Set([...this.nondeterministic, 'XADD', 'STATE', 'SETTLE', ...Object.keys(BLOCKING_TIMEOUT_AT)]);
  }

  /**
   * Commands that may start a probe (or are a probe's placeholder): any other event passes straight on when nothing is
   * pending.
   */
  private readonly special: Set<string>;

  /** Events held until their group's state is known. */
  get heldEvents(): number {
    return this.held.length;
  }

  private get idle(): boolean {
    return this.taints.size === 0 && this.uncovered.size === 0 && this.probes.length === 0;
  }

  /** A line from a watched client: it is not blocked (any more). */
  onClientLine(client: string): void {
    if (this.blocked.has(client))
      this.logger.debug({ client }, 'a line from a client that may have been blocked: it is not');
    this.blocked.delete(client);
    this.watched.delete(client);
  }

  /** Events in seq order from the assembler (placeholders of state probes included). */
  process(events: FlashbackEvent[]): void {
    // The common case, once per event at full write rate: nothing pending and no command that needs a probe.
    // (Noting group reads for a baseline needs no look at other events until one was noted: group reads are special.)
    if (
      this.held.length === 0 &&
      this.blocked.size === 0 &&
      this.idle &&
      !this.tracked?.size &&
      !events.some((e) => this.special.has(e.command))
    ) {
      this.out(events);
      return;
    }
    const isState = events[0]?.kind === EventKind.State;
    const at = this.held.end;
    if (!isState) {
      const fresh = new Map<number, Buffer[]>();
      const ids = new Map<string, PendingId>();
      this.batchAt = at;
      for (const e of events) this.inspect(e, fresh, ids);
      for (const [db, keys] of fresh) {
        // One state probe in flight per key: its line, wherever it lands, reads every change made before it.
        const todo = keys.filter(
          (k) =>
            !this.probes.some(
              (x) => x.kind === 'state' && x.at === undefined && x.db === db && x.keys.some((y) => y.equals(k)),
            ),
        );
        if (todo.length > 0) this.probe('state', db, todo);
      }
      // One ids probe in flight per stream: its line covers every XADD captured until then.
      for (const [id, p] of ids)
        if (!this.probes.some((x) => x.kind === 'ids' && x.at === undefined && keyId(x.db, x.keys[0]!) === id))
          this.probe('ids', p.db, [p.key]);
    }
    if (this.idle && this.held.length === 0) {
      this.out(events);
      return;
    }
    for (const e of events) this.held.push(e);
    if (this.held.bytes > this.maxHeldBytes) {
      this.fail(
        `${this.held.length} events (${this.held.bytes} bytes) held waiting for state (limit ${this.maxHeldBytes} bytes): the agent lags too far behind this write rate`,
      );
    }
    if (isState) this.placeholders(events, at);
    this.settle();
  }

  /**
   * Reads these keys' state now: what the agent has of them is not exact from here on (a baseline's tail carried
   * their consumer groups approximately, core/tail-groups.ts) until the probe's line.
   */
  recapture(keys: readonly DbKey[]): void {
    const byDb = new Map<number, Buffer[]>();
    for (const { db, key } of keys) {
      this.taintKey(db, key, this.held.last?.seq ?? 0, this.held.end);
      byDb.set(db, [...(byDb.get(db) ?? []), key]);
    }
    for (const [db, list] of byDb) this.probe('state', db, list, true);
  }

  private tracked: FollowedKeys | undefined;

  /**
   * From now on, notes the streams group reads touch (a baseline is being taken: its RDB + tail may not hold their
   * effect), and where later writes move them.
   */
  trackGroupReads(): void {
    this.tracked = new FollowedKeys();
  }

  /** The streams group reads touched since trackGroupReads(), where they are now; stops noting them. */
  takeGroupReads(): DbKey[] {
    const out = this.tracked?.list() ?? [];
    this.tracked = undefined;
    return out;
  }

  /** A line of the state connection other than a state script: an ids probe's XRANGE. */
  ownLine(line: { argv: Buffer[] }): void {
    if (line.argv[0]?.toString('latin1').toUpperCase() !== 'XRANGE') return;
    const p = this.probes.find((x) => x.at === undefined);
    if (!p || p.kind !== 'ids' || !p.keys[0]!.equals(line.argv[1]!)) {
      this.fail('an ids probe line did not match the probe sent');
      return;
    }
    p.at = this.held.end;
    const id = keyId(p.db, p.keys[0]!);
    p.covers = this.uncovered.get(id) ?? [];
    this.uncovered.delete(id);
    this.settle();
  }

  /** Where in `held` the batch being inspected starts (a tx is never split: a stretch opens at its first event). */
  private batchAt = 0;

  /**
   * Makes a key's replayed state unknown from event `seq` on: its state will be read. XADDs of it still waiting for
   * their ids are moot (the state holds them, and the counter), so the stretch starts at the first of them.
   */
  private taintKey(db: number, key: Buffer, seq: number, from: number): void {
    const id = keyId(db, key);
    const t = this.taints.get(id);
    if (t) t.since = Math.max(t.since, seq);
    else this.taints.set(id, { db, key, since: seq });
    const waiting = this.uncovered.get(id);
    if (waiting) from = Math.min(from, this.held.positionOf(waiting[0]!.event.seq));
    this.uncovered.delete(id);
    this.known.delete(id);
    this.openStretch(from);
  }

  /** A stretch from `from` on, merged with any stretch it overlaps. */
  private openStretch(from: number): void {
    let last = this.stretches[this.stretches.length - 1];
    if (last && last.to === undefined && last.from <= from) return;
    while (last && (last.to === undefined || last.to > from)) {
      from = Math.min(from, last.from);
      this.stretches.pop();
      last = this.stretches[this.stretches.length - 1];
    }
    this.stretches.push({ from, to: undefined });
  }

  private inspect(e: FlashbackEvent, fresh: Map<number, Buffer[]>, ids: Map<string, PendingId>): void {
    if (e.kind !== EventKind.Command && e.kind !== EventKind.Expired && e.kind !== EventKind.Evicted) return;
    const taint = (db: number, key: Buffer) => {
      const id = keyId(db, key);
      this.taintKey(db, key, e.seq, this.batchAt);
      ids.delete(id);
      const list = fresh.get(db) ?? [];
      if (!list.some((k) => k.equals(key))) list.push(key);
      fresh.set(db, list);
    };
    const name = e.command;
    if (this.tracked) {
      if (ALWAYS_PROBED.has(name)) for (const key of e.keys) this.tracked.add(e.db, key);
      else this.tracked.follow(e.db, e.args);
    }
    const idAt = name === 'XADD' && e.kind === EventKind.Command ? autoIdIndex(e.replay) : -1;
    // A write that reads a key whose replayed state is unknown writes unknown state.
    if (this.taints.size > 0) this.spread(e, taint);
    // Anything but another generated-id XADD on a stream whose ids are still unknown: read the state instead — of
    // every key the write touches (RENAME/COPY carry the unknown ids on), in every db it puts them in.
    if (idAt < 0 && e.replay.length > 0 && (this.uncovered.size > 0 || this.probes.length > 0)) {
      const pendingIds = (db: number, k: Buffer) =>
        this.uncovered.has(keyId(db, k)) ||
        this.probes.some((p) => p.kind === 'ids' && p.db === db && p.keys[0]!.equals(k) && p.reply === undefined);
      if (e.keys.length === 0) {
        // Streams with ids unknown: still uncovered, or covered by an ids probe whose answer has not come.
        const pending = [...this.uncovered.values()].map((l) => ({ db: l[0]!.db, key: l[0]!.key }));
        for (const p of this.probes)
          if (p.kind === 'ids' && p.reply === undefined && p.failed === undefined)
            pending.push({ db: p.db, key: p.keys[0]! });
        taintWritten(e, pending, taint);
      } else if (e.keys.some((k) => pendingIds(e.db, k))) {
        taintWritten(e, [], taint);
      }
    }
    if (e.kind !== EventKind.Command) return;
    const stream = idAt >= 0 ? e.keys[0] : undefined;
    const id = stream ? keyId(e.db, stream) : '';
    // A stream whose counter and last id are not known yet: its state is read instead (and with it, both).
    if (stream && !this.taints.has(id) && !this.known.has(id)) taint(e.db, stream);
    if (stream && !this.taints.has(id)) {
      const pending: PendingId = { event: e, at: idAt, db: e.db, key: stream };
      const list = this.uncovered.get(id);
      if (list) list.push(pending);
      else this.uncovered.set(id, [pending]);
      ids.set(id, pending);
    } else if (this.nondeterministic.has(name) && name !== 'XADD') {
      for (const k of e.keys) taint(e.db, k);
    }
    if (this.blocked.size > 0 && e.replay.length > 0) {
      for (const [client, b] of this.blocked) {
        if (b.untilUs < e.tsUs) {
          this.blocked.delete(client);
          this.watched.delete(client);
        }
      }
      // Where this write may put data: its keys in its db; MOVE/COPY … DB also in the other db; SWAPDB both whole
      // dbs. A served BLMOVE pushes into its destination, which may serve another blocked client: to a fixpoint.
      const target = targetDb(e.args);
      const swap = swappedDbs(e.args);
      const written: { db: number; key: Buffer }[] = e.keys.map((key) => ({ db: e.db, key }));
      if (target !== undefined) for (const key of e.keys) written.push({ db: target, key });
      const served = new Set<string>();
      let grew = true;
      while (grew) {
        grew = false;
        for (const [client, b] of this.blocked) {
          if (client === e.client || served.has(client)) continue;
          const hit =
            (swap !== undefined && swap.includes(b.db)) ||
            written.some((w) => w.db === b.db && b.keys.some((k) => k.equals(w.key)));
          if (!hit) continue;
          // The serve, if any, runs right after this command: probe every key the blocked command may change.
          this.logger.debug(
            { seq: e.seq, command: name, client, blockedDb: b.db },
            'a write may serve a blocked client: its keys are read',
          );
          served.add(client);
          grew = true;
          for (const k of b.keys) {
            taint(b.db, k);
            written.push({ db: b.db, key: k });
          }
        }
      }
    }
    const timeoutAt = BLOCKING_TIMEOUT_AT[name];
    const blocking = timeoutAt !== undefined || (name === 'XREADGROUP' && blockMs(e.args) !== undefined);
    // Inside MULTI or a script a blocking command never blocks.
    if (blocking && e.tx === 0 && e.client !== 'lua') {
      const seconds =
        timeoutAt !== undefined
          ? Number(e.args[timeoutAt < 0 ? e.args.length + timeoutAt : timeoutAt]?.toString('latin1'))
          : blockMs(e.args)! / 1000;
      const untilUs = !Number.isFinite(seconds) || seconds <= 0 ? Infinity : e.tsUs + seconds * 1_000_000 + 1_000_000;
      this.blocked.set(e.client, { db: e.db, keys: e.keys, untilUs });
      this.watched.add(e.client);
      this.logger.debug(
        { seq: e.seq, command: name, client: e.client, db: e.db, keys: e.keys.length },
        'client may be blocked',
      );
    }
  }

  /** Taints what a write derives from tainted keys. */
  private spread(e: FlashbackEvent, taint: (db: number, key: Buffer) => void): void {
    if (e.replay.length === 0) return;
    // FLUSHALL/FLUSHDB/SWAPDB name no keys: probe every tainted key again.
    if (e.keys.length === 0) taintWritten(e, [...this.taints.values()], taint);
    else if (e.keys.some((k) => this.taints.has(keyId(e.db, k)))) taintWritten(e, [], taint);
  }

  private probe(kind: Probe['kind'], db: number, keys: Buffer[], settle = false): void {
    const p: Probe = {
      kind,
      db,
      keys,
      sentAt: Date.now(),
      at: undefined,
      placeholders: undefined,
      covers: undefined,
      reply: undefined,
      failed: undefined,
      settle,
    };
    this.probes.push(p);
    this.probesSent++;
    if (this.probeDb !== db) {
      this.probeDb = db;
      this.conn.call(['SELECT', db]).catch(() => undefined);
    }
    // An ids probe reads, atomically, the stream's count of entries ever added and every entry after the last id
    // known when it is sent (those of an ids probe still unanswered among them: they are skipped at settle).
    if (kind === 'ids') {
      const from = this.known.get(keyId(db, keys[0]!))?.lastId ?? Buffer.from('0-0');
      this.conn.call(['MULTI']).catch(() => undefined);
      this.conn.call(['XINFO', 'STREAM', keys[0]!]).catch(() => undefined);
      this.conn.call(['XRANGE', keys[0]!, Buffer.concat([Buffer.from('('), from]), '+']).catch(() => undefined);
    }
    this.conn
      .call(
        kind === 'state' ? ['EVAL', settle ? SETTLE_PROBE_SCRIPT : STATE_PROBE_SCRIPT, keys.length, ...keys] : ['EXEC'],
      )
      .then(
        (r) => {
          if (r instanceof RespError) p.failed = r.message;
          else p.reply = r;
          this.settle();
        },
        (err: Error) => {
          p.failed = err.message;
          this.settle();
        },
      );
    this.timer ??= setTimeout(() => this.expire(), this.timeoutMs);
  }

  /** The probe script's line arrived: the assembler allocated one state event per key at its position. */
  private placeholders(events: FlashbackEvent[], at: number): void {
    const p = this.probes.find((x) => x.at === undefined);
    if (
      !p ||
      p.kind !== 'state' ||
      p.keys.length !== events.length ||
      !p.keys.every((k, i) => k.equals(events[i]!.keys[0]!))
    ) {
      this.fail('a state probe line did not match the probe sent');
      return;
    }
    p.at = at;
    p.placeholders = events;
    for (const e of events) {
      const id = keyId(e.db, e.keys[0]!);
      const t = this.taints.get(id);
      // State read after the last tainting event is exact from here on.
      if (t && t.since < e.seq) this.taints.delete(id);
    }
    const open = this.stretches[this.stretches.length - 1];
    if (this.taints.size === 0 && open && open.to === undefined) open.to = this.held.end;
  }

  private settle(): void {
    while (this.probes.length > 0) {
      const p = this.probes[0]!;
      if (p.failed !== undefined && p.kind === 'state') {
        this.fail(`reading the state of ${p.keys.length} key(s) failed: ${p.failed}`);
        return;
      }
      if (p.at === undefined || (p.reply === undefined && p.failed === undefined)) break;
      this.probes.shift();
      if (p.kind === 'state') this.fillStates(p);
      else if (!this.resolveIds(p)) {
        // The XADDs it covers are not exactly the newest entries: read the stream's state after all; from the first
        // of them to that state nothing about the stream is known.
        const first = p.covers?.[0]?.event.seq;
        this.taintKey(
          p.db,
          p.keys[0]!,
          this.held.last?.seq ?? 0,
          first === undefined ? this.held.end : this.held.positionOf(first),
        );
        this.probe('state', p.db, [p.keys[0]!]);
      }
    }
    this.release(this.releasable());

    clearTimeout(this.timer);
    const waiting = this.unanswered();
    this.timer = waiting
      ? setTimeout(() => this.expire(), Math.max(0, waiting.sentAt + this.timeoutMs - Date.now()))
      : undefined;
  }

  private fillStates(p: Probe): void {
    const reply =
      Array.isArray(p.reply) && p.reply.length === p.keys.length * 4
        ? (p.reply as (Buffer | number | null)[])
        : undefined;
    if (!reply) {
      this.fail(`unexpected reply to a state probe: ${String(p.reply).slice(0, 200)}`);
      return;
    }
    p.placeholders!.forEach((e, i) => {
      const dump = reply[4 * i];
      const at = Number(reply[4 * i + 1]);
      const added = Number(reply[4 * i + 2]);
      const lastId = reply[4 * i + 3];
      // Where the next XADD ids are read and checked from: a stream's counter and last id, at this state.
      if (added >= 0 && Buffer.isBuffer(lastId) && lastId.length > 0)
        this.known.set(keyId(e.db, e.keys[0]!), { added, lastId });
      else this.known.delete(keyId(e.db, e.keys[0]!));
      e.replay = Buffer.isBuffer(dump)
        ? [RESTORE, e.keys[0]!, at > 0 ? Buffer.from(String(at)) : ZERO, dump, REPLACE, ABSTTL]
        : [DEL, e.keys[0]!];
      this.statesCaptured++;
    });
  }

  /** Matches the covered XADDs with the entries after the last known id; on success writes each id into its replay. */
  private resolveIds(p: Probe): boolean {
    const covers = p.covers ?? [];
    const id = keyId(p.db, p.keys[0]!);
    const got = idsReply(p.reply);
    const before = this.known.get(id);
    if (!got || !before) return false;
    // Entries an earlier ids probe already matched (it was sent before this one settled) are not this one's.
    let first = 0;
    while (first < got.entries.length && compareIds(entryId(got.entries[first]), before.lastId) <= 0) first++;
    const entries = got.entries.slice(first);
    // Every covered XADD added an entry (none failed, none trimmed or deleted since) only if the stream's counter
    // moved by exactly their number and they are exactly the entries after the last known id, in order.
    if (got.added - before.added !== covers.length || entries.length !== covers.length) return false;
    const ids: Buffer[] = [];
    for (let i = 0; i < covers.length; i++) {
      const entry = entries[i] as unknown;
      if (!Array.isArray(entry) || !Buffer.isBuffer(entry[0]) || !Array.isArray(entry[1])) return false;
      const fields = entry[1] as unknown[];
      const c = covers[i]!;
      const want = c.event.replay.slice(c.at + 1);
      if (fields.length !== want.length || !fields.every((f, j) => Buffer.isBuffer(f) && f.equals(want[j]!)))
        return false;
      ids.push(entry[0]);
    }
    covers.forEach((c, i) => {
      c.event.replay = c.event.replay.slice();
      c.event.replay[c.at] = ids[i]!;
      this.idsResolved++;
    });
    if (covers.length > 0) this.known.set(id, { added: got.added, lastId: ids[ids.length - 1]! });
    return true;
  }

  /**
   * How many held events may go: those before the first XADD still waiting for its id, before the placeholders of
   * the first state not yet read, and never into a stretch whose states are not all in.
   */
  private releasable(): number {
    let limit = this.held.end;
    for (const p of this.probes) if (p.kind === 'state' && p.at !== undefined) limit = Math.min(limit, p.at);
    let waiting = Infinity;
    for (const list of this.uncovered.values()) waiting = Math.min(waiting, list[0]!.event.seq);
    for (const p of this.probes)
      if (p.covers && p.covers.length > 0) waiting = Math.min(waiting, p.covers[0]!.event.seq);
    if (waiting !== Infinity) limit = Math.min(limit, this.held.positionOf(waiting));
    for (let i = this.stretches.length - 1; i >= 0; i--) {
      const s = this.stretches[i]!;
      if (s.from < limit && (s.to === undefined || s.to > limit)) limit = s.from;
    }
    return limit;
  }

  /**
   * Emits the held events before position `to`. Each stretch among them is one group: one tx (its first seq), the
   * time of its last command. Events outside stretches keep their own place (an XADD's id is written in place).
   */
  private release(to: number): void {
    const from = this.held.start;
    if (to <= from) return;
    const out = this.held.take(to);
    while (this.stretches.length > 0 && this.stretches[0]!.to !== undefined && this.stretches[0]!.to <= to) {
      const s = this.stretches.shift()!;
      group(out, s.from - from, s.to! - from);
    }
    this.out(out);
  }

  /** The oldest probe the source has not answered yet. */
  private unanswered(): Probe | undefined {
    return this.probes.find((p) => p.reply === undefined && p.failed === undefined);
  }

  private expire(): void {
    this.timer = undefined;
    const p = this.unanswered();
    if (!p) return;
    const late = p.sentAt + this.timeoutMs - Date.now();
    if (late > 0) this.timer = setTimeout(() => this.expire(), late);
    else this.fail(`the source did not answer a probe of ${p.keys.length} key(s) within ${this.timeoutMs} ms`);
  }

  private failed = false;

  private fail(reason: string): void {
    if (this.failed) return;
    this.failed = true;
    this.logger.error({ reason, held: this.held.length }, 'state capture failed: the epoch ends here');
    this.onFailure(reason);
  }

  /**
   * Emits what is held as it is (closing, or the epoch ended): a group whose state was not read is published
   * without it — its events are history all the same — and the log says so.
   */
  releaseAll(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const incomplete = !this.idle;
    if (incomplete)
      this.logger.warn(
        { keys: this.taints.size, probes: this.probes.length, events: this.held.length },
        'closing with probes unanswered: the last events are stored as an unfinished group, outside any restorable window',
      );
    this.probes.length = 0;
    this.taints.clear();
    this.uncovered.clear();
    const group = this.held.take(this.held.end);
    this.stretches = [];
    // One tx that the epoch ends inside: a window never ends inside a tx (core/windows.ts), so none reaches these.
    if (incomplete) for (const e of group) if (e.kind !== EventKind.Baseline) e.tx = group[0]!.seq;
    if (group.length > 0) this.out(group);
  }

  /** Resolves when nothing is held (or after the timeout). */
  async drain(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    while (this.held.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }
}

/** Makes events[from, to) one group: one tx (its first seq), the time of its last command. */
function group(events: FlashbackEvent[], from: number, to: number): void {
  if (to <= from) return;
  const first = events[from]!.seq;
  // The commit time is the last command's, not the probe's: the probe runs a round trip later than what it reads.
  let tsUs = events[to - 1]!.tsUs;
  for (let i = to - 1; i >= from; i--) {
    if (events[i]!.kind !== EventKind.State) {
      tsUs = events[i]!.tsUs;
      break;
    }
  }
  for (let i = from; i < to; i++) {
    const e = events[i]!;
    // A baseline marker keeps its own place: its RDB is the true state there.
    if (e.kind === EventKind.Baseline) continue;
    e.tx = first;
    e.tsUs = tsUs;
  }
}

/** A stream entry's id (`[id, fields]`), or an empty buffer. */
function entryId(entry: unknown): Buffer {
  return Array.isArray(entry) && Buffer.isBuffer(entry[0]) ? entry[0] : Buffer.alloc(0);
}

/** Orders stream ids `ms-seq` numerically. */
function compareIds(a: Buffer, b: Buffer): number {
  const [am, as] = a
    .toString('latin1')
    .split('-')
    .map((x) => BigInt(x || '0'));
  const [bm, bs] = b
    .toString('latin1')
    .split('-')
    .map((x) => BigInt(x || '0'));
  return am! < bm! ? -1 : am! > bm! ? 1 : as! < bs! ? -1 : as! > bs! ? 1 : 0;
}

/** An ids probe's EXEC reply: XINFO STREAM's entries-added and XRANGE's entries. */
function idsReply(reply: unknown): { added: number; entries: unknown[] } | undefined {
  if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[0]) || !Array.isArray(reply[1]))
    return undefined;
  const info = reply[0] as unknown[];
  for (let i = 0; i + 1 < info.length; i += 2) {
    if (Buffer.isBuffer(info[i]) && (info[i] as Buffer).toString('latin1') === 'entries-added')
      return { added: Number(info[i + 1]), entries: reply[1] as unknown[] };
  }
  return undefined;
}

/** XREADGROUP's BLOCK milliseconds, if given. */
function blockMs(args: Buffer[]): number | undefined {
  for (let i = 1; i < args.length - 1; i++) {
    const a = args[i]!.toString('latin1').toUpperCase();
    if (a === 'STREAMS') return undefined;
    if (a === 'BLOCK') return Number(args[i + 1]!.toString('latin1'));
  }
  return undefined;
}

/**
 * Taints what a write that touched unknown state may have written: every key it names, in its db and where
 * MOVE/COPY … DB put them; for a write that names no keys (FLUSHALL/FLUSHDB/SWAPDB), the given `unknown` keys
 * and where SWAPDB moved them.
 */
function taintWritten(
  e: FlashbackEvent,
  unknown: readonly { db: number; key: Buffer }[],
  taint: (db: number, key: Buffer) => void,
): void {
  if (e.keys.length === 0) {
    const swap = swappedDbs(e.args);
    for (const { db, key } of unknown) {
      taint(db, key);
      if (swap && db === swap[0]) taint(swap[1], key);
      if (swap && db === swap[1]) taint(swap[0], key);
    }
    return;
  }
  for (const k of e.keys) taint(e.db, k);
  const target = targetDb(e.args);
  if (target !== undefined) for (const k of e.keys) taint(target, k);
}
