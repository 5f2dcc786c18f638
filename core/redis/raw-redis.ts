import net from 'node:net';
import tls from 'node:tls';
import { ConfigError, ConnectionError, ProtocolError } from '../errors.js';
import { encodeCommand, RespError, RespReader, type RespValue } from './resp.js';
import { redisAddress, type RedisTarget } from './redis-url.js';

/**
 * A Redis connection whose bytes we read ourselves: MONITOR and PSYNC need
 * the raw stream (ioredis decodes MONITOR to strings, which is not binary-safe).
 * `call()` serves the handshake; `detach()` hands the socket to a stream parser.
 */
export class RawRedis {
  private readonly reader = new RespReader();
  private readonly waiting: { resolve: (v: RespValue) => void; reject: (e: Error) => void }[] = [];
  private closedError: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.reader.push(chunk);
    let v: RespValue | undefined;
    try {
      while (this.waiting.length > 0 && (v = this.reader.read()) !== undefined) this.waiting.shift()!.resolve(v);
    } catch (err) {
      this.fail(err as Error);
    }
  };

  private constructor(
    readonly socket: net.Socket,
    readonly target: RedisTarget,
  ) {
    socket.on('data', this.onData);
    socket.on('error', (err) => this.fail(this.translate(err)));
    socket.on('close', () => this.fail(new ConnectionError(`Redis ${redisAddress(target)} closed the connection`)));
  }

  /** Connects, authenticates and names the client; rejects with one clear error. */
  static async connect(
    target: RedisTarget,
    options: { clientName?: string; timeoutMs?: number } = {},
  ): Promise<RawRedis> {
    const { clientName, timeoutMs = 5_000 } = options;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s: net.Socket = target.tls
        ? tls.connect({
            host: target.host,
            port: target.port,
            servername: net.isIP(target.host) ? undefined : target.host,
          })
        : net.connect({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(
          new ConnectionError(
            `cannot connect to Redis at ${redisAddress(target)}: no answer in ${timeoutMs} ms; check the host and port`,
          ),
        );
      }, timeoutMs);
      s.once(target.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(RawRedis.translateError(target, err));
      });
    });
    socket.setNoDelay(true);
    const conn = new RawRedis(socket, target);
    try {
      if (target.password !== undefined || target.username !== undefined) {
        const argv = target.username
          ? ['AUTH', target.username, target.password ?? '']
          : ['AUTH', target.password ?? ''];
        const r = await conn.call(argv);
        if (r instanceof RespError)
          throw new ConfigError(
            `Redis ${redisAddress(target)} refused AUTH: ${r.message}; check the user and password in the URL`,
          );
      }
      const ping = await conn.call(['PING']);
      if (ping instanceof RespError) {
        throw ping.message.startsWith('NOAUTH')
          ? new ConfigError(
              `Redis ${redisAddress(target)} needs a password: put it in the URL (redis://user:password@host:port)`,
            )
          : new ProtocolError(`Redis ${redisAddress(target)} answered PING with ${ping.message}`);
      }
      if (clientName) await conn.call(['CLIENT', 'SETNAME', clientName]);
    } catch (err) {
      conn.close();
      throw err;
    }
    return conn;
  }

  private static translateError(target: RedisTarget, err: Error & { code?: string }): Error {
    const where = `Redis at ${redisAddress(target)}`;
    if (err.code === 'ECONNREFUSED')
      return new ConnectionError(`cannot connect to ${where}: connection refused; is redis-server running there?`, {
        cause: err,
      });
    if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN')
      return new ConnectionError(`cannot connect to ${where}: unknown host "${target.host}"`, { cause: err });
    return new ConnectionError(`connection to ${where} failed: ${err.message}`, { cause: err });
  }

  private translate(err: Error): Error {
    return RawRedis.translateError(this.target, err);
  }

  private fail(err: Error): void {
    if (!this.closedError) this.closedError = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  /** Sends one command and resolves with its reply (error replies are resolved as RespError). */
  call(argv: readonly (Buffer | string | number)[]): Promise<RespValue> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(encodeCommand(argv));
    });
  }

  /** Sends a command without waiting (the caller reads the stream itself). */
  send(argv: readonly (Buffer | string | number)[]): void {
    this.socket.write(encodeCommand(argv));
  }

  /** Stops parsing replies here and returns the bytes already received but not consumed. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    return this.reader.takeRemaining();
  }

  close(): void {
    this.socket.destroy();
  }
}
