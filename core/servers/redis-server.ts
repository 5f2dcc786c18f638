import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { ConnectionError } from '../errors.js';
import { encodeCommand, RespError, RespReader, type RespValue } from '../redis/resp.js';
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
  /**
   * Extra redis-server args appended last, so they override the defaults, e.g. `['--appendonly', 'yes']`. @default []
   */
  args?: string[];
  /** Keep running after our process exits (restored instances must outlive `flashback restore`). @default false */
  detached?: boolean;
  /** Own process group, stopped with us (see SpawnServerSpec.processGroup). @default false */
  processGroup?: boolean;
  /** How long to wait for PING and `loading:0` (loading a large AOF takes time). @default 30_000 */
  readyTimeoutMs?: number;
  /** The server's environment (a restore on the source's clock sets libfaketime's). @default process.env */
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts redis-server with `--save "" --appendonly no --enable-debug-command local`, its log in `dir/redis.log`,
 * and resolves once it answers INFO as this very process (`process_id`) and has finished loading (`loading:0`).
 */
export async function startRedisServer(o: RedisServerOptions = {}): Promise<ServerProcess> {
  const { host = '127.0.0.1', args = [], detached = false, readyTimeoutMs = 30_000 } = o;
  const bin = resolveBinary('redis-server', ['redis-server'], o.bin);
  return retryOnPortInUse(async () => {
    const port = o.port ?? (await freePort(host));
    const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-redis-'));
    const logFile = path.join(dir, 'redis.log');
    return spawnServer({
      name: 'redis-server',
      bin,
      args: [
        '--bind',
        host,
        '--port',
        String(port),
        '--dir',
        dir,
        '--logfile',
        logFile,
        '--save',
        '',
        '--appendonly',
        'no',
        '--enable-debug-command',
        'local',
        ...args,
      ],
      host,
      port,
      dir,
      url: `redis://${urlHost(host)}:${port}`,
      logFile,
      detached,
      processGroup: o.processGroup,
      readyTimeoutMs,
      env: o.env,
      removeDir: o.dir === undefined,
      probe: async (pid, signal) => {
        const info = await redisCall(host, port, ['INFO', 'server', 'persistence'], signal);
        if (!Buffer.isBuffer(info)) return false;
        const text = info.toString('latin1');
        // Another server may hold the port we picked; only ours counts.
        return text.includes(`\r\nprocess_id:${pid}\r\n`) && text.includes('\r\nloading:0\r\n');
      },
      shutdown: async () => {
        // NOW: do not wait for lagging replicas (a capture agent's PSYNC link counts as one).
        // Success closes the connection without a reply; an error reply means it refused.
        const reply = await redisCall(host, port, ['SHUTDOWN', 'NOSAVE', 'NOW'], AbortSignal.timeout(5_000)).catch(
          () => undefined,
        );
        if (reply instanceof RespError) throw new Error(reply.message);
      },
    });
  }, o.port === undefined);
}

/**
 * One command on a fresh connection, abandoned when `signal` aborts. Not RawRedis: its handshake
 * PING has no deadline, and a probe must not hang on a port some other program holds.
 */
function redisCall(host: string, port: number, argv: readonly string[], signal: AbortSignal): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const reader = new RespReader();
    const done = (err: Error | undefined, value?: RespValue) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const onAbort = () =>
      done(new ConnectionError(`redis-server at ${host}:${port} did not answer ${argv[0]} in time`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    socket.on('connect', () => socket.write(encodeCommand(argv)));
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      try {
        const value = reader.read();
        if (value !== undefined) done(undefined, value);
      } catch (err) {
        done(err as Error);
      }
    });
    socket.on('error', (err) =>
      done(new ConnectionError(`redis-server at ${host}:${port}: ${err.message}`, { cause: err })),
    );
    socket.on('close', () => done(new ConnectionError(`redis-server at ${host}:${port} closed the connection`)));
  });
}
