import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.js';
import { resolveBinary, retryOnPortInUse, spawnServer, urlHost, type ServerProcess } from './server-process.js';

/** How to start a nats-server with JetStream. */
export interface NatsServerOptions {
  /** nats-server executable. @default `nats-server` on PATH or in /usr/sbin, /usr/bin … */
  bin?: string;
  /** Interface to bind (client and monitoring ports). @default '127.0.0.1' */
  host?: string;
  /** Client port. @default a free port (retried with another if it gets taken meanwhile) */
  port?: number;
  /** HTTP monitoring port (/healthz, /varz, /jsz). @default a free port */
  monitorPort?: number;
  /** Data dir: JetStream store in `dir/jetstream`, log in `dir/nats.log`. @default a new temp dir, removed on stop() */
  dir?: string;
  /**
   * A config file included by the server's own config (`dir/nats-server.conf`, which sets listen, monitor, JetStream
   * store and log from these options). `flashback up` puts the users and their permissions there
   * (core/bus/nats-permissions.ts), so no password is in argv.
   * @default none
   */
  configFile?: string;
  /** Extra nats-server args appended last. @default [] */
  args?: string[];
  /** Keep running after our process exits. @default false */
  detached?: boolean;
  /** Own process group, stopped with us (see SpawnServerSpec.processGroup). @default false */
  processGroup?: boolean;
  /** How long to wait for `/healthz?js-enabled-only=true`. @default 15_000 */
  readyTimeoutMs?: number;
}

/** A running nats-server and its monitoring endpoint. */
export interface NatsServerProcess extends ServerProcess {
  readonly monitorPort: number;
  /** `http://host:monitorPort`. */
  readonly monitorUrl: string;
  /** Makes the server read its config file again (SIGHUP): new users and permissions apply to new connections. */
  reload(): void;
}

/**
 * Starts `nats-server -js` with its store in `dir/jetstream`; resolves once it logged
 * "Server is ready" and `/healthz?js-enabled-only=true` answers ok.
 */
export async function startNatsServer(o: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const { host = '127.0.0.1', args = [], detached = false, readyTimeoutMs = 15_000 } = o;
  const bin = resolveBinary('nats-server', ['nats-server'], o.bin);
  return retryOnPortInUse(
    async () => {
      const port = o.port ?? (await freePort(host));
      let monitorPort = o.monitorPort ?? (await freePort(host));
      while (monitorPort === port) monitorPort = await freePort(host);
      const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-nats-'));
      const logFile = path.join(dir, 'nats.log');
      const monitorUrl = `http://${urlHost(host)}:${monitorPort}`;
      const storeDir = path.join(dir, 'jetstream');
      const flagArgs = [
        '-js',
        '-a',
        host,
        '-p',
        String(port),
        '-m',
        String(monitorPort),
        '-sd',
        storeDir,
        '-l',
        logFile,
      ];
      // With a config file everything goes in a main config that includes it: a reload (SIGHUP) re-reads only files,
      // and nats-server 2.9 turns JetStream off on a reload whose file does not enable it, whatever the flags said.
      const writeMainConfig = (included: string): string => {
        const main = path.join(dir, 'nats-server.conf');
        const q = JSON.stringify;
        const text = [
          `listen: ${q(`${urlHost(host)}:${port}`)}`,
          `http: ${q(`${urlHost(host)}:${monitorPort}`)}`,
          `jetstream { store_dir: ${q(storeDir)} }`,
          `log_file: ${q(logFile)}`,
          // Include paths are taken relative to this file's dir.
          `include ${q(path.relative(dir, path.resolve(included)))}`,
          '',
        ].join('\n');
        writeFileSync(main, text, { mode: 0o600 });
        return main;
      };
      const server = await spawnServer({
        name: 'nats-server',
        bin,
        args: [...(o.configFile === undefined ? flagArgs : ['-c', writeMainConfig(o.configFile)]), ...args],
        host,
        port,
        dir,
        url: `nats://${urlHost(host)}:${port}`,
        logFile,
        detached,
        processGroup: o.processGroup,
        readyTimeoutMs,
        removeDir: o.dir === undefined,
        probe: async (_pid, signal) => {
          // The monitor answers before the client port listens; the log line comes after both, and the log is ours
          // alone.
          const log = await readFile(logFile, 'utf8').catch(() => '');
          if (!log.includes('Server is ready')) return false;
          const res = await fetch(`${monitorUrl}/healthz?js-enabled-only=true`, { signal });
          return res.ok;
        },
      });
      return Object.assign(server, { monitorPort, monitorUrl, reload: () => process.kill(server.pid, 'SIGHUP') });
    },
    o.port === undefined || o.monitorPort === undefined,
  );
}
