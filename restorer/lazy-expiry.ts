import { decodeCommand, encodeCommand } from '../core/redis/resp.js';
import type { StoredEvent } from '../core/store/event-store.js';
import type { ReplayItem } from './incr-writer.js';

/**
 * Delete the key if its expiry had passed at this instant (ARGV[1], ms): what
 * Redis does when a command touches an expired key (keyIsExpired: now > when).
 * A loading server never does it by itself.
 */
export const LAZY_EXPIRE_SCRIPT =
  "local e = redis.call('PEXPIRETIME', KEYS[1]) if e >= 0 and e < tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end return 0";

interface Held {
  event: StoredEvent;
  guards: Buffer[];
}

/**
 * Puts lazy expirations where the source had them, for histories captured by
 * agents that read notifications on a connection of their own: there the
 * notification arrived after the MONITOR line of the command that triggered
 * it, so history holds `INCR k` before `expired k` (replayed as a guarded
 * EVAL). Agents now read notifications on the MONITOR socket, in server order,
 * and record `expired` as a DEL at its exact position: such events carry no
 * guard script and this reorder passes them through.
 * The restore holds back a window of recent events; when an expiration of k
 * arrives, every held event of that db that mentions k gets a guard before it
 * that deletes k if its expiry had passed at that event's own time. A guard is
 * never wrong to add — it does what the source does to an expired key — so
 * matching by bytes (a value equal to the key name too) costs only time.
 * Each expiration scans the held events (a byte search each): with many
 * expirations per second a restore slows down by that scan.
 */
export class LazyExpiryReorder {
  /** Held events from `head` on: a head index, not Array.shift, which is O(n) on a large array. */
  private held: Held[] = [];
  private head = 0;
  /** Guards added. */
  guards = 0;

  /**
   * @param out where events (and their guards, same db and tx) go, in order
   * @param windowUs how far back an expiration notification may reach. @default 2 s
   * @param maxHeld at most this many events are held, whatever their times (bounds memory and the scan per expiration).
   * @default 20_000
   */
  constructor(
    private readonly out: (item: ReplayItem) => Promise<void>,
    private readonly windowUs = 2_000_000,
    private readonly maxHeld = 20_000,
  ) {}

  async push(event: StoredEvent): Promise<void> {
    if (event.kind === 'expired') this.guardBefore(event);
    this.held.push({ event, guards: [] });
    while (
      this.head < this.held.length &&
      (this.held.length - this.head > this.maxHeld || this.held[this.head]!.event.tsUs < event.tsUs - this.windowUs)
    ) {
      await this.release(this.held[this.head++]!);
    }
    if (this.head > 4_096 && this.head * 2 > this.held.length) {
      this.held = this.held.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * An expiration stored after the cutoff: it may still belong before events that are not (the notification came late).
   */
  lookahead(expired: StoredEvent): void {
    this.guardBefore(expired);
  }

  async end(): Promise<void> {
    for (let i = this.head; i < this.held.length; i++) await this.release(this.held[i]!);
    this.held = [];
    this.head = 0;
  }

  private guardBefore(expired: StoredEvent): void {
    // The agent's expired replay: EVAL <guard> 1 <key> <ms>.
    const key = decodeCommand(expired.resp)[3];
    if (!key || key.length === 0) return;
    for (let i = this.head; i < this.held.length; i++) {
      const h = this.held[i]!;
      const e = h.event;
      if (e.db !== expired.db || e.kind === 'expired' || e.resp.indexOf(key) < 0) continue;
      if (!decodeCommand(e.resp).some((a, i) => i > 0 && a.equals(key))) continue;
      h.guards.push(encodeCommand(['EVAL', LAZY_EXPIRE_SCRIPT, '1', key, String(Math.floor(e.tsUs / 1000))]));
      this.guards++;
    }
  }

  private async release(h: Held): Promise<void> {
    const { event } = h;
    for (const g of h.guards) await this.out({ seq: event.seq, db: event.db, tx: event.tx, resp: g });
    await this.out(event);
  }
}
