/**
 * Lag samples of the current interval and the percentiles of the last one.
 * Bounded: keeps at most `maxSamples` per interval (reservoir), so a busy
 * stream costs a constant amount of memory.
 */
export class LagTracker {
  private samples: number[] = [];
  private seen = 0;
  p50 = 0;
  p99 = 0;

  /** `onSample` sees every sample (the Prometheus histogram), the reservoir only some. */
  constructor(
    private readonly maxSamples = 10_000,
    private readonly onSample?: (ms: number) => void,
  ) {}

  add(ms: number): void {
    this.onSample?.(ms);
    this.seen++;
    if (this.samples.length < this.maxSamples) this.samples.push(ms);
    else {
      const i = Math.floor(Math.random() * this.seen);
      if (i < this.maxSamples) this.samples[i] = ms;
    }
  }

  /** Closes the interval: computes its percentiles and starts a new one. */
  roll(): void {
    if (this.samples.length === 0) {
      this.p50 = 0;
      this.p99 = 0;
      return;
    }
    const s = this.samples.sort((a, b) => a - b);
    this.p50 = round(s[Math.floor(s.length * 0.5)]!);
    this.p99 = round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!);
    this.samples = [];
    this.seen = 0;
  }
}

function round(ms: number): number {
  return Math.max(0, Math.round(ms * 100) / 100);
}
