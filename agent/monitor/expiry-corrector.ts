import type { FlashbackEvent } from '../../core/bus/event.js';
import type { UncertainExpiry } from './event-assembler.js';
import type { Logger } from '../../core/log.js';
import type { MonitorLine } from '../../core/redis/monitor-line.js';
import type { RawRedis } from '../../core/redis/raw-redis.js';

interface Probe {
  event: FlashbackEvent;
  /** Index in event.replay of the computed absolute expiry (ms, decimal text). */
  at: number;
  /** The true expiry lies in [computedMs − slackMs, computedMs]. */
  slackMs: number;
  computedMs: number;
  db: number;
  key: Buffer;
  /** A later event touched the key before the probe's own MONITOR line: the answer may not be this command's. */
  tainted: boolean;
  lineSeen: boolean;
  reply: number | undefined;
  timer: NodeJS.Timeout;
}

/** Options of an {@link ExpiryCorrector}. */
export interface ExpiryCorrectorOptions {
  /** The agent's own connection for the PEXPIRETIME probes. */
  conn: RawRedis;
  /** The events whose expiry may be late, noted by the assembler (shared with it). */
  uncertain: WeakMap<FlashbackEvent, UncertainExpiry>;
  /** Receives the events, each once its expiry is settled. */
  out: (events: FlashbackEvent[]) => void;
  logger: Logger;
  /** How long the source may take to answer a probe before the expiry is left as computed, ms. @default 2_000 */
  timeoutMs?: number;
}

/**
 * Makes relative expiries exact. MONITOR stamps a line a few µs after its
 * command ran, so `floor(ts/1000) + ttl` is 1 ms late when a millisecond
 * boundary fell in between (0.1–0.2 % of SET EX under load; nearly every one
 * on an idle server, where the previous line is far back) — more when the
 * server was slow between the previous line and this one (a loaded machine:
 * 2 ms seen). The answer is accepted anywhere in that span. For those events
 * only, the agent asks the source `PEXPIRETIME key` on a connection of its
 * own and takes the answer when no other event touched the key between the
 * command and the probe's own MONITOR line — the answer is then exactly the
 * expiry that command set. The event is held (not published) until then;
 * other events flow on: seq, not publication order, orders history.
 */
export class ExpiryCorrector {
  private readonly pending: Probe[] = [];
  private probeDb = 0;
  private drained: (() => void)[] = [];
  corrected = 0;
  confirmed = 0;
  uncorrectable = 0;

  private readonly conn: RawRedis;
  private readonly uncertain: WeakMap<FlashbackEvent, UncertainExpiry>;
  private readonly out: (events: FlashbackEvent[]) => void;
  private readonly logger: Logger;
  private readonly timeoutMs: number;

  constructor({ conn, uncertain, out, logger, timeoutMs = 2_000 }: ExpiryCorrectorOptions) {
    this.conn = conn;
    this.uncertain = uncertain;
    this.out = out;
    this.logger = logger;
    this.timeoutMs = timeoutMs;
  }

  /** Events in seq order from the assembler. */
  process(events: FlashbackEvent[]): void {
    let pass: FlashbackEvent[] | undefined;
    for (const e of events) {
      // In order: a later event of the same transaction touches the key before the probe runs, too.
      if (this.pending.length > 0) this.taint(e);
      const u = this.uncertain.get(e);
      if (u === undefined) (pass ??= []).push(e);
      else this.probe(e, u);
    }
    if (pass) this.out(pass.length === events.length ? events : pass);
  }

  private taint(e: FlashbackEvent): void {
    for (const p of this.pending) {
      if (p.lineSeen || p.tainted) continue;
      // FLUSHALL/FLUSHDB/SWAPDB name no keys but change them all.
      if (e.keys.length === 0 && e.replay.length > 0) p.tainted = true;
      else if (e.db === p.db && e.keys.some((k) => k.equals(p.key))) p.tainted = true;
    }
  }

  private probe(event: FlashbackEvent, { at, slackMs }: UncertainExpiry): void {
    const key = event.keys[0];
    const computedMs = Number(event.replay[at]!.toString('latin1'));
    if (!key) {
      this.out([event]);
      return;
    }
    const p: Probe = {
      event,
      at,
      slackMs,
      computedMs,
      db: event.db,
      key,
      tainted: false,
      lineSeen: false,
      reply: undefined,
      timer: setTimeout(() => this.settle(p, 'timeout'), this.timeoutMs),
    };
    this.pending.push(p);
    if (this.probeDb !== event.db) {
      this.probeDb = event.db;
      this.conn.call(['SELECT', event.db]).catch(() => undefined);
    }
    this.conn.call(['PEXPIRETIME', key]).then(
      (r) => {
        p.reply = typeof r === 'number' ? r : -3;
        if (p.lineSeen) this.settle(p, 'answered');
      },
      () => this.settle(p, 'connection'),
    );
  }

  /** An own-client MONITOR line: the probe's PEXPIRETIME closes its taint window. */
  ownLine(line: MonitorLine): void {
    if (line.argv.length !== 2 || line.argv[0]!.toString('latin1').toLowerCase() !== 'pexpiretime') return;
    const p = this.pending.find((x) => !x.lineSeen && x.db === line.db && x.key.equals(line.argv[1]!));
    if (!p) return;
    p.lineSeen = true;
    if (p.reply !== undefined) this.settle(p, 'answered');
  }

  private settle(p: Probe, why: 'answered' | 'timeout' | 'connection'): void {
    const i = this.pending.indexOf(p);
    if (i < 0) return;
    this.pending.splice(i, 1);
    clearTimeout(p.timer);
    const r = p.reply;
    // The true expiry is the computed one or up to slackMs earlier; anything else means the answer is not this
    // command's.
    if (why === 'answered' && !p.tainted && r !== undefined && r <= p.computedMs && r >= p.computedMs - p.slackMs) {
      if (r !== p.computedMs) {
        p.event.replay = p.event.replay.slice();
        p.event.replay[p.at] = Buffer.from(String(r));
        this.corrected++;
      } else this.confirmed++;
    } else {
      this.uncorrectable++;
      if (why !== 'answered')
        this.logger.debug({ seq: p.event.seq, why }, 'expiry left as computed (may be a few ms late)');
    }
    this.out([p.event]);
    if (this.pending.length === 0) for (const d of this.drained.splice(0)) d();
  }

  /** Resolves when no event is held (or after `timeoutMs`). */
  async drain(): Promise<void> {
    if (this.pending.length === 0) return;
    await new Promise<void>((resolve) => this.drained.push(resolve));
  }

  /** Releases every held event as computed (closing, or the epoch ended). */
  release(): void {
    for (const p of [...this.pending]) this.settle(p, 'timeout');
  }
}
