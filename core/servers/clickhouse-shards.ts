import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCode, FlashbackError } from '../errors.js';
import { checkClusterName } from '../store/sharded-schema.js';
import { startClickHouseServer, type ClickHouseServerProcess, type ClickHouseUsers } from './clickhouse-server.js';
import { freePort } from './free-port.js';
import { isPidAlive, ServerStartError } from './server-process.js';

/** How to start the shard servers of a sharded flashback store on one machine. */
export interface ClickHouseShardsOptions {
  /** Shards. @default 2 */
  shards?: number;
  /**
   * Servers per shard, each holding all of its shard's rows (Replicated…MergeTree; apply the DDL with `replicated`).
   * More than 1 needs `zookeeper`. @default 1
   */
  replicas?: number;
  /** ZooKeeper the replicas coordinate through (core/servers/zookeeper-server.ts). */
  zookeeper?: { host: string; port: number };
  /** Cluster name under `<remote_servers>`, used by the Distributed tables. @default 'flashback' */
  cluster?: string;
  /** clickhouse-server executable (see startClickHouseServer). */
  bin?: string;
  /** Interface every port binds. @default '127.0.0.1' */
  host?: string;
  /** Parent dir: shard i keeps its data in `dir/shard-<i>`. @default a new temp dir, removed on stop() */
  dir?: string;
  /** Users and passwords of every shard (the cluster config then logs in to other shards as `default`). */
  users?: ClickHouseUsers;
  /** Own process groups, stopped with us. @default false */
  processGroup?: boolean;
}

