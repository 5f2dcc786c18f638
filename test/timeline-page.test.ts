// The timeline page in headless Chromium over a real stack with a short captured history: the token prompt refuses a
// wrong token, the chart's counts match the history, a FLUSHALL is marked, "restore before" on it gives an instance
// that still holds the data, a key's value after an event comes from a scratch restore, /docs renders the reference.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startApi, type Api } from '../api/index.js';
import { newJobKeyText, parseJobKey } from '../core/bus/job-secret.js';
import { sqlString } from '../core/store/sql-literal.js';
import { startRestorer, type Restorer } from '../restorer/index.js';
import { startSource, startStack, syncedSource, waitFor, type Source, type Stack } from './helpers/stack.js';

const TOKEN = `tok-${randomUUID()}`;
const READ_TOKEN = `read-${randomUUID()}`;
/** Shared by the API and the restorer: the restored instance's password reaches the page sealed. */
const jobKey = parseJobKey(newJobKeyText());
const SCREENSHOT = process.env.FLASHBACK_SCREENSHOT; // e.g. docs/timeline.png: where to save a picture of the page
let stack: Stack;
let api: Api;
let restorer: Restorer;
let src: Source;
let dir: string;
let browser: BrowserContext;
let page: Page;

const authed = (p: string, init: RequestInit = {}) =>
  fetch(`${api.url}${p}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...init.headers } });

before(async () => {
  stack = await startStack();
  dir = await mkdtemp(path.join(os.tmpdir(), 'fb-timeline-page-'));
  api = await startApi({
    port: 0,
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    tokens: [TOKEN, `read:${READ_TOKEN}`],
    jobKey,
  });
  restorer = await startRestorer({
    natsUrl: stack.nats.url,
    clickhouseUrl: stack.clickhouse.url,
    instancesDir: path.join(dir, 'instances'),
    closeTimeoutMs: 1_000,
    jobKey,
  });
  src = await startSource(stack);
  browser = await chromium.launchPersistentContext(path.join(dir, 'chromium-profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
});

after(async () => {
  // Instances the restores spawned: stopped through the API, as an operator would.
  if (api) {
    const res = await authed('/instances').catch(() => undefined);
    const list = res?.ok ? ((await res.json()) as { instances: { id: string }[] }).instances : [];
    for (const i of list) await authed(`/instances/${i.id}`, { method: 'DELETE' }).catch(() => undefined);
  }
  await browser?.close();
  await src?.close();
  await restorer?.close();
  await api?.close();
  await stack?.close();
  await rm(dir, { recursive: true, force: true });
});

test("the page's sources type-check (they are bundled, not compiled, so tsc -p tsconfig.json does not see them)", async () => {
  const tsc = path.join(process.cwd(), 'node_modules', '.bin', 'tsc');
  await promisify(execFile)(tsc, ['--noEmit', '-p', 'web/tsconfig.json']);
});

test('pages and assets answer without a token, with a CSP; the data routes do not', async () => {
  for (const p of [
    '/',
    '/ui/timeline.js',
    '/ui/timeline.css',
    '/docs',
    '/docs/assets/swagger-ui-dist/swagger-ui-bundle.js',
  ]) {
    const res = await fetch(`${api.url}${p}`);
    assert.equal(res.status, 200, p);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/, p);
    await res.arrayBuffer();
  }
  assert.equal((await fetch(`${api.url}/ui/nope.js`)).status, 404);
  assert.equal((await fetch(`${api.url}/docs/assets/swagger-ui-dist/package.json`)).status, 404);
  for (const p of ['/timeline/rates?from=1&to=2', '/timeline/marks?from=1&to=2', '/timeline/nodes/x/spans'])
    assert.equal((await fetch(`${api.url}${p}`)).status, 401, p);
  const asReader = await fetch(`${api.url}/timeline/values`, {
    method: 'POST',
    headers: { authorization: `Bearer ${READ_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ node: 'n', epoch: 1, seq: 1, key: 'k' }),
  });
  assert.equal(asReader.status, 403, 'a value lookup runs a restore: restore scope');
  const readerRates = await fetch(`${api.url}/timeline/rates?from=1&to=2`, {
    headers: { authorization: `Bearer ${READ_TOKEN}` },
  });
  assert.equal(readerRates.status, 200, 'the chart needs only read scope');
  await readerRates.arrayBuffer();
  const errorOf = async (res: Response) => [res.status, ((await res.json()) as { error: { code: string } }).error.code];
  assert.deepEqual(await errorOf(await authed('/timeline/rates?from=yesterday&to=2')), [400, 'BAD_TIME']);
  assert.deepEqual(await errorOf(await authed('/timeline/rates?from=2000000000&to=1000000000')), [400, 'BAD_INPUT']);
  assert.deepEqual(await errorOf(await authed('/timeline/marks?from=1&to=2&manyKeys=1')), [400, 'BAD_INPUT']);
  assert.deepEqual(await errorOf(await authed('/timeline/values/not-a-lookup')), [404, 'NOT_FOUND']);
  const doc = (await (await authed('/openapi.json')).json()) as { paths: Record<string, unknown> };
  for (const p of ['/timeline/rates', '/timeline/marks', '/timeline/nodes/{node}/spans', '/timeline/values'])
    assert.ok(doc.paths[p], p);
});

