import type { CommandTable } from '../core/command-table.js';
import { EventKind, type FlashbackEvent } from '../core/event.js';
import type { Logger } from '../core/log.js';
import type { RawRedis } from '../core/raw-redis.js';

/**
 * Reads each key's exact state on the source: DUMP and PEXPIRETIME, atomic in one script. Missing key → nil, -2.
 * EVAL_RO would do, but EVAL keeps the probe working on servers where the agent's user lacks @scripting read-only.
 */
export const STATE_PROBE_SCRIPT =
  "local r = {} for i, k in ipairs(KEYS) do r[#r + 1] = redis.call('DUMP', k) r[#r + 1] = redis.call('PEXPIRETIME', k) end return r";

/** Writes whose effect replay cannot reproduce: the tip `nondeterministic_output` (SPOP, XADD, XCLAIM …) plus delivery-time writers. */
const ALWAYS_PROBED = new Set(['XREADGROUP', 'XCLAIM', 'XAUTOCLAIM']);
/** Blocking writes: where the timeout argument is (negative = from the end). */
const BLOCKING_TIMEOUT_AT: Record<string, number> = {
  BLPOP: -1, BRPOP: -1, BZPOPMIN: -1, BZPOPMAX: -1, BLMOVE: -1, BRPOPLPUSH: -1, BLMPOP: 1, BZMPOP: 1,
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

interface Probe {
  db: number;
  keys: Buffer[];
  /** The probe's place in the stream: its placeholder events (one per key), once its line was seen. */
  placeholders: FlashbackEvent[] | undefined;
  reply: (Buffer | number | null)[] | undefined;
  failed: string | undefined;
  sentAt: number;
}

interface Blocked {
  db: number;
  keys: Buffer[];
  /** Server time (µs) after which the client has timed out; Infinity for timeout 0. */
  untilUs: number;
}

/**
 * Makes nondeterministic and served-later effects exact by capturing state.
 *
 * Replay cannot reproduce SPOP's choice, XADD `*`'s id, XREADGROUP/XCLAIM's
 * delivery times, nor a pop served to a blocked client by another client's
 * push (MONITOR shows only the BLPOP call, never the serve). For each, the
 * agent reads the touched keys' state — DUMP + PEXPIRETIME in one script on a
 * connection of its own — and the script's own MONITOR line gives that state
 * its exact position: a `state` event per key, replayed as RESTORE … REPLACE
 * ABSTTL (or DEL when the key is gone). Between the effect and the probe,
 * other commands may touch the key; their replay sees a wrong state, so
 * whatever they write is tainted and probed too, and the whole stretch from
 * the first tainting event to the last probe becomes one group (one tx, the
 * time of its last command): no cutoff falls where the replayed state is
 * unknown; a time inside the group resolves to just before it. The stretch is held here, usually for one round trip.
 *
 * Blocked clients: a blocking write (BLPOP …, XREADGROUP BLOCK) marks its
 * client as possibly blocked on its keys until the client's next line or its
 * timeout. A write to such a key may serve it right after that command, so the
 * keys of the blocked command are probed after it.
 */
export class StateCapture {
  private readonly taints = new Map<string, Taint>();
  private readonly probes: Probe[] = [];
  private held: FlashbackEvent[] = [];
  private readonly blocked = new Map<string, Blocked>();
  private probeDb = -1;
  private timer: NodeJS.Timeout | undefined;
  private readonly nondeterministic = new Set<string>(ALWAYS_PROBED);
  /** Clients that may be blocked: the assembler reports their next line (onClientLine). */
  readonly watched = new Set<string>();
  probesSent = 0;
  statesCaptured = 0;
  groups = 0;

  constructor(
    private readonly conn: RawRedis,
    table: CommandTable,
    private readonly out: (events: FlashbackEvent[]) => void,
    /** The state of some keys could not be read: the epoch must end (what follows cannot be proven exact). */
    private readonly onFailure: (reason: string) => void,
    private readonly logger: Logger,
    private readonly timeoutMs = 5_000,
  ) {
    for (const spec of table.commands.values()) if (spec.write && spec.nondeterministic) this.nondeterministic.add(spec.name.toUpperCase());
  }

  /** Events held until their group's state is known. */
  get heldEvents(): number {
    return this.held.length;
  }

  /** A line from a watched client: it is not blocked (any more). */
  onClientLine(client: string): void {
    this.blocked.delete(client);
    this.watched.delete(client);
  }

  /** Events in seq order from the assembler (placeholders of state probes included). */
  process(events: FlashbackEvent[]): void {
    const isState = events[0]?.kind === EventKind.State;
    if (!isState) {
      const fresh = new Map<number, Buffer[]>();
      for (const e of events) this.inspect(e, fresh);
      for (const [db, keys] of fresh) this.probe(db, keys);
    }
    if (this.taints.size === 0 && this.probes.length === 0 && this.held.length === 0) {
      this.out(events);
      return;
    }
    for (const e of events) this.held.push(e);
    if (isState) this.placeholders(events);
    this.settle();
  }

  private inspect(e: FlashbackEvent, fresh: Map<number, Buffer[]>): void {
    if (e.kind !== EventKind.Command && e.kind !== EventKind.Expired && e.kind !== EventKind.Evicted) return;
    const taint = (db: number, key: Buffer) => {
      const id = `${db}:${key.toString('hex')}`;
      const t = this.taints.get(id);
      if (t) t.since = e.seq;
      else this.taints.set(id, { db, key, since: e.seq });
      const list = fresh.get(db) ?? [];
      if (!list.some((k) => k.equals(key))) list.push(key);
      fresh.set(db, list);
    };
    // A write that reads a key whose replayed state is unknown writes unknown state.
    if (this.taints.size > 0) this.spread(e, taint);
    if (e.kind !== EventKind.Command) return;
    const name = e.command;
    if (this.nondeterministic.has(name) && (name !== 'XADD' || autoId(e.args))) for (const k of e.keys) taint(e.db, k);
    if (this.blocked.size > 0 && e.replay.length > 0) {
      // Where this write may put data: its keys in its db; MOVE/COPY … DB also in the other db; SWAPDB both whole dbs.
      const target = targetDb(e);
      const swap = name === 'SWAPDB' ? [Number(e.args[1]?.toString('latin1')), Number(e.args[2]?.toString('latin1'))] : undefined;
      for (const [client, b] of this.blocked) {
        if (b.untilUs < e.tsUs) {
          this.blocked.delete(client);
          this.watched.delete(client);
          continue;
        }
        if (client === e.client) continue;
        const hit = swap
          ? swap.includes(b.db)
          : (b.db === e.db || b.db === target) && e.keys.some((k) => b.keys.some((x) => x.equals(k)));
        // The serve, if any, runs right after this command: probe every key the blocked command may change.
        if (hit) for (const k of b.keys) taint(b.db, k);
      }
    }
    const timeoutAt = BLOCKING_TIMEOUT_AT[name];
    const blocking = timeoutAt !== undefined || (name === 'XREADGROUP' && blockMs(e.args) !== undefined);
    // Inside MULTI or a script a blocking command never blocks.
    if (blocking && e.tx === 0 && e.client !== 'lua') {
      const seconds = timeoutAt !== undefined ? Number(e.args[timeoutAt < 0 ? e.args.length + timeoutAt : timeoutAt]?.toString('latin1')) : blockMs(e.args)! / 1000;
      const untilUs = !Number.isFinite(seconds) || seconds <= 0 ? Infinity : e.tsUs + seconds * 1_000_000 + 1_000_000;
      this.blocked.set(e.client, { db: e.db, keys: e.keys, untilUs });
      this.watched.add(e.client);
    }
  }

  /** Taints what a write derives from tainted keys (all its keys, and where MOVE/COPY … DB/SWAPDB put them). */
  private spread(e: FlashbackEvent, taint: (db: number, key: Buffer) => void): void {
    if (e.replay.length === 0) return;
    const name = e.command;
    if (e.keys.length === 0) {
      // FLUSHALL/FLUSHDB/SWAPDB name no keys: probe every tainted key again (and where SWAPDB moved it).
      const swap = name === 'SWAPDB' ? [Number(e.args[1]?.toString('latin1')), Number(e.args[2]?.toString('latin1'))] : undefined;
      for (const t of [...this.taints.values()]) {
        taint(t.db, t.key);
        if (swap && t.db === swap[0]) taint(swap[1]!, t.key);
        if (swap && t.db === swap[1]) taint(swap[0]!, t.key);
      }
      return;
    }
    const hit = e.keys.some((k) => this.taints.has(`${e.db}:${k.toString('hex')}`));
    if (!hit) return;
    for (const k of e.keys) taint(e.db, k);
    const target = targetDb(e);
    if (target !== undefined) for (const k of e.keys) taint(target, k);
  }

  private probe(db: number, keys: Buffer[]): void {
    const p: Probe = { db, keys, placeholders: undefined, reply: undefined, failed: undefined, sentAt: Date.now() };
    this.probes.push(p);
    this.probesSent++;
    if (this.probeDb !== db) {
      this.probeDb = db;
      this.conn.call(['SELECT', db]).catch(() => undefined);
    }
    this.conn.call(['EVAL', STATE_PROBE_SCRIPT, keys.length, ...keys]).then(
      (r) => {
        if (Array.isArray(r) && r.length === keys.length * 2) p.reply = r as (Buffer | number | null)[];
        else p.failed = `unexpected reply ${String((r as { message?: string })?.message ?? r).slice(0, 200)}`;
        this.settle();
      },
      (err: Error) => {
        p.failed = err.message;
        this.settle();
      },
    );
    this.timer ??= setTimeout(() => this.expire(), this.timeoutMs);
  }

  /** Held events up to the last point where no key's replayed state was unknown. */
  private cleanUpTo = 0;

  /** The probe script's line arrived: the assembler allocated one state event per key at its position. */
  private placeholders(events: FlashbackEvent[]): void {
    const p = this.probes.find((x) => x.placeholders === undefined);
    if (!p || p.keys.length !== events.length || !p.keys.every((k, i) => k.equals(events[i]!.keys[0]!))) {
      this.fail('a state probe line did not match the probe sent');
      return;
    }
    p.placeholders = events;
    for (const e of events) {
      const id = `${e.db}:${e.keys[0]!.toString('hex')}`;
      const t = this.taints.get(id);
      // State read after the last tainting event is exact from here on.
      if (t && t.since < e.seq) this.taints.delete(id);
    }
    // Every replayed state is known again here: the stretch up to this point can close (once its states arrive).
    if (this.taints.size === 0) this.cleanUpTo = this.held.length;
  }

  private settle(): void {
    while (this.probes.length > 0) {
      const p = this.probes[0]!;
      if (p.failed !== undefined) {
        this.fail(`reading the state of ${p.keys.length} key(s) failed: ${p.failed}`);
        return;
      }
      if (!p.placeholders || !p.reply) break;
      this.probes.shift();
      p.placeholders.forEach((e, i) => {
        const dump = p.reply![2 * i];
        const at = Number(p.reply![2 * i + 1]);
        e.replay = Buffer.isBuffer(dump) ? [RESTORE, e.keys[0]!, at > 0 ? Buffer.from(String(at)) : ZERO, dump, REPLACE, ABSTTL] : [DEL, e.keys[0]!];
        this.statesCaptured++;
      });
    }
    if (this.taints.size === 0 && this.probes.length === 0) {
      this.release(this.held.length);
    } else if (this.cleanUpTo > 0) {
      // A probe still unanswered may have its line inside the clean stretch: then the stretch waits for it.
      const next = this.probes[0]?.placeholders?.[0];
      if (!next || next.seq > this.held[this.cleanUpTo - 1]!.seq) this.release(this.cleanUpTo);
    }
    clearTimeout(this.timer);
    this.timer = this.probes.length > 0 ? setTimeout(() => this.expire(), Math.max(0, this.probes[0]!.sentAt + this.timeoutMs - Date.now())) : undefined;
  }

  /** Emits the first `n` held events as one group: one tx (its first seq), the time of its last event. */
  private release(n: number): void {
    const group = n === this.held.length ? this.held : this.held.slice(0, n);
    this.held = n === this.held.length ? [] : this.held.slice(n);
    this.cleanUpTo = 0;
    if (group.length === 0) return;
    const first = group[0]!.seq;
    // The commit time is the last command's, not the probe's: the probe runs a round trip later than what it reads.
    let tsUs = group[group.length - 1]!.tsUs;
    for (let i = group.length - 1; i >= 0; i--) {
      if (group[i]!.kind !== EventKind.State) {
        tsUs = group[i]!.tsUs;
        break;
      }
    }
    for (const e of group) {
      // A baseline marker keeps its own place: its RDB is the true state there.
      if (e.kind === EventKind.Baseline) continue;
      e.tx = first;
      e.tsUs = tsUs;
    }
    this.groups++;
    this.out(group);
  }

  private expire(): void {
    this.timer = undefined;
    if (this.probes.length > 0) this.fail(`the state of ${this.probes[0]!.keys.length} key(s) was not read within ${this.timeoutMs} ms`);
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
    if (this.probes.length > 0 || this.taints.size > 0) this.logger.warn({ keys: this.taints.size, probes: this.probes.length }, 'closing with state probes unanswered: the last group lacks their state');
    this.probes.length = 0;
    this.taints.clear();
    this.release(this.held.length);
  }

  /** Resolves when nothing is held (or after the timeout). */
  async drain(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    while (this.held.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }
}

/** XADD's id argument is `*` or `<ms>-*` (after NOMKSTREAM and MAXLEN/MINID [=|~] n [LIMIT c]). */
export function autoId(args: Buffer[]): boolean {
  let i = 2;
  for (;;) {
    const a = args[i]?.toString('latin1').toUpperCase();
    if (a === undefined) return false;
    if (a === 'NOMKSTREAM') i++;
    else if (a === 'MAXLEN' || a === 'MINID') {
      i++;
      const op = args[i]?.toString('latin1');
      if (op === '=' || op === '~') i++;
      i++;
      if (args[i]?.toString('latin1').toUpperCase() === 'LIMIT') i += 2;
    } else return a === '*' || a.endsWith('-*');
  }
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

/** The other db a write puts its keys in: MOVE key db, COPY src dst DB n. */
function targetDb(e: FlashbackEvent): number | undefined {
  if (e.command === 'MOVE') return Number(e.args[2]?.toString('latin1'));
  if (e.command === 'COPY') {
    for (let i = 3; i < e.args.length - 1; i++) if (e.args[i]!.toString('latin1').toUpperCase() === 'DB') return Number(e.args[i + 1]!.toString('latin1'));
  }
  return undefined;
}
