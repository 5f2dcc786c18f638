import type { FlashbackEvent } from '../core/bus/event.js';

/** Matches baseline markers seen in MONITOR with the baselines waiting for them, by marker id. */
export class BaselineMarkers {
  private readonly waiters = new Map<string, (ev: FlashbackEvent) => void>();
  /** Markers that came before anyone waited for them (a fast MONITOR), kept for the waiter that follows. */
  private readonly seen = new Map<string, FlashbackEvent>();

  /** A marker event from the assembler. */
  onMarker(ev: FlashbackEvent): void {
    let markerId = '';
    try {
      markerId = String(JSON.parse(ev.args[2]?.toString('utf8') ?? '{}').markerId ?? '');
    } catch {
      return;
    }
    const waiter = this.waiters.get(markerId);
    if (waiter) waiter(ev);
    else if (this.seen.size < 100) this.seen.set(markerId, ev);
  }

  /**
   * The marker's own event, from the epoch the baseline was taken in: a marker seen by another epoch's MONITOR
   * (the epoch restarted meanwhile) has no position in this one, so that baseline is dropped, never misplaced.
   */
  wait(markerId: string, epoch: number, timeoutMs = 30_000): Promise<FlashbackEvent> {
    const check = (ev: FlashbackEvent): FlashbackEvent => {
      if (ev.epoch !== epoch) {
        throw new Error(
          `the baseline's marker arrived in epoch ${ev.epoch}, not ${epoch}: the epoch ended during the baseline`,
        );
      }
      return ev;
    };
    const seen = this.seen.get(markerId);
    if (seen) {
      this.seen.delete(markerId);
      return Promise.resolve().then(() => check(seen));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(markerId);
        reject(
          new Error(`the baseline's marker did not show in MONITOR within ${timeoutMs} ms (MONITOR reconnected?)`),
        );
      }, timeoutMs);
      this.waiters.set(markerId, (ev) => {
        clearTimeout(timer);
        this.waiters.delete(markerId);
        try {
          resolve(check(ev));
        } catch (err) {
          reject(err);
        }
      });
    });
  }
}
