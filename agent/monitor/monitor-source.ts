import { ProtocolError } from '../../core/errors.js';
import { RawRedis } from '../../core/redis/raw-redis.js';
import { RespError } from '../../core/redis/resp.js';
import type { RedisTarget } from '../../core/redis/redis-url.js';

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
    /**
     * Keyevent patterns to PSUBSCRIBE before MONITOR, over RESP3: their notifications then arrive on this same socket
     * as push frames, interleaved with the MONITOR lines in the exact order the server produced them (checked on
     * 7.0.15: a lazy expiry's notification comes just before the line of the command that caused it).
     */
    subscribe: readonly string[] = [],
  ): Promise<MonitorSource> {
    const conn = await RawRedis.connect(target, { clientName: 'flashback-monitor' });
    const id = await conn.call(['CLIENT', 'ID']);
    if (subscribe.length > 0) {
      const hello = await conn.call(['HELLO', '3']);
      if (hello instanceof RespError) {
        conn.close();
        throw new ProtocolError(
          `Redis refused HELLO 3 (${hello.message}): RESP3 (Redis 6 or later) is needed to read notifications in order with MONITOR`,
        );
      }
      for (const pattern of subscribe) {
        const r = await conn.call(['PSUBSCRIBE', pattern]);
        if (r instanceof RespError) {
          conn.close();
          throw new ProtocolError(
            `Redis refused PSUBSCRIBE ${pattern}: ${r.message}; the user needs the &* channel permission`,
          );
        }
      }
    }
    const ok = await conn.call(['MONITOR']);
    if (ok !== 'OK') {
      conn.close();
      throw new ProtocolError(
        `MONITOR was refused by Redis: ${String((ok as { message?: string })?.message ?? ok)}; the user needs the +monitor ACL permission`,
      );
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
      if (!source.closing)
        handlers.onClose(new Error(hadError ? 'MONITOR connection failed' : 'Redis closed the MONITOR connection'));
      else handlers.onClose(undefined);
    });
    return source;
  }

  close(): void {
    this.closing = true;
    this.conn.close();
  }
}
