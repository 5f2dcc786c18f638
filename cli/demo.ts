import { Redis } from 'ioredis';
import { formatTsUs } from '../core/time.js';
import type { ApiClient } from './api-client.js';

/** Options of the seed demo. */
export interface DemoOptions {
  api: ApiClient;
  /** The scratch Redis the demo writes to (captured by an agent of the stack). */
  redisUrl: string;
  node: string;
  /** Writes per run. @default 120 */
  writes?: number;
  /** Milliseconds between writes (the seed writes about once a second). @default 1_000; --fast: 20 */
  intervalMs?: number;
  out?: NodeJS.WritableStream;
}

const pad = (n: number) => String(n).padStart(2, '0');
/** `MMDDhhmmss` of a time, as the seed's `date +%m%d%H%M%S`. */
function stamp(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getMonth() + 1)}${pad(d.getDate())}${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/**
 * The seed article's scenario: 120 `HSET userprofile foo<MMDDhhmmss> <0..2>`,
 * then a restore to the moment in the middle into a new instance, through
 * the API, and a look at which fields survived.
 */
export async function runDemo(o: DemoOptions): Promise<{ before: number; after: number; restoredUrl: string }> {
  const { api, redisUrl, node, writes = 120, intervalMs = 1_000, out = process.stdout } = o;
  const say = (s: string) => out.write(`demo: ${s}\n`);
  const r = new Redis(redisUrl);
  try {
    // With --fast the field names still advance one second per write, as in the seed, so they stay distinct.
    const t0 = Date.now();
    const times: number[] = [];
    say(`writing ${writes} HSET userprofile foo<MMDDhhmmss> <0..2> to ${redisUrl}, one every ${intervalMs} ms`);
    for (let i = 0; i < writes; i++) {
      const name = `foo${stamp(intervalMs >= 1_000 ? Date.now() : t0 + i * 1_000)}`;
      await r.hset('userprofile', name, Math.floor(Math.random() * 3));
      times.push(Date.now());
      if (i < writes - 1) await new Promise((res) => setTimeout(res, intervalMs));
    }
    const before = (await r.hkeys('userprofile')).length;
    say(
      `started at ${new Date(t0).toISOString()}, ended at ${new Date(times[times.length - 1]!).toISOString()}; hkeys userprofile | wc -l → ${before}`,
    );
    // "Data risks occurred after the moment in the middle": restore to just after the middle write.
    // Date.now() truncates: the middle write ran before the next whole ms, and the next write comes ≥ intervalMs later.
    const midUs = (times[Math.floor(writes / 2) - 1]! + 1) * 1000;
    const window = await waitForWindow(api, node, midUs);
    say(`restorable window of ${node}: ${formatTsUs(window.fromTsUs)} – ${formatTsUs(window.toTsUs)}`);
    say(`restoring ${node} to ${formatTsUs(midUs)} into a new instance (POST /restores)`);
    const job = await api.createRestore({ node, to: String(midUs), spawn: {} });
    const done = await api.waitForRestore(job.id);
    const url = done.report!.url!;
    // A spawned instance has a generated password (requirepass), given once in the job's first answer once done.
    // The report's URL shows it as ***: that placeholder must not reach AUTH.
    const restored = new Redis(url.replace(':***@', '@'), { password: done.password });
    try {
      const fields = (await restored.hkeys('userprofile')).sort();
      say(`new instance ${url}: hkeys userprofile | wc -l → ${fields.length} (was ${before})`);
      say(`fields that survived: ${fields.slice(0, 3).join(' ')} … ${fields.slice(-3).join(' ')}`);
      if (done.password)
        say(
          `its password (shown once; also in its instance dir's flashback-instance.json, mode 600): ${done.password}; redis-cli -h ${new URL(url).hostname} -p ${new URL(url).port} --askpass`,
        );
      say(`digest ${done.report!.digest}; stop it with: flashback instances stop ID (IDs: flashback instances)`);
      return { before, after: fields.length, restoredUrl: url };
    } finally {
      restored.disconnect();
    }
  } finally {
    r.disconnect();
  }
}

async function waitForWindow(
  api: ApiClient,
  node: string,
  tsUs: number,
  timeoutMs = 60_000,
): Promise<{ fromTsUs: number; toTsUs: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ws = await api.windows(node).catch(() => []);
    const w = ws.find((x) => x.fromTsUs <= tsUs && tsUs <= x.toTsUs);
    if (w) return w;
    if (Date.now() > deadline)
      throw new Error(`no window of ${node} covers ${formatTsUs(tsUs)} after ${timeoutMs} ms: is the sink running?`);
    await new Promise((res) => setTimeout(res, 100));
  }
}