test('token prompt, chart counts, the FLUSHALL marked, restore before it, a key value, /docs', async () => {
  const r = new Redis(src.redis.url);
  let flushSeq: number;
  try {
    await src.agent.baseline();
    for (let i = 1; i <= 20; i++) await r.hset('userprofile', `field${i}`, `v${i}`);
    await r.set(Buffer.from('bin\x00key'), Buffer.from([0, 0xff]));
    await r.flushall();
    for (let i = 1; i <= 5; i++) await r.set(`after${i}`, i);
    await syncedSource(stack, src);
    const rows = await stack.store.query<{ seq: number }>(
      `SELECT seq FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'FLUSHALL'`,
    );
    flushSeq = Number(rows[0]!.seq);
  } finally {
    r.disconnect();
  }

  await page.goto(`${api.url}/`);
  // A wrong token is refused and asked again; the right one opens the page and stays out of the URL.
  await page.locator('#token-dialog').waitFor({ state: 'visible' });
  await page.fill('#token-input', 'not-the-token');
  await page.click('#token-submit');
  await page.locator('#token-error').filter({ hasText: 'refused' }).waitFor();
  assert.equal(await page.locator('#app').isHidden(), true);
  await page.fill('#token-input', TOKEN);
  await page.click('#token-submit');
  await page.locator('#app').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('flashback-token')), TOKEN);
  assert.ok(!page.url().includes(TOKEN));

  // The chart: every write of the node in its buckets, as the history has them.
  await page.waitForFunction(
    (node) =>
      (
        globalThis as unknown as { flashbackTimeline?: { rates?: { nodes: { node: string }[] } } }
      ).flashbackTimeline?.rates?.nodes.some((n) => n.node === node),
    src.node,
  );
  const shown = await page.evaluate(
    () =>
      (
        globalThis as unknown as {
          flashbackTimeline: {
            rates: { fromUs: number; bucketUs: number; nodes: { node: string; counts: number[] }[] };
          };
        }
      ).flashbackTimeline.rates,
  );
  const events = await stack.store.query<{ ts_us: number; command: string }>(
    `SELECT ts_us, command FROM flashback.events WHERE node = ${sqlString(src.node)} AND kind = 'command' ORDER BY seq`,
  );
  // 20 HSET, 1 SET, FLUSHALL, 5 SET, and the DEL marker of syncedSource.
  assert.deepEqual(
    events.map((e) => e.command),
    [...Array(20).fill('HSET'), 'SET', 'FLUSHALL', ...Array(5).fill('SET'), 'DEL'],
  );
  const expected: number[] = [];
  for (const e of events) {
    const b = Math.floor((Number(e.ts_us) - shown.fromUs) / shown.bucketUs);
    expected[b] = (expected[b] ?? 0) + 1;
  }
  const counts = shown.nodes.find((n) => n.node === src.node)!.counts;
  assert.deepEqual(
    counts.flatMap((n, i) => (n > 0 ? [[i, n]] : [])),
    expected.flatMap((n, i) => (n ? [[i, n]] : [])),
  );
  assert.equal(await page.locator(`#totals [data-node="${src.node}"]`).getAttribute('data-writes'), '28');
  // Zoomed out to whole-second buckets, the counts come from the per-second table: the same 28 writes.
  const coarse = (await (
    await authed(`/timeline/rates?from=${shown.fromUs - 60e6}&to=${shown.fromUs + 60e6}&buckets=10&node=${src.node}`)
  ).json()) as { bucketUs: number; nodes: { counts: number[] }[] };
  assert.ok(coarse.bucketUs >= 1e6);
  assert.equal(
    coarse.nodes[0]!.counts.reduce((a, b) => a + b, 0),
    28,
  );

  // The FLUSHALL is marked, with who did it.
  const mark = page.locator(`#marks tr[data-kind="flush"][data-seq="${flushSeq}"]`);
  await mark.waitFor();
  assert.match(await mark.innerText(), /FLUSHALL/);
  assert.match(await mark.innerText(), /127\.0\.0\.1:\d+/);
  if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: false });

  // Restore to just before it: confirmation, progress, then the URL and a redis-cli line.
  await mark.locator('button.restore').click();
  await page.locator('#restore-dialog').waitFor({ state: 'visible' });
  assert.match(await page.locator('#restore-what').innerText(), new RegExp(`seq ${flushSeq}`));
  await page.click('#restore-confirm');
  await page.locator('#restore-result').waitFor({ state: 'visible', timeout: 90_000 });
  const url = await page.locator('#restore-url').innerText();
  const cli = await page.locator('#restore-cli').innerText();
  const u = new URL(url);
  assert.equal(u.password, '***', 'the page shows the URL without its password');
  assert.equal(cli, `redis-cli -h ${u.hostname} -p ${u.port} -n 0 --askpass`);
  const password = await page.locator('#restore-password').inputValue();
  assert.match(password, /^[0-9a-f]{48}$/, 'the generated password, shown once');
  const restored = new Redis({ host: u.hostname, port: Number(u.port), password });
  try {
    assert.equal(await restored.hlen('userprofile'), 20);
    assert.equal(await restored.hget('userprofile', 'field20'), 'v20');
    assert.deepEqual(await restored.getBuffer(Buffer.from('bin\x00key')), Buffer.from([0, 0xff]));
    assert.equal(await restored.exists('after1'), 0);
  } finally {
    restored.disconnect();
  }
  await page.click('#restore-close');
  assert.equal(
    await page.locator('#restore-password').inputValue(),
    '',
    'the password leaves the page with the dialog',
  );

  // A key's history, and its value right after the 10th HSET (a scratch restore of that key alone).
  await page.fill('#key-input', 'userprofile');
  await page.click('#key-form button');
  const rowsShown = page.locator('#key-history tbody tr');
  await waitFor('the key history', async () => ((await rowsShown.count()) === 20 ? true : undefined));
  const tenth = rowsShown.nth(10); // newest first: row 10 is the 10th HSET
  assert.match(await tenth.innerText(), /field10/);
  await tenth.locator('button.value').click();
  await page.locator('#key-value .value').waitFor({ timeout: 90_000 });
  const valueText = await page.locator('#key-value').innerText();
  assert.match(valueText, /hash, 10 items/);
  assert.match(valueText, /field10/);
  assert.doesNotMatch(valueText, /field11/);
  // Its columns line up: as many header cells as cells in a row.
  assert.equal(await page.locator('#key-history thead th').count(), await tenth.locator('td').count());

  // A read-scope token may look, not restore: "value after" says which scope it needs, and the page keeps the token
  // (a 403 naming a scope is no wrong token).
  await page.evaluate((t) => sessionStorage.setItem('flashback-token', t), READ_TOKEN);
  await page.reload();
  await page.fill('#key-input', 'userprofile');
  await page.click('#key-form button');
  await waitFor('the key history as a reader', async () => ((await rowsShown.count()) === 20 ? true : undefined));
  await rowsShown.nth(10).locator('button.value').click();
  await page.locator('#key-value .error').filter({ hasText: 'scope "restore"' }).waitFor();
  assert.equal(await page.locator('#token-dialog').isHidden(), true, 'no token prompt');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('flashback-token')), READ_TOKEN);
  await page.evaluate((t) => sessionStorage.setItem('flashback-token', t), TOKEN);

  // The API reference, with the tab's token: Swagger UI lists the timeline routes.
  await page.goto(`${api.url}/docs`);
  await page.getByText('/timeline/rates').first().waitFor({ timeout: 30_000 });
});