/** Running shard servers. */
export interface ClickHouseShards {
  readonly cluster: string;
  /**
   * The servers, shard 1's replicas first; any of them answers for the whole cluster through the Distributed tables.
   * An entry is undefined while that server is killed.
   */
  readonly servers: readonly ClickHouseServerProcess[];
  /** Shard (1-based) and replica (1-based) of each server, in the order of `servers`. */
  readonly placement: readonly { shard: number; replica: number }[];
  /** Kills server `i` at once (SIGKILL) and waits until it is gone. */
  kill(i: number): Promise<void>;
  /** Starts killed server `i` again on its ports and data; resolves when it answers. */
  restart(i: number): Promise<ClickHouseServerProcess>;
  /** Stops every server (idempotent). */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** One server of a shard in `remote_servers`. */
export interface ShardReplica {
  host: string;
  tcpPort: number;
}

/** The config.d file of a replica: its ZooKeeper, its `{shard}`/`{replica}` macros, and the port replicas fetch parts on. */
export function replicaConfigXml(o: {
  zookeeper: { host: string; port: number };
  shard: number;
  replica: string;
  interserverHost: string;
  interserverPort: number;
}): string {
  return `<?xml version="1.0"?>
<yandex>
    <zookeeper>
        <node>
            <host>${xml(o.zookeeper.host)}</host>
            <port>${o.zookeeper.port}</port>
        </node>
        <!-- A killed replica's session (its is_active node) must lapse before it may come back: keep that short. -->
        <session_timeout_ms>3000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>${o.shard}</shard>
        <replica>${xml(o.replica)}</replica>
    </macros>
    <interserver_http_host>${xml(o.interserverHost)}</interserver_http_host>
    <interserver_http_port>${o.interserverPort}</interserver_http_port>
    <!-- 18.16 refuses to start a replica whose local parts ZooKeeper never acknowledged hold over half its rows (an insert
         cut by SIGKILL: the sink retries it on the other replica). Current releases leave just-written parts out of that
         check; 1 detaches them and goes on, as they do. -->
    <merge_tree>
        <replicated_max_ratio_of_wrong_parts>1</replicated_max_ratio_of_wrong_parts>
    </merge_tree>
</yandex>
`;
}

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The `<remote_servers>` entry of a cluster of one-replica shards, as a config.d file (ClickHouse merges
 * `config.d/*.xml` into the main config, 18.16 as current releases).
 */
export function clusterConfigXml(
  cluster: string,
  shards: readonly (ShardReplica | readonly ShardReplica[])[],
  password?: string,
): string {
  checkClusterName(cluster);
  const login =
    password === undefined
      ? ''
      : `\n                    <user>default</user>\n                    <password>${xml(password)}</password>`;
  const body = shards
    .map((s) => {
      const replicas: readonly ShardReplica[] = Array.isArray(s) ? s : [s as ShardReplica];
      // With replicas the table engine copies rows between them: the Distributed table writes each row once.
      const internal = replicas.length > 1 ? '\n                <internal_replication>true</internal_replication>' : '';
      const entries = replicas
        .map(
          (r) => `                <replica>
                    <host>${xml(r.host)}</host>
                    <port>${r.tcpPort}</port>${login}
                </replica>`,
        )
        .join('\n');
      return `            <shard>${internal}\n${entries}\n            </shard>`;
    })
    .join('\n');
  return `<?xml version="1.0"?>
<yandex>
    <remote_servers>
        <${cluster}>
${body}
        </${cluster}>
    </remote_servers>
</yandex>
`;
}

/**
 * A users.d file: subqueries over a Distributed table inside a query over one (`seq NOT IN (SELECT seq FROM
 * flashback.events …)`) read each shard's local table. Users' SQL cannot send settings (readonly=1), so it is set in
 * the server's profiles.
 */
export function shardProfilesXml(profiles: readonly string[]): string {
  const entries = profiles
    .map(
      (p) => `        <${p}>\n            <distributed_product_mode>local</distributed_product_mode>\n        </${p}>`,
    )
    .join('\n');
  return `<?xml version="1.0"?>
<yandex>
    <profiles>
${entries}
    </profiles>
</yandex>
`;
}

/**
 * Starts `shards` clickhouse-servers that each know the cluster of all of them (`remote_servers`), so Distributed
 * tables on any of them reach every shard. No ZooKeeper: shards without replicas need none. The schema is not created
 * here: apply {@link shardedSchemaStatements} on each server (core/store/sharded-schema.ts).
 */
export async function startClickHouseShards(o: ClickHouseShardsOptions = {}): Promise<ClickHouseShards> {
  const { shards = 2, replicas = 1, cluster = 'flashback', host = '127.0.0.1' } = o;
  if (replicas > 1 && !o.zookeeper)
    throw new FlashbackError(
      ErrorCode.BadInput,
      'ClickHouse replicas need a ZooKeeper: pass zookeeper (startZooKeeper)',
    );
  checkClusterName(cluster);
  if (!Number.isInteger(shards) || shards < 1 || shards > 16)
    throw new FlashbackError(
      ErrorCode.BadInput,
      `${shards} ClickHouse shards on one machine is not supported; use 1 to 16`,
    );
  const parent = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-clickhouse-shards-'));
  const removeParent = o.dir === undefined;
  const profiles = o.users ? ['default', 'flashback_api', 'flashback_sql'] : ['default'];
  for (let attempt = 1; ; attempt++) {
    const taken = new Set<number>();
    const pick = async () => {
      let p = await freePort(host);
      while (taken.has(p)) p = await freePort(host);
      taken.add(p);
      return p;
    };
    const plan: { dir: string; httpPort: number; tcpPort: number; shard: number; replica: number }[] = [];
    for (let i = 1; i <= shards; i++)
      for (let r = 1; r <= replicas; r++)
        plan.push({
          dir: path.join(parent, replicas > 1 ? `shard-${i}-replica-${r}` : `shard-${i}`),
          httpPort: await pick(),
          tcpPort: await pick(),
          shard: i,
          replica: r,
        });
    const clusterXml = clusterConfigXml(
      cluster,
      Array.from({ length: shards }, (_, i) =>
        plan.filter((p) => p.shard === i + 1).map((p) => ({ host, tcpPort: p.tcpPort })),
      ),
      o.users?.adminPassword,
    );
    for (const p of plan) {
      mkdirSync(path.join(p.dir, 'config.d'), { recursive: true });
      mkdirSync(path.join(p.dir, 'users.d'), { recursive: true });
      // Mode 600: it may hold the admin password other shards log in with.
      writeFileSync(path.join(p.dir, 'config.d', 'flashback-cluster.xml'), clusterXml, { mode: 0o600 });
      writeFileSync(path.join(p.dir, 'users.d', 'flashback-shards.xml'), shardProfilesXml(profiles), { mode: 0o600 });
      if (o.zookeeper)
        writeFileSync(
          path.join(p.dir, 'config.d', 'flashback-replica.xml'),
          replicaConfigXml({
            zookeeper: o.zookeeper,
            shard: p.shard,
            replica: `replica-${p.replica}`,
            interserverHost: host,
            interserverPort: await pick(),
          }),
        );
    }
    const start = (p: (typeof plan)[number]) =>
      startClickHouseServer({
        bin: o.bin,
        host,
        httpPort: p.httpPort,
        tcpPort: p.tcpPort,
        dir: p.dir,
        users: o.users,
        processGroup: o.processGroup,
      });
    const started = await Promise.allSettled(plan.map(start));
    const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(servers.map((s) => s.stop()));
      const err = failed.reason as unknown;
      if (attempt < 3 && err instanceof ServerStartError && err.portInUse) continue;
      if (removeParent) rmSync(parent, { recursive: true, force: true });
      throw err;
    }
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        await Promise.all(servers.map((s) => s?.stop()));
        if (removeParent) rmSync(parent, { recursive: true, force: true });
      })());
    return {
      cluster,
      servers,
      placement: plan.map((p) => ({ shard: p.shard, replica: p.replica })),
      async kill(i) {
        const s = servers[i];
        if (!s) return;
        delete servers[i];
        if (isPidAlive(s.pid)) process.kill(s.pid, 'SIGKILL');
        await s.stop();
      },
      async restart(i) {
        const running = servers[i];
        if (running) return running;
        // A replica killed less than a ZooKeeper session ago is still "active" there and refuses to start, and one of
        // its ports (fixed: the cluster names them) may still be held a moment (seen beside a loaded run): try again.
        const deadline = Date.now() + 30_000;
        for (;;) {
          try {
            const s = await start(plan[i]!);
            servers[i] = s;
            return s;
          } catch (err) {
            const transient =
              err instanceof ServerStartError && (/already active/i.test(err.logTail) || err.portInUse === true);
            if (!transient || Date.now() > deadline) throw err;
            await delay(500);
          }
        }
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  }
}
