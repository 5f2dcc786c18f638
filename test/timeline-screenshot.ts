// Makes docs/timeline.png: a real stack, half a minute of writes at a varying rate with a mass DEL, a SET over a hash
// and a FLUSHALL, then the timeline page in headless Chromium. Not a test (it sleeps on purpose, to spread the writes).
// Run: node --import tsx test/timeline-screenshot.ts [out.png]
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { chromium } from 'playwright-core';
import { startApi } from '../api/index.js';
import { startSource, startStack, syncedSource } from './helpers/stack.js';

const out = process.argv[2] ?? 'docs/timeline.png';
const TOKEN = `tok-${randomUUID()}`;
const stack = await startStack();
const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-shot-'));
const api = await startApi({ port: 0, natsUrl: stack.nats.url, clickhouseUrl: stack.clickhouse.url, tokens: [TOKEN] });
const src = await startSource(stack);
const r = new Redis(src.redis.url);
try {
  await src.agent.baseline();
  const started = Date.now();
  const done = new Set<string>();
  for (let tick = 0; Date.now() - started < 30_000; tick++) {
    const second = Math.floor((Date.now() - started) / 1000);
    // A daily-looking curve: busier in the middle, with a burst at 8 s.
    const n = Math.round(20 + 60 * Math.sin((second / 30) * Math.PI) + (second === 8 ? 150 : 0));
    const p = r.pipeline();
    for (let i = 0; i < n; i++) {
      const k = (tick * 31 + i) % 500;
      if (i % 3 === 0) p.hset(`user:${k}`, 'visits', tick);
      else if (i % 3 === 1) p.incr(`counter:${k % 40}`);
      else p.zadd('leaderboard', tick, `player${k}`);
    }
    await p.exec();
    if (second >= 12 && !done.has('del')) await r.del(...Array.from({ length: 50 }, (_, i) => `user:${i}`));
    if (second >= 12) done.add('del');
    if (second >= 17 && !done.has('set')) await r.set('user:300', 'oops');
    if (second >= 17) done.add('set');
    if (second >= 22 && !done.has('flush')) await r.flushall();
    if (second >= 22) done.add('flush');
    await sleep(100);
  }
  await syncedSource(stack, src);

  const browser = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
    viewport: { width: 1280, height: 1060 },
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`${api.url}/`);
  await page.fill('#token-input', TOKEN);
  await page.click('#token-submit');
  await page.locator('#marks tr[data-kind="flush"]').waitFor();
  // The events of the FLUSHALL's moment under the cursor.
  const box = (await page.locator('#chart .u-over').boundingBox())!;
  const rates = await page.evaluate(
    () =>
      (globalThis as unknown as { flashbackTimeline: { rates: { fromUs: number; toUs: number } } }).flashbackTimeline
        .rates,
  );
  const flushUs = Number(await page.locator('#marks tr[data-kind="flush"]').getAttribute('data-ts'));
  const x = box.x + ((flushUs - rates.fromUs) / (rates.toUs - rates.fromUs)) * box.width;
  await page.mouse.move(x, box.y + box.height / 2);
  await page.locator('#cursor-events tbody tr').first().waitFor();
  await page.screenshot({ path: out });
  await browser.close();
  console.log(`wrote ${out}`);
} finally {
  r.disconnect();
  await src.close();
  await api.close();
  await stack.close();
  await rm(dir, { recursive: true, force: true });
}
