import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ErrorCode, FlashbackError } from '../errors.js';
import { checkClusterName } from '../store/sharded-schema.js';
import { startClickHouseServer, type ClickHouseServerProcess, type ClickHouseUsers } from './clickhouse-server.js';
import { freePort } from './free-port.js';
import { ServerStartError } from './server-process.js';

/** How to start the shard servers of a sharded flashback store on one machine. */
export interface ClickHouseShardsOptions {
  /** Shard servers. @default 2 */
  shards?: number;
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
  /** The servers, shard 1 first; any of them answers for the whole cluster through the Distributed tables. */
  readonly servers: readonly ClickHouseServerProcess[];
  /** Stops every server (idempotent). */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
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
  shards: readonly { host: string; tcpPort: number }[],
  password?: string,
): string {
  checkClusterName(cluster);
  const login =
    password === undefined
      ? ''
      : `\n                    <user>default</user>\n                    <password>${xml(password)}</password>`;
  const body = shards
    .map(
      (s) => `            <shard>
                <replica>
                    <host>${xml(s.host)}</host>
                    <port>${s.tcpPort}</port>${login}
                </replica>
            </shard>`,
    )
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
  const { shards = 2, cluster = 'flashback', host = '127.0.0.1' } = o;
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
    const plan: { dir: string; httpPort: number; tcpPort: number }[] = [];
    for (let i = 1; i <= shards; i++)
      plan.push({ dir: path.join(parent, `shard-${i}`), httpPort: await pick(), tcpPort: await pick() });
    const clusterXml = clusterConfigXml(
      cluster,
      plan.map((p) => ({ host, tcpPort: p.tcpPort })),
      o.users?.adminPassword,
    );
    for (const p of plan) {
      mkdirSync(path.join(p.dir, 'config.d'), { recursive: true });
      mkdirSync(path.join(p.dir, 'users.d'), { recursive: true });
      // Mode 600: it may hold the admin password other shards log in with.
      writeFileSync(path.join(p.dir, 'config.d', 'flashback-cluster.xml'), clusterXml, { mode: 0o600 });
      writeFileSync(path.join(p.dir, 'users.d', 'flashback-shards.xml'), shardProfilesXml(profiles), { mode: 0o600 });
    }
    const started = await Promise.allSettled(
      plan.map((p) =>
        startClickHouseServer({
          bin: o.bin,
          host,
          httpPort: p.httpPort,
          tcpPort: p.tcpPort,
          dir: p.dir,
          users: o.users,
          processGroup: o.processGroup,
        }),
      ),
    );
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
        await Promise.all(servers.map((s) => s.stop()));
        if (removeParent) rmSync(parent, { recursive: true, force: true });
      })());
    return { cluster, servers, stop, [Symbol.asyncDispose]: stop };
  }
}
