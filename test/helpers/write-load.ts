import { Redis } from 'ioredis';

/**
 * Writes pipelines of SET, INCR, HSET and LPUSH+LTRIM to a Redis until stopped; pause() holds it between pipelines and
 * returns the release (a digest taken while held is the source's state at the next marker).
 */
export function writeLoad(url: string) {
  const r = new Redis(url);
  let stopped = false;
  let held: { gate: Promise<void>; release: () => void; holding: () => void } | undefined;
  let i = 0;
  const done = (async () => {
    while (!stopped) {
      if (held) {
        held.holding();
        await held.gate;
        continue;
      }
      const p = r.pipeline();
      for (let j = 0; j < 50; j++, i++) {
        p.set(`k:${i % 500}`, `v${i}`);
        p.incr(`c:${i % 7}`);
        p.hset('h', `f${i % 300}`, String(i));
        if (i % 10 === 0) p.lpush('l', String(i)).ltrim('l', 0, 99);
      }
      await p.exec();
    }
  })();
  const release = () => {
    const h = held;
    held = undefined;
    h?.release();
  };
  return {
    async pause(): Promise<() => void> {
      let holding!: () => void;
      const isHolding = new Promise<void>((res) => (holding = res));
      let open!: () => void;
      const gate = new Promise<void>((res) => (open = res));
      held = { gate, release: open, holding };
      await isHolding;
      return release;
    },
    async stop() {
      stopped = true;
      release();
      await done;
      r.disconnect();
    },
  };
}
