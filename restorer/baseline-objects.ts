import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { ObjectStore } from '@nats-io/obj';
import { BASELINE_BUCKET } from '../core/bus/nats.js';
import { ErrorCode, FlashbackError } from '../core/errors.js';
import type { StoredBaseline } from '../core/store/event-store.js';
import { formatTsUs } from '../core/time.js';

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

/**
 * What a baseline object must hash to: the SHA-256 its node's agent published in the baseline record (on a subject
 * only that agent may publish). The bucket is shared by every node's agent, so the object itself, its meta entry and
 * the meta's digest included, may have been written by another one (docs/security.md).
 */
export interface ObjectCheck {
  node: string;
  epoch: number;
  /** The baseline's marker seq and time (µs), named in the error. */
  seq: number;
  tsUs: number;
  part: 'RDB' | 'tail';
  /** 64 hex digits; '' when the record has none (an older agent): the object is not checked. */
  sha256: string;
}

/** The check of one object of `base`. */
export function baselineCheck(node: string, epoch: number, base: StoredBaseline, part: 'RDB' | 'tail'): ObjectCheck {
  return {
    node,
    epoch,
    seq: base.seq,
    tsUs: base.tsUs,
    part,
    sha256: part === 'RDB' ? base.rdbSha256 : base.tailSha256,
  };
}

function mismatch(name: string, c: ObjectCheck, actual: string, options?: ErrorOptions): FlashbackError {
  const at = formatTsUs(c.tsUs);
  return new FlashbackError(
    ErrorCode.BaselineMismatch,
    `baseline ${c.part} object "${name}" of node "${c.node}" (epoch ${c.epoch}, baseline seq ${c.seq}, ${at}) does ` +
      `not match the record its own agent published: SHA-256 ${actual}, recorded ${c.sha256}. It was replaced in the ` +
      `shared bucket ${BASELINE_BUCKET} (written by another node's agent or anyone else allowed to write it) or is ` +
      `corrupt, and nothing of it was loaded. Restore an instant another baseline serves (before ${at}, or after ` +
      `the next baseline of "${c.node}"), and check who may write the bucket ($O.${BASELINE_BUCKET}.C.> and .M.>; ` +
      `docs/security.md)`,
    options,
  );
}

/**
 * A baseline object (the RDB) as a stream. With a check, the bytes are hashed on the way and the stream ends in a
 * BASELINE_MISMATCH error instead of its end when they do not match the record, so a consumer that writes them out
 * sees the error before it has a whole file.
 */
export async function objectStream(
  objects: ObjectStore,
  name: string,
  check?: ObjectCheck,
): Promise<ReadableStream<Uint8Array>> {
  const r = await withRetry(() => objects.get(name));
  if (!r) throw missing(name);
  if (!check?.sha256) return r.data;
  const sha = createHash('sha256');
  return r.data.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        sha.update(chunk);
        controller.enqueue(chunk);
      },
      flush() {
        const actual = sha.digest('hex');
        if (actual !== check.sha256) throw mismatch(name, check, actual);
      },
    }),
  );
}

/** A baseline object (the tail) whole; with a check, BASELINE_MISMATCH unless its bytes match the record. */
export async function objectBytes(objects: ObjectStore, name: string, check?: ObjectCheck): Promise<Buffer> {
  const b = await withRetry(() => objects.getBlob(name));
  if (!b) throw missing(name);
  const bytes = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (check?.sha256) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== check.sha256) throw mismatch(name, check, actual);
  }
  return bytes;
}

/**
 * The error to report for an object whose bytes were refused before their end (not an RDB, an RDB version the restore
 * server cannot read): BASELINE_MISMATCH, with `err` as cause, when the object (read again, whole) does not match
 * the record, since a replaced object explains the refusal; else `err` itself. Only our own refusals of the bytes
 * are looked into: a full disk or a lost connection says nothing about them.
 */
export async function mismatchOr(
  err: unknown,
  objects: ObjectStore,
  name: string,
  check?: ObjectCheck,
): Promise<unknown> {
  if (!check?.sha256 || !(err instanceof FlashbackError) || err.retryable || err.code === ErrorCode.BaselineMismatch)
    return err;
  try {
    const sha = createHash('sha256');
    for await (const chunk of await objectStream(objects, name)) sha.update(chunk);
    const actual = sha.digest('hex');
    return actual === check.sha256 ? err : mismatch(name, check, actual, { cause: err });
  } catch {
    // The object cannot be read again: the first error is the one to report.
    return err;
  }
}
