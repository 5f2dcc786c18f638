// Issue 15, the bus half: a stack started the way `flashback up` starts it (generated users, per-service NATS
// permissions, ClickHouse users) refuses what a local attacker tried, keeps its passwords out of ps and logs, and
// refuses to restore a baseline object another node's agent replaced.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { openBaselineWriter } from '../core/bus/baseline-writer.js';
import { eventSubject } from '../core/bus/event.js';
import { BASELINE_BUCKET, connectNats, EVENT_STREAM, type NatsAuthOptions } from '../core/bus/nats.js';
import { natsUserName, type NatsRole } from '../core/bus/nats-permissions.js';
import {
  hostToken,
  INSTANCE_STOP_SUBJECT,
  INSTANCES_BUCKET,
  isFinal,
  type InstanceRecord,
  type RestoreJobStatus,
} from '../core/bus/restore-jobs.js';
import { CLICKHOUSE_API_USER, CLICKHOUSE_SQL_USER } from '../core/servers/clickhouse-server.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
import { restoreWindows } from '../core/store/windows.js';
import { startLocalStack, type LocalStack } from '../cli/local-stack.js';
import { testRedis } from './helpers/servers.js';
import { SOURCE_ARGS, waitFor } from './helpers/stack.js';
import type { ServerProcess } from '../core/servers/server-process.js';

const REDIS_PASSWORD = 'redis-Secret-4f1c9e';

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A NATS refusal: the server's permissions violation, or its refusal of the login. */
const refused = /permissions violation|authorization violation|refused our credentials/i;

