// Where a restarted replication-mode agent continues: the durable position its node's last stored message carries,
// not that message's own (a message stored after a later one, or a later one stored while an earlier one failed,
// leaves no hole); the message's own position for messages without one; nothing after an epoch's end.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { headers } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { eventSubject } from '../core/bus/event.js';
import { connectNats, ensureEventStream } from '../core/bus/nats.js';
import { DURABLE_HEADER, POSITION_HEADER } from '../agent/publisher.js';
import { readResumePoint } from '../agent/replication/resume.js';
import type { NatsServerProcess } from '../core/servers/nats-server.js';
import { testNats } from './helpers/servers.js';

let nats: NatsServerProcess;
let nc: NatsConnection;
const REPLID = 'a'.repeat(40);

before(async () => {
  nats = await testNats();
  nc = await connectNats({ url: nats.url, name: 'resume-point-test' });
  await ensureEventStream(nc);
});
after(async () => {
  await nc?.close();
  await nats?.stop();
});

async function publish(node: string, own: string, durable?: string): Promise<void> {
  const h = headers();
  h.set(POSITION_HEADER, own);
  if (durable) h.set(DURABLE_HEADER, durable);
  await jetstream(nc).publish(eventSubject(node), new Uint8Array([1]), { headers: h });
}

test('a message carrying a durable position resumes there, with its seq, offset, time and db', async () => {
  const node = 'resume-durable';
  await publish(node, `7 10 ${REPLID} 1000 1796000000000010 0`);
  // Seqs 11–20 failed (or landed later); this batch 21–30 was sent while only up to seq 10 was acknowledged.
  await publish(node, `7 30 ${REPLID} 3000 1796000000000030 2`, `7 10 ${REPLID} 1000 1796000000000010 0`);
  assert.deepEqual(await readResumePoint(nc, node), {
    epoch: 7,
    seq: 10,
    tsUs: 1796000000000010,
    position: { replid: REPLID, offset: 1000, db: 0 },
  });
});

test("without a durable position, the message's own; after an epoch's end or with no history, nothing", async () => {
  await publish('resume-own', `7 30 ${REPLID} 3000 1796000000000030 2`);
  assert.equal((await readResumePoint(nc, 'resume-own'))?.seq, 30);
  await publish('resume-end', `7 30 ${REPLID} 3000 1796000000000030 2 end`, `7 10 ${REPLID} 1000 1796000000000010 0`);
  assert.equal(await readResumePoint(nc, 'resume-end'), undefined);
  assert.equal(await readResumePoint(nc, 'resume-none'), undefined);
});

test('a durable position with fewer agent-added events than the last stored message cannot go on; with as many it can', async () => {
  // Attribution added 3 events (consumers, audit rows) in the stored stretch 11–30: publishing it again would not.
  await publish(
    'resume-inserted',
    `7 30 ${REPLID} 3000 1796000000000030 2 i4`,
    `7 10 ${REPLID} 1000 1796000000000010 0 i1`,
  );
  const r = await readResumePoint(nc, 'resume-inserted');
  assert.equal(r?.seq, 10);
  assert.equal(r?.position.inserted, 1);
  assert.match(r?.cannotContinue ?? '', /after seq 10 were stored with 3 the agent added/);
  await publish(
    'resume-same',
    `7 30 ${REPLID} 3000 1796000000000030 2 i4`,
    `7 10 ${REPLID} 1000 1796000000000010 0 i4`,
  );
  const same = await readResumePoint(nc, 'resume-same');
  assert.equal(same?.seq, 10);
  assert.equal(same?.cannotContinue, undefined);
  assert.equal(same?.position.inserted, 4, 'the count goes on from there');
});
