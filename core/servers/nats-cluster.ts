import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ErrorCode, FlashbackError } from '../errors.js';
import { freePort } from './free-port.js';
import { startNatsServer, type NatsServerProcess } from './nats-server.js';
import { isPidAlive, ServerStartError, urlHost } from './server-process.js';

/** How to start a JetStream cluster of nats-servers on one machine (routes on loopback ports). */
export interface NatsClusterOptions {
  /** Servers in the cluster; 3 tolerates one down with R3 streams. @default 3 */
  size?: number;
  /** Cluster name (`cluster { name }`), also the prefix of each server's name (`flashback-1` …). @default 'flashback' */
  name?: string;
  /** nats-server executable. @default `nats-server` found as startNatsServer finds it */
  bin?: string;
  /** Interface every port binds. @default '127.0.0.1' */
  host?: string;
  /** Parent dir: server i keeps its store and log in `dir/<name>-<i>`. @default a new temp dir, removed on stop() */
  dir?: string;
  /** Config file every server includes (users and permissions: core/bus/nats-permissions.ts). @default none */
  configFile?: string;
  /** Own process groups, stopped with us (see SpawnServerSpec.processGroup). @default false */
  processGroup?: boolean;
  /** How long to wait for each server and then for a JetStream meta leader. @default 30_000 */
  readyTimeoutMs?: number;
}

/** One server of a {@link NatsCluster}: its ports stay the same across kill and restart. */
export interface NatsClusterMember {
  /** Server name (`server_name`), as JetStream reports leaders and replicas. */
  readonly name: string;
  readonly port: number;
  readonly monitorPort: number;
  /** Route port (`cluster { listen }`). */
  readonly clusterPort: number;
  readonly dir: string;
  /** `nats://host:port` of this server. */
  readonly url: string;
  /** The running process; undefined while killed. */
  process: NatsServerProcess | undefined;
}

