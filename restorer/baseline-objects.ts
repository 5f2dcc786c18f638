import type { ObjectStore } from '@nats-io/obj';
import { ErrorCode, FlashbackError } from '../core/errors.js';

function missing(name: string): FlashbackError {
  return new FlashbackError(
    ErrorCode.NotFound,
    `baseline object "${name}" is missing from the object store (deleted by retention?)`,
  );
}

/** A baseline object (the RDB) as a stream. */
export async function objectStream(objects: ObjectStore, name: string): Promise<ReadableStream<Uint8Array>> {
  const r = await objects.get(name);
  if (!r) throw missing(name);
  return r.data;
}

/** A baseline object (the tail) whole. */
export async function objectBytes(objects: ObjectStore, name: string): Promise<Buffer> {
  const b = await objects.getBlob(name);
  if (!b) throw missing(name);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
