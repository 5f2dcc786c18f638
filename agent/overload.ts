import type { RawRedis } from '../core/redis/raw-redis.js';
import { RespError } from '../core/redis/resp.js';

/** Reads the server-side output buffer of a client (CLIENT LIST omem), bytes; 0 when the client is gone. */
export async function readClientOutputBytes(control: RawRedis, clientId: number): Promise<number> {
  const r = await control.call(['CLIENT', 'LIST', 'ID', clientId]);
  const text = Buffer.isBuffer(r) ? r.toString('latin1') : r instanceof RespError ? '' : String(r);
  return Number(/(?:^|\s)omem=(\d+)/.exec(text)?.[1] ?? 0);
}

/** Two consecutive samples of our MONITOR client's output buffer, and the limit the agent protects the source with. */
export interface MonitorOutputSamples {
  bytes: number;
  previousBytes: number;
  limitBytes: number;
}

/**
 * Why the epoch must end because Redis buffers too much MONITOR output for the agent, or undefined when it need not.
 * One big value is one MONITOR line of up to 4× its size, held in one reply block until it is all sent: over the
 * limit, even for seconds, is not overload. Over it for a whole interval and still growing by a quarter of the limit
 * is. (Slower growth meets the server's own pubsub-class limits, which end the epoch.)
 */
export function monitorOverload({ bytes, previousBytes, limitBytes }: MonitorOutputSamples): string | undefined {
  if (bytes > limitBytes && previousBytes > limitBytes && bytes - previousBytes > limitBytes / 4) {
    return (
      `Redis buffers ${bytes} bytes of MONITOR output for us (limit ${limitBytes}): ` +
      'the agent is too slow for this write rate'
    );
  }
  return undefined;
}