/** A running JetStream cluster. */
export interface NatsCluster {
  readonly members: readonly NatsClusterMember[];
  /** Every member's client URL, comma-separated: what services take as `--nats` (the client fails over). */
  readonly url: string;
  /** Kills member `i` at once (SIGKILL: no lame duck, no clean shutdown) and waits until it is gone. */
  kill(i: number): Promise<void>;
  /** Starts a killed member again on its ports and store; resolves when it serves and has rejoined the meta group. */
  restart(i: number): Promise<void>;
  /** Name of the server leading `stream`'s raft group (or the meta group when `stream` is undefined), asked of any live member. */
  leader(stream?: string): Promise<string | undefined>;
  /** Index of the member named `name`. */
  indexOf(name: string): number;
  /** SIGHUP to every live member (users added to the included config file). */
  reload(): void;
  /** Stops every member (idempotent). */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface JszAnswer {
  meta_cluster?: { leader?: string; cluster_size?: number };
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
}

/**
 * Starts `size` nats-servers with JetStream that route to each other (cluster name and server names set, routes to
 * every member on loopback ports) and resolves once JetStream has a meta leader over all of them: streams with
 * `num_replicas` up to `size` can then be created. The nats-server launcher (core/servers/nats-server.ts) runs each
 * member; the cluster settings are flags, which override its config file on start and on reload.
 */
export async function startNatsCluster(o: NatsClusterOptions = {}): Promise<NatsCluster> {
  const { size = 3, name = 'flashback', host = '127.0.0.1', readyTimeoutMs = 30_000 } = o;
  if (!Number.isInteger(size) || size < 1 || size > 9)
    throw new FlashbackError(
      ErrorCode.BadInput,
      `a NATS cluster of ${size} servers is not supported; use 1 to 9 (3 is usual)`,
    );
  const parent = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-nats-cluster-'));
  const removeParent = o.dir === undefined;
  // All ports are picked before any server starts: every member's routes name every other member.
  for (let attempt = 1; ; attempt++) {
    const taken = new Set<number>();
    const pick = async () => {
      let p = await freePort(host);
      while (taken.has(p)) p = await freePort(host);
      taken.add(p);
      return p;
    };
    const members: NatsClusterMember[] = [];
    for (let i = 1; i <= size; i++) {
      const dir = path.join(parent, `${name}-${i}`);
      mkdirSync(dir, { recursive: true });
      const port = await pick();
      members.push({
        name: `${name}-${i}`,
        port,
        monitorPort: await pick(),
        clusterPort: await pick(),
        dir,
        url: `nats://${urlHost(host)}:${port}`,
        process: undefined,
      });
    }
    const routes = members.map((m) => `nats://${urlHost(host)}:${m.clusterPort}`).join(',');
    const startMember = (m: NatsClusterMember) =>
      startNatsServer({
        bin: o.bin,
        host,
        port: m.port,
        monitorPort: m.monitorPort,
        dir: m.dir,
        configFile: o.configFile,
        processGroup: o.processGroup,
        readyTimeoutMs,
        args: [
          '--name',
          m.name,
          '--cluster_name',
          name,
          '--cluster',
          `nats://${urlHost(host)}:${m.clusterPort}`,
          '--routes',
          routes,
        ],
      }).then((p) => {
        m.process = p;
      });
    const started = await Promise.allSettled(members.map(startMember));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(members.map((m) => m.process?.stop()));
      const err = failed.reason as unknown;
      if (attempt < 3 && err instanceof ServerStartError && err.portInUse) continue;
      if (removeParent) rmSync(parent, { recursive: true, force: true });
      throw err;
    }
    const cluster = makeCluster(members, parent, removeParent, startMember, readyTimeoutMs);
    try {
      await waitForMetaLeader(members, size, readyTimeoutMs);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }
}

async function jsz(m: NatsClusterMember, query = ''): Promise<JszAnswer | undefined> {
  if (!m.process) return undefined;
  try {
    const res = await fetch(`http://${urlHost(m.process.host)}:${m.monitorPort}/jsz${query}`, {
      signal: AbortSignal.timeout(2_000),
    });
    return res.ok ? ((await res.json()) as JszAnswer) : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until every live member sees one meta leader and a meta group of `size`. */
async function waitForMetaLeader(
  members: readonly NatsClusterMember[],
  size: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = members.filter((m) => m.process);
    const answers = await Promise.all(live.map((m) => jsz(m)));
    const leaders = new Set(answers.map((a) => a?.meta_cluster?.leader));
    const [leader] = leaders;
    if (
      leaders.size === 1 &&
      leader !== undefined &&
      leader !== '' &&
      answers.every((a) => (a?.meta_cluster?.cluster_size ?? 0) >= size)
    )
      return;
    if (Date.now() > deadline)
      throw new FlashbackError(
        ErrorCode.Internal,
        `the NATS cluster elected no JetStream meta leader within ${timeoutMs} ms; see the logs in ${members.map((m) => m.dir).join(', ')}`,
      );
    await delay(100);
  }
}

function makeCluster(
  members: NatsClusterMember[],
  parent: string,
  removeParent: boolean,
  startMember: (m: NatsClusterMember) => Promise<void>,
  readyTimeoutMs: number,
): NatsCluster {
  let stopping: Promise<void> | undefined;
  const member = (i: number) => {
    const m = members[i];
    if (!m) throw new FlashbackError(ErrorCode.BadInput, `the NATS cluster has no member ${i}`);
    return m;
  };
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.all(members.map((m) => m.process?.stop()));
      for (const m of members) m.process = undefined;
      if (removeParent) rmSync(parent, { recursive: true, force: true });
    })());
  return {
    members,
    url: members.map((m) => m.url).join(','),
    async kill(i) {
      const m = member(i);
      const p = m.process;
      if (!p) return;
      m.process = undefined;
      if (isPidAlive(p.pid)) process.kill(p.pid, 'SIGKILL');
      await p.stop();
    },
    async restart(i) {
      const m = member(i);
      if (m.process) return;
      await startMember(m);
      await waitForMetaLeader(members, members.length, readyTimeoutMs);
    },
    async leader(stream) {
      for (const m of members) {
        const a = await jsz(m, stream === undefined ? '' : '?accounts=true&streams=true');
        if (!a) continue;
        if (stream === undefined) return a.meta_cluster?.leader || undefined;
        for (const acc of a.account_details ?? [])
          for (const s of acc.stream_detail ?? []) if (s.name === stream && s.cluster?.leader) return s.cluster.leader;
      }
      return undefined;
    },
    indexOf(name) {
      return members.findIndex((m) => m.name === name);
    },
    reload() {
      for (const m of members) m.process?.reload();
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
