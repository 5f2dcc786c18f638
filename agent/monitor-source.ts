import { ProtocolError } from '../core/errors.js';
import { RawRedis } from '../core/raw-redis.js';
import type { RedisTarget } from '../core/redis-url.js';

/**
 * The MONITOR connection, read as raw bytes. Every chunk goes to `onData`
 * synchronously in the socket's 'data' handler, so the reader never waits on
 * anything downstream: Redis would otherwise buffer our output without limit.
 */
export class MonitorSource {
  /** Server-side client id, for CLIENT LIST ID (output-buffer metrics) and CLIENT KILL. */
  bytesRead = 0;
  private closing = false;

  private constructor(
    private readonly conn: RawRedis,
    readonly clientId: number,
  ) {}

  static async start(
    target: RedisTarget,
    handlers: { onData: (chunk: Buffer) => void; onClose: (err: Error | undefined) => void },
  ): Promise<MonitorSource> {
    const conn = await RawRedis.connect(target, { clientName: 'flashback-monitor' });
    const id = await conn.call(['CLIENT', 'ID']);
    const ok = await conn.call(['MONITOR']);
    if (ok !== 'OK') {
      conn.close();
      throw new ProtocolError(`MONITOR was refused by Redis: ${String((ok as { message?: string })?.message ?? ok)}; the user needs the +monitor ACL permission`);
    }
    const source = new MonitorSource(conn, Number(id));
    const rest = conn.detach();
    const onData = (chunk: Buffer) => {
      source.bytesRead += chunk.length;
      handlers.onData(chunk);
    };
    if (rest.length > 0) onData(rest);
    conn.socket.on('data', onData);
    conn.socket.once('close', (hadError) => {
      if (!source.closing) handlers.onClose(new Error(hadError ? 'MONITOR connection failed' : 'Redis closed the MONITOR connection'));
      else handlers.onClose(undefined);
    });
    return source;
  }

  close(): void {
    this.closing = true;
    this.conn.close();
  }
}
