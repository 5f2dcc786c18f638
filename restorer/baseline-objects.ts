import { setTimeout as delay } from 'node:timers/promises';
import type { ObjectStore } from '@nats-io/obj';
import { ErrorCode, FlashbackError } from '../core/errors.js';

function missing(name: string): FlashbackError {
  return new FlashbackError(
    ErrorCode.NotFound,
    `baseline object "${name}" is missing from the object store (deleted by retention?)`,
  );
}

/** Attempts of one object read that times out. */
const READ_ATTEMPTS = 8;

/**
 * Runs one object-store read, again when it times out. A read creates an ephemeral R1 consumer; nats-server before 2.12
 * may place it on a cluster member that is down (nats-server PR #7165), and the create then times out while the stream
 * itself is healthy: each new attempt is placed anew (one member of three down: 1/3 of attempts fail).
 */
async function withRetry<T>(read: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (err) {
      if (attempt >= READ_ATTEMPTS || !/timeout/i.test(String((err as Error | null)?.message))) throw err;
      await delay(100);
    }
  }
}

/** A baseline object (the RDB) as a stream. */
export async function objectStream(objects: ObjectStore, name: string): Promise<ReadableStream<Uint8Array>> {
  const r = await withRetry(() => objects.get(name));
  if (!r) throw missing(name);
  return r.data;
}

/** A baseline object (the tail) whole. */
export async function objectBytes(objects: ObjectStore, name: string): Promise<Buffer> {
  const b = await withRetry(() => objects.getBlob(name));
  if (!b) throw missing(name);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