describe('security of the bus and the store (a stack as flashback up starts it)', () => {
  let dataDir: string;
  let source: ServerProcess;
  let other: ServerProcess;
  let stack: LocalStack;
  let admin: Store;
  let logFile: string;
  let node: string;
  let otherNode: string;
  const secret = (name: string) => readFileSync(path.join(dataDir, 'secrets', name), 'utf8').trim();
  const natsAuth = (r: NatsRole): NatsAuthOptions => {
    const user = natsUserName(r);
    return { user, password: secret(`nats-${user}`) };
  };
  const connectAs = (r: NatsRole) =>
    connectNats({ url: stack.natsUrl, name: `attacker as ${r.role}`, auth: natsAuth(r) });
  const firstEvent = async () =>
    (
      await admin.query<{ client: string; args: string }>(
        `SELECT client, args FROM flashback.events FINAL WHERE node = '${node}' ORDER BY epoch, seq LIMIT 1`,
      )
    )[0];

  const api = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${stack.apiUrl}${p}`, {
      method,
      headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as T;
    assert.ok(res.ok, `${method} ${p}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  /** Queues a restore through the API and waits for its end. */
  const restoreJob = async (body: Record<string, unknown>): Promise<RestoreJobStatus> => {
    const { id } = await api<{ id: string }>('POST', '/restores', body);
    // The first answer after the end carries a spawned instance's password (shown once): this one.
    return waitFor(
      `restore job ${id} to end`,
      async () => {
        const st = await api<RestoreJobStatus>('GET', `/restores/${id}`);
        return isFinal(st.state) ? st : undefined;
      },
      120_000,
    );
  };
  /** A node's baseline row at marker seq `seq`, or its first one, once the sink stored it. */
  const baselineRow = (n: string, seq?: number) =>
    waitFor(
      `a baseline of ${n}${seq === undefined ? '' : ` at seq ${seq}`} in ClickHouse`,
      async () =>
        (
          await admin.query<{
            epoch: number;
            seq: number;
            rdb_object: string;
            tail_object: string;
            rdb_sha256: string;
            tail_sha256: string;
          }>(
            `SELECT epoch, seq, rdb_object, tail_object, rdb_sha256, tail_sha256 FROM flashback.baselines ` +
              `WHERE node = '${n}'${seq === undefined ? '' : ` AND seq = ${seq}`} ORDER BY epoch, seq LIMIT 1`,
          )
        )[0],
      60_000,
    );
  /** Waits until a restorable window of `n` reaches `seq` of `epoch`. */
  const windowReaches = (n: string, epoch: number, seq: number) =>
    waitFor(
      `a window of ${n} reaching seq ${seq}`,
      async () =>
        (await restoreWindows(admin, n)).some((w) => w.epoch === epoch && w.toSeq >= seq) ? true : undefined,
      60_000,
    );

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'fb-security-'));
    logFile = path.join(dataDir, 'services.log');
    source = await testRedis(SOURCE_ARGS);
    // Set after the start: the launcher's readiness probe logs in without a password.
    const setup = new Redis(source.url);
    try {
      await setup.config('SET', 'requirepass', REDIS_PASSWORD);
    } finally {
      setup.disconnect();
    }
    other = await testRedis(SOURCE_ARGS);
    const logger = pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true }));
    const redisUrl = `redis://:${REDIS_PASSWORD}@127.0.0.1:${source.port}`;
    stack = await startLocalStack({
      dataDir,
      apiPort: 0,
      redisUrls: [redisUrl],
      retentionMs: 86_400_000,
      logger,
    });
    node = stack.agents[0]!.node;
    otherNode = (await stack.addAgent(other.url)).node;
    admin = await openClickHouse(stack.clickhouseUrl, { user: 'default', password: secret('clickhouse-default') });
    const r = new Redis({ port: source.port, password: REDIS_PASSWORD });
    try {
      await r.set('user:1', 'alice');
    } finally {
      r.disconnect();
    }
    await waitFor('the first event of the source in ClickHouse', firstEvent, 60_000);
    await waitFor(
      "a baseline of the source in the object store's listing",
      async () => (await admin.query(`SELECT rdb_object FROM flashback.baselines WHERE node = '${node}' LIMIT 1`))[0],
      60_000,
    );
  });

  after(async () => {
    await admin?.close();
    await stack?.close();
    await source?.stop();
    await other?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('a forged event is refused with no credentials, with the API, sink and restorer users, and with another node’s agent', async () => {
    const before = await firstEvent();
    await assert.rejects(
      connectNats({ url: stack.natsUrl, name: 'anonymous' }).then((nc) => nc.close()),
      refused,
      'a client without credentials is not let in',
    );
    for (const role of [
      { role: 'api' },
      { role: 'sink' },
      { role: 'restorer' },
      { role: 'agent', node: otherNode },
    ] as NatsRole[]) {
      const nc = await connectAs(role);
      try {
        await assert.rejects(
          jetstream(nc).publish(eventSubject(node), 'SET user:1 mallory', { msgID: `${node}:1:1` }),
          refused,
          `${role.role} may not publish ${node}'s events`,
        );
      } finally {
        await nc.close();
      }
    }
    assert.deepEqual(await firstEvent(), before, 'the stored row is unchanged');
  });

  test('an agent may publish only its own node’s subjects, and reads no one’s events', async () => {
    const nc = await connectAs({ role: 'agent', node: otherNode });
    try {
      const jsm = await jetstreamManager(nc);
      await assert.rejects(jsm.streams.getMessage(EVENT_STREAM, { seq: 1 }), refused);
      await assert.rejects(jsm.direct.getMessage(EVENT_STREAM, { last_by_subj: eventSubject(node) }), refused);
      await assert.rejects(jsm.consumers.add(EVENT_STREAM, { name: 'spy' }), refused);
    } finally {
      await nc.close();
    }
  });

  test('no service but the admin may purge or change the event stream', async () => {
    for (const role of [
      { role: 'api' },
      { role: 'sink' },
      { role: 'restorer' },
      { role: 'agent', node },
    ] as NatsRole[]) {
      const nc = await connectAs(role);
      try {
        const jsm = await jetstreamManager(nc);
        await assert.rejects(jsm.streams.purge(EVENT_STREAM), refused, `${role.role} may not purge`);
        await assert.rejects(jsm.streams.update(EVENT_STREAM, { max_msgs: 1 }), refused, `${role.role} may not trim`);
        await assert.rejects(jsm.streams.delete(EVENT_STREAM), refused, `${role.role} may not delete`);
      } finally {
        await nc.close();
      }
    }
    assert.ok(await firstEvent(), 'the history is still there');
  });

  test('baseline objects cannot be read with the API’s credentials nor with another node’s agent’s', async () => {
    const [{ rdb_object: rdb }] = await admin.query<{ rdb_object: string }>(
      `SELECT rdb_object FROM flashback.baselines WHERE node = '${node}' LIMIT 1`,
    );
    for (const role of [{ role: 'api' }, { role: 'agent', node: otherNode }] as NatsRole[]) {
      const nc = await connectAs(role);
      try {
        await assert.rejects(
          (async () => (await new Objm(nc).open(BASELINE_BUCKET)).getBlob(rdb))(),
          refused,
          `${role.role} may not read ${rdb}`,
        );
        const jsm = await jetstreamManager(nc);
        await assert.rejects(
          jsm.streams.getMessage(`OBJ_${BASELINE_BUCKET}`, { seq: 1 }),
          refused,
          `${role.role} may not read the bucket's messages by sequence`,
        );
      } finally {
        await nc.close();
      }
    }
    // The restorer reads them (what restores need).
    const nc = await connectAs({ role: 'restorer' });
    try {
      const blob = await (await new Objm(nc).open(BASELINE_BUCKET)).getBlob(rdb);
      assert.ok(blob && blob.length > 0, 'the restorer reads a baseline the agent wrote');
    } finally {
      await nc.close();
    }
  });

  test('only the restorer writes instance records, and only the API asks for an instance stop', async () => {
    for (const role of [{ role: 'sink' }, { role: 'agent', node }] as NatsRole[]) {
      const nc = await connectAs(role);
      try {
        await assert.rejects(
          nc.request(`${INSTANCE_STOP_SUBJECT}.${hostToken()}`, JSON.stringify({ id: 'x' }), { timeout: 5_000 }),
          refused,
          `${role.role} may not send an instance-stop request`,
        );
      } finally {
        await nc.close();
      }
    }
    for (const role of [{ role: 'api' }, { role: 'sink' }, { role: 'agent', node }] as NatsRole[]) {
      const nc = await connectAs(role);
      try {
        const forged = { id: 'forged', url: 'redis://127.0.0.1:1', pid: 1, dir: '/', node, host: os.hostname() };
        await assert.rejects(
          (async () => (await new Kvm(nc).open(INSTANCES_BUCKET)).put('forged', JSON.stringify(forged)))(),
          refused,
          `${role.role} may not write an instance record`,
        );
      } finally {
        await nc.close();
      }
    }
  });

  test('ClickHouse: the API’s users cannot write or drop, and a 1-row 28 MB answer is refused', async () => {
    for (const user of [CLICKHOUSE_API_USER, CLICKHOUSE_SQL_USER]) {
      const s = await openClickHouse(stack.clickhouseUrl, { user, password: secret(`clickhouse-${user}`) });
      try {
        await assert.rejects(s.command('DROP TABLE flashback.events'), /readonly|read-only/i, `${user} may not DROP`);
        await assert.rejects(
          s.command(`INSERT INTO flashback.epochs (node) VALUES ('forged')`),
          /readonly|read-only/i,
          `${user} may not INSERT`,
        );
      } finally {
        await s.close();
      }
    }
    await assert.rejects(
      openClickHouse(stack.clickhouseUrl).then((s) => s.close()),
      /refused the login/,
      'no login without a password',
    );
    const token = stack.token;
    const res = await fetch(`${stack.apiUrl}/sql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        sql: "SELECT arrayStringConcat(arrayMap(x -> 'xxxxxxxxxxxxxxxxxxxxxxxxxxxx', range(1000000)))",
      }),
    });
    const body = (await res.json()) as { error?: { message: string } };
    assert.ok(res.status >= 400 && res.status < 500, `${res.status} ${JSON.stringify(body)}`);
    assert.match(body.error!.message, /too large/);
    assert.equal((await admin.query('SELECT count() AS n FROM flashback.events')).length, 1, 'the store still answers');
  });

  test('no password is in the ps line or the log of a spawned server, nor in the services’ log', async () => {
    const secrets = readdirSync(path.join(dataDir, 'secrets'))
      .filter((f) => !f.endsWith('.conf'))
      .map((f) => secret(f));
    secrets.push(REDIS_PASSWORD);
    assert.ok(secrets.length >= 8, `secrets found: ${secrets.length}`);
    const children = childrenOf(process.pid);
    const cmdlines = children.map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        return '';
      }
    });
    assert.ok(
      cmdlines.some((c) => c.includes('nats-server')),
      cmdlines.join('\n'),
    );
    assert.ok(
      cmdlines.some((c) => c.includes('clickhouse')),
      cmdlines.join('\n'),
    );
    const logs = [
      logFile,
      path.join(dataDir, 'nats', 'nats.log'),
      path.join(dataDir, 'clickhouse', 'clickhouse-server.log'),
      path.join(dataDir, 'clickhouse', 'clickhouse-server.err.log'),
    ];
    const texts = await Promise.all(logs.map((f) => readFile(f, 'utf8').catch(() => '')));
    assert.ok(texts[0]!.includes('nats-server started'), 'the services log is where we think');
    assert.ok(texts[1]!.includes('Server is ready'), "nats-server's log is where we think");
    for (const s of secrets) {
      for (const c of cmdlines) assert.ok(!c.includes(s), `a password is in a ps line: ${c.slice(0, 80)}`);
      logs.forEach((f, i) => assert.ok(!texts[i]!.includes(s), `a password is in ${f}`));
    }
  });

  test('a baseline object replaced with another node’s agent credentials fails its node’s restore before anything loads; an honest restore runs', async () => {
    // The victim B is the second node; the attacker holds the first node's agent credentials.
    const victim = await baselineRow(otherNode);
    await windowReaches(otherNode, victim.epoch, victim.seq);
    const reader = await connectAs({ role: 'restorer' });
    const attacker = await connectAs({ role: 'agent', node });
    const forgeSource = await testRedis([]);
    try {
      const objects = await new Objm(reader).open(BASELINE_BUCKET);
      // The record B's agent published vouches for exactly the bytes it stored (its full resync's RDB and tail).
      const rdb = (await objects.getBlob(victim.rdb_object))!;
      const tail = (await objects.getBlob(victim.tail_object))!;
      assert.equal(victim.rdb_sha256, sha256(rdb), 'rdb_sha256 = SHA-256 of the stored RDB');
      assert.equal(victim.tail_sha256, sha256(tail), 'tail_sha256 = SHA-256 of the stored tail');

      // A well-formed RDB of other data, as an attacker makes one: any redis-server's SAVE.
      const f = new Redis(forgeSource.url);
      let forged: Buffer;
      try {
        await f.set('user:1', 'mallory');
        await f.save();
        const [, dir] = (await f.config('GET', 'dir')) as [string, string];
        const [, file] = (await f.config('GET', 'dbfilename')) as [string, string];
        forged = await readFile(path.join(dir, file));
      } finally {
        f.disconnect();
      }
      assert.equal(forged.subarray(0, 5).toString('latin1'), 'REDIS');
      // Writing is what an agent may do in the shared bucket: chunks and a meta entry under B's object name.
      await (await openBaselineWriter(attacker)).putBlob({ name: victim.rdb_object }, forged);
      // The object is replaced, and its meta digest (the attacker's) agrees with the forged bytes: the client's own
      // digest check passes, so only the record can tell.
      assert.deepEqual(Buffer.from((await objects.getBlob(victim.rdb_object))!), forged);

      const instancesDir = path.join(dataDir, 'instances');
      const dirsBefore = await readdir(instancesDir).catch(() => []);
      const failed = await restoreJob({ node: otherNode, toSeq: victim.seq, spawn: {} });
      assert.equal(failed.state, 'failed', JSON.stringify(failed.report));
      assert.equal(failed.error?.code, 'BASELINE_MISMATCH', failed.error?.message);
      const message = failed.error!.message;
      for (const part of [
        `baseline RDB object "${victim.rdb_object}" of node "${otherNode}"`,
        'does not match the record its own agent published',
        `SHA-256 ${sha256(forged)}, recorded ${victim.rdb_sha256}`,
        'replaced',
        'corrupt',
        'Restore an instant another baseline serves',
      ])
        assert.ok(message.includes(part), `"${part}" in: ${message}`);
      assert.deepEqual(await readdir(instancesDir).catch(() => []), dirsBefore, 'no instance dir is left');
      const { instances } = await api<{ instances: InstanceRecord[] }>('GET', '/instances');
      assert.deepEqual(
        instances.filter((i) => i.node === otherNode),
        [],
        'no instance of the victim runs',
      );

      // The tail is vouched for the same way (the RDB put back as it was).
      const putAs = async (name: string, bytes: Uint8Array) =>
        (await openBaselineWriter(attacker)).putBlob({ name }, bytes);
      await putAs(victim.rdb_object, rdb);
      await putAs(victim.tail_object, Buffer.from('*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$7\r\nmallory\r\n'));
      const tailFailed = await restoreJob({ node: otherNode, toSeq: victim.seq, spawn: {} });
      assert.equal(tailFailed.error?.code, 'BASELINE_MISMATCH', JSON.stringify(tailFailed.report));
      assert.match(tailFailed.error!.message, new RegExp(`^baseline tail object "${victim.tail_object}" of node`));
      assert.deepEqual(await readdir(instancesDir).catch(() => []), dirsBefore, 'no instance dir is left');
      // Both objects as their record says again: the victim restores.
      await putAs(victim.tail_object, tail);
      const back = await restoreJob({ node: otherNode, toSeq: victim.seq, rdb: 'victim.rdb' });
      assert.equal(back.state, 'done', JSON.stringify(back.error));
      assert.equal(back.report?.baseline.seq, victim.seq);

      // Nothing was forged for the first node: a baseline the scheduler takes (not a full resync) restores, checked.
      const record = await stack.agents[0]!.baseline();
      const honest = await baselineRow(node, record.seq);
      assert.match(honest.rdb_sha256, /^[0-9a-f]{64}$/);
      assert.equal(honest.rdb_sha256, sha256((await objects.getBlob(honest.rdb_object))!));
      assert.equal(honest.tail_sha256, sha256((await objects.getBlob(honest.tail_object))!));
      await windowReaches(node, honest.epoch, honest.seq);
      const done = await restoreJob({ node, toSeq: honest.seq, spawn: {} });
      assert.equal(done.state, 'done', JSON.stringify(done.error));
      assert.equal(done.report?.baseline.seq, honest.seq);
      assert.ok(done.password, 'the spawned instance’s password is shown once');
      const restored = new Redis({ port: Number(new URL(done.report!.url!).port), password: done.password });
      try {
        assert.equal(await restored.get('user:1'), 'alice');
      } finally {
        restored.disconnect();
      }
      await api('DELETE', `/instances/${done.id}`);
      await waitFor(
        'the honest instance to stop',
        async () =>
          (await api<{ instances: InstanceRecord[] }>('GET', '/instances')).instances.some((i) => i.id === done.id)
            ? undefined
            : true,
        30_000,
      );
    } finally {
      await reader.close();
      await attacker.close();
      await forgeSource.stop();
    }
  });
});
