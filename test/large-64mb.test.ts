// A 64 MiB value whose every byte MONITOR escapes (\xNN: a 256 MiB line) is captured, stored and restored exactly, in
// one epoch.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { ObjectStore } from '@nats-io/obj';
import { connectNats, ensureBaselineStore, type NatsConnection } from '../core/bus/nats.js';
import { stopPid } from '../core/servers/server-process.js';
import { sqlString } from '../core/store/sql-literal.js';
import { clickHouseEventStore, restore } from '../restorer/index.js';
import { markAndWait, startSource, startStack, waitFor, type Stack } from './helpers/stack.js';

let stack: Stack;
let nc: NatsConnection;
let objects: ObjectStore;
let instancesDir: string;

before(async () => {
  stack = await startStack();
  nc = await connectNats({ url: stack.nats.url, name: 'large-64mb-test' });
  objects = await ensureBaselineStore(nc);
  instancesDir = await mkdtemp(path.join(os.tmpdir(), 'fb-64mb-'));
});
after(async () => {
  await nc?.close();
  await stack?.close();
  if (instancesDir) await rm(instancesDir, { recursive: true, force: true });
});

test('a 64 MiB value of bytes 0x80–0xff (a 256 MiB MONITOR line): one epoch, stored byte-exact, restored with the source digest', async () => {
  const src = await startSource(stack);
  const r = new Redis(src.redis.url);
  try {
    await src.agent.baseline();
    const n = 64 * 1024 * 1024;
    const v = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) v[i] = 0x80 | ((i ^ (i >>> 8) ^ (i >>> 16)) & 0x7f);
    await r.set('before', '1');
    await r.set(Buffer.from([0x62, 0x00, 0xff]), v);
    await r.set('after', '1');
    const digest = String(await r.call('DEBUG', 'DIGEST'));
    const stored = await waitFor(
      'the three SETs stored, or a new epoch',
      async () => {
        if (src.agent.stats().epochs > 1) return false;
        const [c] = await stack.store.query<{ n: string }>(
          `SELECT uniqExact(seq) AS n FROM flashback.events WHERE node = ${sqlString(src.node)} AND command = 'SET'`,
        );
        return Number(c!.n) === 3 ? true : undefined;
      },
      180_000,
    );
    assert.equal(
      stored,
      true,
      `capture ended its epoch instead of capturing the 64 MiB SET (epochs: ${src.agent.stats().epochs}, max MONITOR output seen: ${src.agent.stats().maxMonitorOutputBytesSeen} bytes)`,
    );
    // A marker after the SETs (a DEL of a missing key: the digest stays): stored with every seq before it, it is the
    // cutoff.
    const last = await markAndWait(stack, src, r, undefined, 120_000);
    const report = await restore(
      { events: clickHouseEventStore(stack.store, stack.store.client), objects, instancesDir },
      { node: src.node, toSeq: last, spawn: {} },
    );
    const restored = new Redis(report.url!);
    try {
      assert.equal(String(await restored.call('DEBUG', 'DIGEST')), digest);
      assert.ok((await restored.getBuffer(Buffer.from([0x62, 0x00, 0xff])))!.equals(v));
    } finally {
      restored.disconnect();
      if (report.pid) await stopPid(report.pid);
    }
    assert.equal(src.agent.stats().epochs, 1);
  } finally {
    r.disconnect();
    await src.close();
  }
});
