import type { FlashbackEvent } from '../../core/bus/event.js';

/**
 * Events held back in seq order, addressed by absolute position (0 = the first event ever pushed), so positions
 * kept elsewhere (a probe's line, a stretch) stay valid while the front is taken. Taking the front is O(taken):
 * under a write rate the agent barely keeps up with, the queue is long and taken from at every probe answer.
 */
export class HeldQueue {
  private buf: FlashbackEvent[] = [];
  /** Absolute position of buf[0]. */
  private bufStart = 0;
  /** Absolute position of the first event still held. */
  start = 0;
  /** Bytes of the held events' args, roughly (see eventBytes). */
  bytes = 0;

  /** Absolute position after the last held event. */
  get end(): number {
    return this.bufStart + this.buf.length;
  }

  get length(): number {
    return this.end - this.start;
  }

  push(e: FlashbackEvent): void {
    this.buf.push(e);
    this.bytes += eventBytes(e);
  }

  at(position: number): FlashbackEvent | undefined {
    return position >= this.start ? this.buf[position - this.bufStart] : undefined;
  }

  get last(): FlashbackEvent | undefined {
    return this.at(this.end - 1);
  }

  /** Position of the held event with this seq (or of the first after it); `end` when it is not there yet. */
  positionOf(seq: number): number {
    let lo = this.start;
    let hi = this.end;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.buf[mid - this.bufStart]!.seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Removes and returns the held events before position `to`. */
  take(to: number): FlashbackEvent[] {
    const out = this.buf.slice(this.start - this.bufStart, to - this.bufStart);
    this.start = to;
    if (this.start === this.end) {
      this.bufStart = this.start;
      this.buf = [];
      this.bytes = 0;
      return out;
    }
    for (const e of out) this.bytes -= eventBytes(e);
    // Drop the taken front now and then, not at every take: copying the rest each time would be quadratic.
    const dead = this.start - this.bufStart;
    if (dead > 4096 && dead > this.buf.length / 2) {
      this.buf = this.buf.slice(dead);
      this.bufStart = this.start;
    }
    return out;
  }
}

/** What a held event costs, roughly: its args and the object around them. */
function eventBytes(e: FlashbackEvent): number {
  let n = 128;
  for (const a of e.args) n += a.length;
  return n;
}
