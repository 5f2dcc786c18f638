/** One self-rewriting progress line on a TTY (events / total, rate, ETA); silent elsewhere. */
export class ProgressLine {
  private readonly started = Date.now();
  private lastDraw = 0;
  private shown = false;

  constructor(
    private readonly enabled: boolean,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  update(phase: string, done: number, total: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 100 && done < total) return;
    this.lastDraw = now;
    const secs = Math.max(0.001, (now - this.started) / 1000);
    const rate = done / secs;
    const eta = rate > 0 && total > done ? Math.ceil((total - done) / rate) : 0;
    const pct = total > 0 ? ` ${((100 * done) / total).toFixed(1)}%` : '';
    this.out.write(
      `\r\x1b[K${phase}: ${done}/${total} events${pct}, ${Math.round(rate)}/s${eta ? `, ETA ${eta}s` : ''}`,
    );
    this.shown = true;
  }

  done(): void {
    if (this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }
}
