import { createHash } from 'node:crypto';
import { jetstream, JsHeaders, type JetStreamClient } from '@nats-io/jetstream';
import { headers, nuid, type NatsConnection } from '@nats-io/transport-node';
import type { ObjectInfo, ObjectStore, ObjectStoreMeta } from '@nats-io/obj';
import { FlashbackError, ErrorCode } from '../errors.js';
import { BASELINE_BUCKET, ensureBaselineStore } from './nats.js';

const DEFAULT_CHUNK_BYTES = 128 * 1024;

/**
 * The baseline object store as an agent may use it: writes only. nats.js's own `put` first reads the object's current
 * entry through the stream API (`$JS.API.STREAM.MSG.GET`), which returns any message of the bucket by sequence, so a
 * user allowed that could read every node's RDBs. This writer publishes the chunks and the meta entry exactly as nats.js
 * does (same subjects, digest and JSON, so restores read them with the ordinary client), and never reads: the server
 * can then refuse agents every read of the bucket (docs/security.md). Every read method of the result throws.
 */
export async function openBaselineWriter(nc: NatsConnection): Promise<ObjectStore> {
  // Opening checks the bucket exists (STREAM.INFO), creating it where the user may.
  await ensureBaselineStore(nc);
  const js = jetstream(nc);
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  const chunkBytes = Math.min(DEFAULT_CHUNK_BYTES, maxPayload);
  const refused = (what: string) => () =>
    Promise.reject(
      new FlashbackError(ErrorCode.Internal, `the agent's baseline writer cannot ${what}: agents only write baselines`),
    );
  const put = (meta: ObjectStoreMeta, rs: ReadableStream<Uint8Array> | null) => putObject(js, meta, rs, chunkBytes);
  return {
    put,
    putBlob: (meta, data) => put(meta, data === null ? null : blobStream(data)),
    delete: async (name) => {
      // A deleted entry hides the object; its chunks stay until the sink's retention purges the bucket's old
      // entries: agents may not purge (a purge with a filter could drop any object).
      const h = headers();
      h.set(JsHeaders.RollupHdr, JsHeaders.RollupValueSubject);
      const info = { name, bucket: BASELINE_BUCKET, nuid: '', size: 0, chunks: 0, digest: '', deleted: true };
      await js.publish(metaSubject(name), JSON.stringify({ ...info, mtime: new Date().toISOString() }), {
        headers: h,
      });
      return { success: true, purged: 0 };
    },
    info: refused('read object info'),
    list: refused('list objects'),
    get: refused('read objects'),
    getBlob: refused('read objects'),
    link: refused('link objects'),
    linkStore: refused('link objects'),
    watch: refused('watch the bucket'),
    seal: refused('seal the bucket'),
    status: refused('read the bucket status'),
    update: refused('update objects'),
    destroy: refused('destroy the bucket'),
  };
}

function metaSubject(name: string): string {
  return `$O.${BASELINE_BUCKET}.M.${base64UrlPadded(Buffer.from(name))}`;
}

/** nats.js's object-store encoding: base64 with `-` and `_`, padding kept. */
function base64UrlPadded(bytes: Buffer): string {
  return bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

function blobStream(data: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      if (data.length > 0) c.enqueue(data);
      c.close();
    },
  });
}

async function putObject(
  js: JetStreamClient,
  meta: ObjectStoreMeta,
  rs: ReadableStream<Uint8Array> | null,
  chunkBytes: number,
): Promise<ObjectInfo> {
  const id = nuid.next();
  const chunkSubject = `$O.${BASELINE_BUCKET}.C.${id}`;
  const sha = createHash('sha256');
  let size = 0;
  let chunks = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (all: boolean) => {
    let buf = Buffer.concat(pending);
    while (buf.length >= chunkBytes || (all && buf.length > 0)) {
      const chunk = buf.subarray(0, Math.min(chunkBytes, buf.length));
      buf = buf.subarray(chunk.length);
      sha.update(chunk);
      size += chunk.length;
      chunks++;
      await js.publish(chunkSubject, chunk);
    }
    pending = buf.length > 0 ? [buf] : [];
    pendingBytes = buf.length;
  };
  if (rs) {
    const reader = rs.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!value || value.length === 0) continue;
      pending.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      pendingBytes += value.length;
      if (pendingBytes >= chunkBytes) await flush(false);
    }
  }
  await flush(true);
  const info = {
    name: meta.name,
    description: meta.description ?? '',
    options: { ...meta.options, max_chunk_size: chunkBytes },
    metadata: meta.metadata,
    headers: (meta.headers as { toRecord?: () => Record<string, string[]> } | undefined)?.toRecord?.(),
    bucket: BASELINE_BUCKET,
    nuid: id,
    size,
    chunks,
    digest: `SHA-256=${base64UrlPadded(sha.digest())}`,
    deleted: false,
    mtime: new Date().toISOString(),
  };
  const h = headers();
  h.set(JsHeaders.RollupHdr, JsHeaders.RollupValueSubject);
  const ack = await js.publish(metaSubject(meta.name), JSON.stringify(info), { headers: h });
  return { ...info, headers: meta.headers, revision: ack.seq } as ObjectInfo;
}
