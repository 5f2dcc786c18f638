import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { natsAuthorizationConfig, natsPermissions, natsUserName, type NatsRole } from '../core/bus/nats-permissions.js';
import { setTimeout as delay } from 'node:timers/promises';
import {
  connectNats,
  ensureBaselineStore,
  ensureEventStream,
  redactNatsUrl,
  type NatsAuthOptions,
} from '../core/bus/nats.js';
import { ensureRestoreInfra } from '../core/bus/restore-jobs.js';
import { ConnectionError } from '../core/errors.js';
import { parseRedisUrl, redisAddress } from '../core/redis/redis-url.js';
import { CLICKHOUSE_API_USER, CLICKHOUSE_SQL_USER, type ClickHouseUsers } from '../core/servers/clickhouse-server.js';
import type { ClickHouseAuth } from '../core/store/clickhouse.js';

/**
 * The credentials `flashback up` generates for the servers it starts (docs/security.md): one NATS user per service
 * (one per captured node for agents) and three ClickHouse users. Passwords live in `<data dir>/secrets/` (dir 700,
 * files 600), are made once and kept across restarts, and reach the servers only through config files of mode 600:
 * never argv, never the environment of a child.
 */
export interface StackSecrets {
  /** `<data dir>/secrets`. */
  readonly dir: string;
  /** The nats-server config file holding the users and their permissions. */
  readonly natsConfigFile: string;
  /** Credentials of a NATS role (the agent's user must have been added with {@link addAgent} first). */
  nats(role: NatsRole): NatsAuthOptions;
  /** Adds the NATS user of a captured node and rewrites the config; true when it was new (reload the server then). */
  addAgent(node: string): Promise<boolean>;
  /** What clickhouse-server's users.xml gets. */
  readonly clickhouseUsers: ClickHouseUsers;
  /** The admin (`default`): the sink and the restorer write with it. */
  readonly clickhouseAdmin: ClickHouseAuth;
  /** The API's own reads (readonly=2). */
  readonly clickhouseApi: ClickHouseAuth;
  /** Users' SQL through the API (readonly=1 and limits). */
  readonly clickhouseSql: ClickHouseAuth;
}

const FIXED_ROLES: NatsRole[] = [{ role: 'admin' }, { role: 'sink' }, { role: 'restorer' }, { role: 'api' }];

/** Reads the stack's secrets, making the missing ones, and writes the nats-server config for `nodes`' agents. */
export async function loadStackSecrets(dataDir: string, nodes: readonly string[] = []): Promise<StackSecrets> {
  const dir = path.join(dataDir, 'secrets');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const secret = async (name: string): Promise<string> => {
    const file = path.join(dir, name);
    const existing = await readFile(file, 'utf8').then(
      (t) => t.trim(),
      () => '',
    );
    if (existing) return existing;
    const value = randomBytes(24).toString('hex');
    await writeFile(file, value + '\n', { mode: 0o600 });
    return value;
  };
  const passwords = new Map<string, string>();
  const roles: NatsRole[] = [...FIXED_ROLES];
  const addRole = async (r: NatsRole) => {
    const user = natsUserName(r);
    if (passwords.has(user)) return false;
    passwords.set(user, await secret(`nats-${user}`));
    if (!roles.some((x) => natsUserName(x) === user)) roles.push(r);
    return true;
  };
  for (const r of FIXED_ROLES) await addRole(r);
  for (const node of nodes) await addRole({ role: 'agent', node });

  const natsConfigFile = path.join(dir, 'nats-auth.conf');
  const writeNatsConfig = async () => {
    const users = roles.map((r) => {
      const user = natsUserName(r);
      return { user, password: passwords.get(user)!, permissions: natsPermissions(r) };
    });
    // Written whole and renamed: a reload never reads half a file.
    const tmp = `${natsConfigFile}.tmp`;
    await writeFile(tmp, natsAuthorizationConfig(users), { mode: 0o600 });
    await rename(tmp, natsConfigFile);
  };
  await writeNatsConfig();

  const clickhouseUsers: ClickHouseUsers = {
    adminPassword: await secret('clickhouse-default'),
    apiPassword: await secret(`clickhouse-${CLICKHOUSE_API_USER}`),
    sqlPassword: await secret(`clickhouse-${CLICKHOUSE_SQL_USER}`),
  };
  return {
    dir,
    natsConfigFile,
    nats(role) {
      const user = natsUserName(role);
      const password = passwords.get(user);
      if (password === undefined) throw new Error(`no NATS user ${user} in ${natsConfigFile}; add it first`);
      return { user, password };
    },
    async addAgent(node) {
      if (!(await addRole({ role: 'agent', node }))) return false;
      await writeNatsConfig();
      return true;
    },
    clickhouseUsers,
    clickhouseAdmin: { user: 'default', password: clickhouseUsers.adminPassword },
    clickhouseApi: { user: CLICKHOUSE_API_USER, password: clickhouseUsers.apiPassword },
    clickhouseSql: { user: CLICKHOUSE_SQL_USER, password: clickhouseUsers.sqlPassword },
  };
}

/** The node id an agent of `redisUrl` captures as (the agent's own default: host:port). */
export function agentNode(redisUrl: string, nodeId?: string): string {
  return nodeId ?? redisAddress(parseRedisUrl(redisUrl));
}

/**
 * Creates, as the NATS admin, what the services may no longer create themselves on a server with permissions: the
 * event stream (with the stack's retention), the baseline bucket, the restore-job stream and its KV buckets.
 */
export async function prepareNats(
  url: string,
  admin: NatsAuthOptions,
  retentionMs: number,
  /** JetStream replicas of what is created (docs/scale.md). @default 1 */
  replicas = 1,
): Promise<void> {
  const nc = await connectNats({ url, name: 'flashback up (setup)', auth: admin });
  try {
    await ensureEventStream(nc, { maxAgeMs: retentionMs, replicas });
    await ensureBaselineStore(nc, { replicas });
    await ensureRestoreInfra(nc, { replicas });
  } finally {
    await nc.close();
  }
}

/**
 * Waits until a server that was asked to reload its config (SIGHUP) accepts `auth`: the reload is asynchronous.
 * @throws ConnectionError after `timeoutMs`.
 */
export async function waitForNatsUser(url: string, auth: NatsAuthOptions, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const nc = await connectNats({ url, name: 'flashback up (reload check)', auth, connectTimeoutMs: 2_000 });
      await nc.close();
      return;
    } catch (err) {
      if (Date.now() >= deadline)
        throw new ConnectionError(
          `nats-server at ${redactNatsUrl(url)} did not accept user "${auth.user}" after reloading its config; see its log`,
          { cause: err },
        );
      await delay(50);
    }
  }
}
