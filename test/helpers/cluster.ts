import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort } from '../../core/servers/free-port.js';
import { startRedisServer } from '../../core/servers/redis-server.js';
import { findExecutable, ServerStartError, type ServerProcess } from '../../core/servers/server-process.js';
import { waitFor } from './stack.js';

const run = promisify(execFile);

/** One node of a test cluster. */
export interface ClusterNode {
  server: ServerProcess;
  url: string;
  /** CLUSTER MYID. */
  id: string;
}

/**
 * A loopback Redis Cluster, by default 3 masters + 3 replicas (each on its own free port and temp dir).
 */
export interface TestCluster {
  /**
   * The masters in slot order, each holding one contiguous range as `--cluster create` assigns them (3 masters:
   * [0] 0–5460, [1] 5461–10922, [2] 10923–16383; N masters: 16384 / N slots each, the same layout for every cluster
   * of N masters).
   */
  masters: ClusterNode[];
  /** replicas[i] replicates masters[i] (empty for a cluster started with `replicas: 0`). */
  replicas: ClusterNode[];
  /** Every node. */
  nodes: ClusterNode[];
  /** A cluster client (close it yourself). */
  client(): Cluster;
  /** Stops every node; idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The shape of a test cluster. */
export interface TestClusterOptions {
  /**
   * Masters (redis-cli needs at least 3).
   * @default 3
   */
  masters?: number;
  /**
   * Replicas per master (0 or 1).
   * @default 1
   */
  replicas?: 0 | 1;
}

/**
 * Starts masters × (1 + replicas) redis-servers with `--cluster-enabled yes` (data port and cluster bus port both
 * OS-picked, so the default bus port = port + 10 000 never collides), creates the cluster with `redis-cli --cluster
 * create … --cluster-replicas R --cluster-yes`, and resolves once every node reports `cluster_state:ok`, knows every
 * node, and every replica has finished its initial sync. The default is 3 masters + 3 replicas.
 * @param args extra redis-server args for every node (e.g. SOURCE_ARGS).
 */
export async function startTestCluster(
  args: string[] = [],
  { masters: masterCount = 3, replicas: perMaster = 1 }: TestClusterOptions = {},
): Promise<TestCluster> {
  if (masterCount < 3) throw new Error(`a test cluster needs at least 3 masters (redis-cli), not ${masterCount}`);
  const total = masterCount * (1 + perMaster);
  const servers: ServerProcess[] = [];
  const stopAll = async () => {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
  };
  try {
    for (let i = 0; i < total; i++) servers.push(await startClusterNode(args));
    const cli = findExecutable('redis-cli');
    if (!cli) throw new Error('redis-cli not found; install redis-tools (deploy/install-servers.sh)');
    // redis-cli makes the first `masterCount` addresses masters (slots in order) and the rest their replicas.
    await run(
      cli,
      [
        '--cluster',
        'create',
        ...servers.map((s) => `127.0.0.1:${s.port}`),
        '--cluster-replicas',
        String(perMaster),
        '--cluster-yes',
      ],
      { timeout: 60_000 },
    );
    const ids = await Promise.all(
      servers.map((s) => withRedis(s.url, async (r) => String(await r.call('CLUSTER', 'MYID')))),
    );
    const nodes = servers.map((server, i) => ({ server, url: server.url, id: ids[i]! }));
    // redis-cli returns once the nodes agree on the slots; roles reach every node's table a moment later.
    const topology = await waitFor(
      `cluster_state:ok and ${masterCount} masters with slots + ${masterCount * perMaster} replicas in every node's CLUSTER NODES`,
      async () => {
        let last: string[][] | undefined;
        for (const n of nodes) {
          const info = await withRedis(n.url, async (r) => String(await r.call('CLUSTER', 'INFO')));
          if (!/^cluster_state:ok/m.test(info)) return undefined;
          const table = await withRedis(n.url, async (r) => String(await r.call('CLUSTER', 'NODES')));
          const rows = table
            .trim()
            .split('\n')
            .map((l) => l.split(' '));
          const masters = rows.filter((f) => f[2]!.includes('master') && f.length > 8);
          const slaves = rows.filter((f) => f[2]!.includes('slave') && f[3] !== '-');
          if (rows.length !== total || masters.length !== masterCount || slaves.length !== masterCount * perMaster)
            return undefined;
          last = rows;
        }
        return last;
      },
      30_000,
    );
    // Which master each replica follows is redis-cli's choice: pair them by CLUSTER NODES, masters by first slot.
    const masters: ClusterNode[] = [];
    const replicas: ClusterNode[] = [];
    const masterRows = topology
      .filter((f) => f[2]!.includes('master'))
      .sort((a, b) => Number(a[8]!.split('-')[0]) - Number(b[8]!.split('-')[0]));
    for (const m of masterRows) {
      masters.push(nodes.find((n) => n.id === m[0])!);
      if (perMaster > 0) replicas.push(nodes.find((n) => n.id === topology.find((f) => f[3] === m[0])![0])!);
    }
    await waitFor(
      'every replica synced with its master',
      async () => {
        for (const rep of replicas) {
          const info = await withRedis(rep.url, async (r) => String(await r.call('INFO', 'replication')));
          if (!/^master_link_status:up/m.test(info) || /^master_sync_in_progress:1/m.test(info)) return undefined;
        }
        return true;
      },
      30_000,
    );
    let closing: Promise<void> | undefined;
    const close = () => (closing ??= stopAll());
    return {
      masters,
      replicas,
      nodes,
      client: () =>
        new Cluster(
          masters.map((m) => ({ host: m.server.host, port: m.server.port })),
          { enableReadyCheck: true, clusterRetryStrategy: () => null },
        ),
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function startClusterNode(args: string[]): Promise<ServerProcess> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const bus = await freePort();
    try {
      return await startRedisServer({
        port,
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-port',
          String(bus),
          '--cluster-node-timeout',
          '3000',
          ...args,
        ],
      });
    } catch (err) {
      // Our picked ports may be taken meanwhile (data or bus port): pick others.
      if (!(err instanceof ServerStartError && err.portInUse && attempt < 5)) throw err;
    }
  }
}

/** One short-lived ioredis connection. */
export async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => {});
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}
