import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.js';
import { resolveBinary, retryOnPortInUse, spawnServer, urlHost, type ServerProcess } from './server-process.js';

/** Where Debian's `zookeeper` package puts the server (its jar names its dependencies in its manifest). */
export const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';

/** How to start a standalone ZooKeeper (what replicated ClickHouse tables coordinate through). */
export interface ZooKeeperOptions {
  /** Java executable. @default `java` on PATH */
  java?: string;
  /** The ZooKeeper jar. @default {@link ZOOKEEPER_JAR} (Debian's `zookeeper` package) */
  jar?: string;
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /** Client port. @default a free port */
  port?: number;
  /** Data dir (snapshots, transaction log, zoo.cfg, log). @default a new temp dir, removed on stop() */
  dir?: string;
  /** How long to wait for `srvr` to answer. @default 60_000 (a JVM starting on a busy machine) */
  readyTimeoutMs?: number;
}

/** Asks ZooKeeper's `srvr` four-letter command; resolves its answer ('' on any failure). */
function srvr(host: string, port: number, signal: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port }, () => s.write('srvr'));
    let out = '';
    const done = () => {
      s.destroy();
      resolve(out);
    };
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.once('close', done);
    s.once('error', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Starts a standalone ZooKeeper (`ZooKeeperServerMain` with a zoo.cfg of its own: loopback only, no admin HTTP
 * server, only the `srvr` and `ruok` four-letter commands) and resolves once `srvr` answers.
 */
export async function startZooKeeper(o: ZooKeeperOptions = {}): Promise<ServerProcess> {
  const { host = '127.0.0.1', jar = ZOOKEEPER_JAR, readyTimeoutMs = 60_000 } = o;
  const java = resolveBinary('java', ['java'], o.java);
  return retryOnPortInUse(async () => {
    const port = o.port ?? (await freePort(host));
    const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-zookeeper-'));
    mkdirSync(path.join(dir, 'data'), { recursive: true });
    const config = path.join(dir, 'zoo.cfg');
    writeFileSync(
      config,
      [
        // Sessions may be as short as 2 ticks: a killed client's ephemeral nodes go within seconds.
        'tickTime=500',
        `dataDir=${path.join(dir, 'data')}`,
        `clientPort=${port}`,
        `clientPortAddress=${host}`,
        'admin.enableServer=false',
        '4lw.commands.whitelist=srvr,ruok',
        'maxClientCnxns=0',
        '',
      ].join('\n'),
    );
    const logFile = path.join(dir, 'zookeeper.log');
    return spawnServer({
      name: 'zookeeper',
      bin: java,
      args: ['-Xmx256m', '-cp', jar, 'org.apache.zookeeper.server.ZooKeeperServerMain', config],
      host,
      port,
      dir,
      url: `zookeeper://${urlHost(host)}:${port}`,
      logFile,
      detached: false,
      readyTimeoutMs,
      removeDir: o.dir === undefined,
      probe: async (_pid, signal) => /Mode: standalone/.test(await srvr(host, port, signal)),
    });
  }, o.port === undefined);
}
