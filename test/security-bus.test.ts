// Issue 15, the bus half: a stack started the way `flashback up` starts it (generated users, per-service NATS
// permissions, ClickHouse users) refuses what a local attacker tried, and keeps its passwords out of ps and logs.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { eventSubject } from '../core/bus/event.js';
import { BASELINE_BUCKET, connectNats, EVENT_STREAM, type NatsAuthOptions } from '../core/bus/nats.js';
import { natsUserName, type NatsRole } from '../core/bus/nats-permissions.js';
import { hostToken, INSTANCE_STOP_SUBJECT, INSTANCES_BUCKET } from '../core/bus/restore-jobs.js';
import { CLICKHOUSE_API_USER, CLICKHOUSE_SQL_USER } from '../core/servers/clickhouse-server.js';
import { openClickHouse, type Store } from '../core/store/clickhouse.js';
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
});
