import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startAgent, type Agent } from '../agent/index.js';
import { writeContext } from './context.js';
import { startApi, type Api } from '../api/index.js';
import { ConfigError, describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { startNatsCluster } from '../core/servers/nats-cluster.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { isPidAlive } from '../core/servers/server-process.js';
import { startRestorer } from '../restorer/index.js';
import { startSink } from '../sink/index.js';
import { ensureJobKeyFile } from '../core/bus/job-secret.js';
import type { NatsRole } from '../core/bus/nats-permissions.js';
import type { ClickHouseAuth } from '../core/store/clickhouse.js';
import { agentNode, loadStackSecrets, prepareNats, waitForNatsUser } from './stack-secrets.js';

/** Options of a whole stack on one machine (`flashback up`). */
export interface LocalStackOptions {
  /** Where NATS, ClickHouse, restored instances and the API token live. @default ./.flashback */
  dataDir: string;
  /** Use this NATS instead of starting one. */
  natsUrl?: string;
  /**
   * Start a JetStream cluster of this many nats-servers (routes on loopback ports, stores in `<dataDir>/nats-cluster`)
   * instead of one server (docs/scale.md). @default 1: one nats-server
   */
  natsCluster?: number;
  /**
   * JetStream replicas of the event stream, baseline bucket, restore-job stream and KV buckets when this stack creates
   * them. @default 3 with a cluster of 3 or more, else the cluster size (1 without one)
   */
  replicas?: number;
  /** Use this ClickHouse instead of starting one. */
  clickhouseUrl?: string;
  /** A sharded `clickhouseUrl`: one server per shard, where the sink's retention drops history (docs/scale.md). */
  clickhouseShardUrls?: string[];
  /** API port (0 = a free one). @default 7480 */
  apiPort: number;
  /** Redis nodes to capture, one agent each. */
  redisUrls: string[];
  /** History kept, ms. */
  retentionMs: number;
  /** Agents store writes that changed nothing as audit rows (`--audit-noops`). @default false */
  auditNoops?: boolean;
  /** Background restore check of stretches between baselines (restorer/verifier.ts), ms; 0 = off. @default 60_000 */
  verifyIntervalMs?: number;
  logger: Logger;
}

/** A running stack; `close()` stops every part, children included, in reverse order. */
export interface LocalStack {
  apiUrl: string;
  token: string;
  /** Set when the token was generated now (print it once). */
  tokenFile?: string;
  natsUrl: string;
  clickhouseUrl: string;
  agents: Agent[];
  addAgent(redisUrl: string, nodeId?: string): Promise<Agent>;
  close(): Promise<void>;
}

/** Reads FLASHBACK_API_TOKENS, or the data dir's token, or makes one and stores it (mode 600). */
async function apiToken(
  dataDir: string,
): Promise<{ token: string; tokens: string[]; file?: string; created?: string }> {
  const fromEnv = (process.env.FLASHBACK_API_TOKENS ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (fromEnv.length > 0) return { token: fromEnv[0]!, tokens: fromEnv };
  const file = path.join(dataDir, 'api-token');
  const existing = await readFile(file, 'utf8').then(
    (t) => t.trim(),
    () => '',
  );
  if (existing) return { token: existing, tokens: [existing], file };
  // Hex: a token must never start with '-', which a shell's flag parser would take for an option.
  const token = randomBytes(24).toString('hex');
  await writeFile(file, token + '\n', { mode: 0o600 });
  await chmod(file, 0o600);
  return { token, tokens: [token], file, created: file };
}

/** One `up` per data dir: a second one would fight over the servers' files. */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const file = path.join(dataDir, 'up.pid');
  const other = Number(await readFile(file, 'utf8').catch(() => '0'));
  if (other > 0 && other !== process.pid && isPidAlive(other)) {
    throw new ConfigError(`another flashback up (pid ${other}) runs on ${dataDir}; stop it, or use another --data-dir`);
  }
  await writeFile(file, String(process.pid));
  return () => rm(file, { force: true });
}

/** Starts NATS and ClickHouse (unless given), the sink, a restorer, the API and one agent per Redis. */
export async function startLocalStack(o: LocalStackOptions): Promise<LocalStack> {
  const { logger } = o;
  const dataDir = path.resolve(o.dataDir);
  await mkdir(dataDir, { recursive: true });
  const unlock = await lockDataDir(dataDir);
  const closers: (() => Promise<unknown>)[] = [unlock];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) {
      await c().catch((err: unknown) => logger.warn({ err: describeError(err) }, 'error while stopping'));
    }
  };
  try {
    // Servers this stack starts get generated users and permissions (cli/stack-secrets.ts, docs/security.md);
    // servers given with --nats / --clickhouse are used as they are.
    const secrets = await loadStackSecrets(
      dataDir,
      o.redisUrls.map((u) => agentNode(u)),
    );
    let natsUrl = o.natsUrl;
    // What adding an agent's user needs: every server reloads the users file, then each accepts the new user.
    let natsServer: { urls: string[]; reload(): void } | undefined;
    const natsCluster = o.natsCluster ?? 1;
    const replicas = o.replicas ?? Math.min(3, natsCluster);
    if (!natsUrl && replicas > natsCluster)
      throw new ConfigError(
        `--replicas ${replicas} needs as many NATS servers; add --nats-cluster ${Math.max(3, replicas)}, or lower --replicas`,
      );
    if (!natsUrl && natsCluster > 1) {
      const clusterDir = path.join(dataDir, 'nats-cluster');
      await mkdir(clusterDir, { recursive: true });
      const cluster = await startNatsCluster({
        size: natsCluster,
        dir: clusterDir,
        processGroup: true,
        configFile: secrets.natsConfigFile,
      });
      closers.push(() => cluster.stop());
      natsUrl = cluster.url;
      natsServer = { urls: cluster.members.map((m) => m.url), reload: () => cluster.reload() };
      logger.info(
        { url: cluster.url, pids: cluster.members.map((m) => m.process?.pid), replicas },
        'nats-server cluster started (a user per service)',
      );
      await prepareNats(cluster.url, secrets.nats({ role: 'admin' }), o.retentionMs, replicas);
    } else if (!natsUrl) {
      await mkdir(path.join(dataDir, 'nats'), { recursive: true });
      const nats = await startNatsServer({
        dir: path.join(dataDir, 'nats'),
        processGroup: true,
        configFile: secrets.natsConfigFile,
      });
      closers.push(() => nats.stop());
      natsUrl = nats.url;
      natsServer = { urls: [nats.url], reload: () => nats.reload() };
      logger.info({ url: nats.url, pid: nats.pid }, 'nats-server started (a user per service)');
      await prepareNats(nats.url, secrets.nats({ role: 'admin' }), o.retentionMs, replicas);
    } else if (o.replicas !== undefined) {
      // A NATS given with --nats gets the replicas asked for on what does not exist yet.
      await prepareNats(natsUrl, {}, o.retentionMs, o.replicas);
    }
    const natsAuth = (role: NatsRole) => (natsServer ? secrets.nats(role) : undefined);
    let clickhouseUrl = o.clickhouseUrl;
    if (!clickhouseUrl) {
      await mkdir(path.join(dataDir, 'clickhouse'), { recursive: true });
      const ch = await startClickHouseServer({
        dir: path.join(dataDir, 'clickhouse'),
        processGroup: true,
        users: secrets.clickhouseUsers,
      });
      closers.push(() => ch.stop());
      clickhouseUrl = ch.url;
      logger.info({ url: ch.url, pid: ch.pid }, 'clickhouse-server started (admin password, read-only API users)');
    }
    const ownClickHouse = o.clickhouseUrl === undefined;
    const chAuth = (auth: ClickHouseAuth) => (ownClickHouse ? auth : undefined);
    const sink = await startSink({
      natsUrl,
      natsAuth: natsAuth({ role: 'sink' }),
      clickhouseUrl,
      clickhouseAuth: chAuth(secrets.clickhouseAdmin),
      logger: logger.child({ service: 'sink' }),
      retentionMs: o.retentionMs,
      clickhouseShardUrls: o.clickhouseShardUrls,
    });
    closers.push(() => sink.close());
    // API and restorer share a key for secrets in restore jobs (core/bus/job-secret.ts); restore jobs' RDB files
    // go to one export dir.
    const jobKey = await ensureJobKeyFile(path.join(dataDir, 'secrets', 'job-key'));
    const exportDir = path.join(dataDir, 'exports');
    const restorer = await startRestorer({
      jobKey,
      exportDir,
      natsUrl,
      natsAuth: natsAuth({ role: 'restorer' }),
      clickhouseUrl,
      clickhouseAuth: chAuth(secrets.clickhouseAdmin),
      instancesDir: path.join(dataDir, 'instances'),
      verifyIntervalMs: o.verifyIntervalMs ?? 60_000,
      logger: logger.child({ service: 'restorer' }),
    });
    closers.push(() => restorer.close());
    const tok = await apiToken(dataDir);
    const agents: Agent[] = [];
    const api: Api = await startApi({
      jobKey,
      exportDir,
      // One process, one scrape: the API's /metrics carries every service's metrics.
      metrics: () => [sink.metrics(), restorer.metrics(), ...agents.map((a) => a.metrics())],
      port: o.apiPort,
      natsUrl,
      natsAuth: natsAuth({ role: 'api' }),
      clickhouseUrl,
      clickhouseAuth: chAuth(secrets.clickhouseApi),
      clickhouseSqlAuth: chAuth(secrets.clickhouseSql),
      tokens: tok.tokens,
      logger: logger.child({ service: 'api' }),
      retentionMs: o.retentionMs,
    });
    closers.push(() => api.close());
    // Lets `flashback windows`, `sql`, `restore` … in another terminal find this stack (cli/context.ts).
    const removeContext = await writeContext({
      apiUrl: api.url,
      tokenFile: tok.file,
      clickhouseUrl,
      natsUrl,
      pid: process.pid,
      dataDir,
    });
    closers.push(removeContext);
    const addAgent = async (redisUrl: string, nodeId?: string) => {
      const node = agentNode(redisUrl, nodeId);
      if (natsServer && (await secrets.addAgent(node))) {
        natsServer.reload();
        for (const url of natsServer.urls) await waitForNatsUser(url, secrets.nats({ role: 'agent', node }));
      }
      const agent = await startAgent({
        redisUrl,
        nodeId,
        natsUrl: natsUrl!,
        natsAuth: natsAuth({ role: 'agent', node }),
        retentionMs: o.retentionMs,
        // Replication capture with MONITOR beside it: exact effects, and each event's client and µs time.
        source: 'replication',
        attribution: 'monitor',
        auditNoops: o.auditNoops,
        logger: logger.child({ service: 'agent' }),
      });
      agents.push(agent);
      closers.push(() => agent.close());
      return agent;
    };
    for (const url of o.redisUrls) await addAgent(url);
    return {
      apiUrl: api.url,
      token: tok.token,
      tokenFile: tok.created,
      natsUrl,
      clickhouseUrl,
      agents,
      addAgent,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
