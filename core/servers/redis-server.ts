import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RawRedis } from '../raw-redis.js';
import { RespError } from '../resp.js';
import { freePort } from './free-port.js';
import { resolveBinary, retryOnPortInUse, spawnServer, urlHost, type ServerProcess } from './server-process.js';

/** How to start a redis-server. */
export interface RedisServerOptions {
  /** redis-server executable. @default `redis-server` on PATH or in /usr/sbin, /usr/bin … */
  bin?: string;
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /** TCP port. @default a free port (retried with another if it gets taken meanwhile) */
  port?: number;
  /** Data dir (RDB, AOF dir, log). @default a new temp dir, removed on stop() */
  dir?: string;
  /** Extra redis-server args appended last, so they override the defaults, e.g. `['--appendonly', 'yes']`. @default [] */
  args?: string[];
  /** Keep running after our process exits (restored instances must outlive `flashback restore`). @default false */
  detached?: boolean;
  /** How long to wait for PING and `loading:0` (loading a large AOF takes time). @default 30_000 */
  readyTimeoutMs?: number;
}

/**
 * Starts redis-server with `--save "" --appendonly no --enable-debug-command local`, its log in `dir/redis.log`,
 * and resolves once it answers PING and has finished loading (INFO persistence `loading:0`).
 */
export async function startRedisServer(o: RedisServerOptions = {}): Promise<ServerProcess> {
  const { host = '127.0.0.1', args = [], detached = false, readyTimeoutMs = 30_000 } = o;
  const bin = resolveBinary('redis-server', ['redis-server'], o.bin);
  return retryOnPortInUse(async () => {
    const port = o.port ?? (await freePort(host));
    const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-redis-'));
    const logFile = path.join(dir, 'redis.log');
    const target = { host, port, db: 0, tls: false };
    return spawnServer({
      name: 'redis-server',
      bin,
      args: [
        '--bind', host, '--port', String(port), '--dir', dir, '--logfile', logFile,
        '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local',
        ...args,
      ],
      host,
      port,
      dir,
      url: `redis://${urlHost(host)}:${port}`,
      logFile,
      detached,
      readyTimeoutMs,
      removeDir: o.dir === undefined,
      probe: async (pid) => {
        const conn = await RawRedis.connect(target, { timeoutMs: 1_000 });
        try {
          const info = await conn.call(['INFO', 'server', 'persistence']);
          if (!Buffer.isBuffer(info)) return false;
          const text = info.toString('latin1');
          // Another server may hold the port we picked; only ours counts.
          return text.includes(`\r\nprocess_id:${pid}\r\n`) && text.includes('\r\nloading:0\r\n');
        } finally {
          conn.close();
        }
      },
      shutdown: async () => {
        const conn = await RawRedis.connect(target, { timeoutMs: 1_000 });
        try {
          // NOW: do not wait for lagging replicas (a capture agent's PSYNC link counts as one).
          const reply = await conn.call(['SHUTDOWN', 'NOSAVE', 'NOW']).catch(() => undefined);
          if (reply instanceof RespError) throw new Error(reply.message);
        } finally {
          conn.close();
        }
      },
    });
  }, o.port === undefined);
}
