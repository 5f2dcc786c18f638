import type { BaselineRecord } from '../core/bus/baseline.js';
import { ProtocolError } from '../core/errors.js';
import { readableBytes } from '../core/redis/escape.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { encodeCommand } from '../core/redis/resp.js';
import type { BaselineRow, EventRow } from '../core/store/schema.js';

/**
 * One row of flashback.events for an event. Readable columns escape bytes
 * (core/escape.ts); `replay` keeps the exact bytes as base64 of their RESP
 * encoding, '' when there is nothing to replay (markers).
 */
export function eventToRow(e: FlashbackEvent): EventRow {
  const keys = e.keys.length === 0 ? [] : e.keys.map(readableBytes);
  return {
    node: e.node,
    epoch: e.epoch,
    seq: e.seq,
    ts_us: e.tsUs,
    time: Math.floor(e.tsUs / 1_000_000),
    db: e.db,
    client: e.client,
    kind: e.kind,
    command: e.command,
    key: keys.length > 0 ? keys[0]! : '',
    keys,
    args: e.args.map(readableBytes),
    replay: e.replay.length === 0 ? '' : encodeCommand(e.replay).toString('base64'),
    tx: e.tx,
  };
}

/** One row of flashback.baselines for a baseline record. */
export function baselineToRow(b: BaselineRecord): BaselineRow {
  return {
    node: b.node,
    epoch: b.epoch,
    seq: b.seq,
    ts_us: b.tsUs,
    time: Math.floor(b.tsUs / 1_000_000),
    marker: b.markerId,
    rdb_object: b.rdbObject,
    tail_object: b.tailObject,
    rdb_bytes: b.rdbBytes,
    tail_bytes: b.tailBytes,
    keys: b.keys,
    digest: b.digest,
    source: b.source ? JSON.stringify(b.source) : '',
    rdb_sha256: b.rdbSha256 ?? '',
    tail_sha256: b.tailSha256 ?? '',
  };
}

const NUMBER_FIELDS = ['epoch', 'seq', 'tsUs', 'rdbBytes', 'tailBytes', 'keys'] as const;
const STRING_FIELDS = ['node', 'markerId', 'rdbObject', 'tailObject', 'digest'] as const;
/** Optional (absent in records of older agents); 64 lowercase hex digits when present. */
const SHA256_FIELDS = ['rdbSha256', 'tailSha256'] as const;

/** Parses the JSON body of a `flashback.baselines.<node>` message; ProtocolError names the first bad field. */
export function parseBaselineRecord(body: Uint8Array): BaselineRecord {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch (cause) {
    throw new ProtocolError('baseline record is not JSON; was it published by a flashback agent?', { cause });
  }
  if (typeof v !== 'object' || v === null) throw new ProtocolError('baseline record is not a JSON object');
  const r = v as Record<string, unknown>;
  for (const f of NUMBER_FIELDS) {
    if (!Number.isSafeInteger(r[f]) || (r[f] as number) < 0)
      throw new ProtocolError(`baseline record field "${f}" is ${JSON.stringify(r[f])}, not a non-negative integer`);
  }
  for (const f of STRING_FIELDS) {
    if (typeof r[f] !== 'string')
      throw new ProtocolError(`baseline record field "${f}" is ${JSON.stringify(r[f])}, not a string`);
  }
  for (const f of SHA256_FIELDS) {
    if (r[f] !== undefined && !(typeof r[f] === 'string' && /^[0-9a-f]{64}$/.test(r[f])))
      throw new ProtocolError(`baseline record field "${f}" is ${JSON.stringify(r[f])}, not a SHA-256 (64 hex digits)`);
  }
  if (r.source !== undefined) {
    const src = r.source as Record<string, unknown> | null;
    const config = src?.config as Record<string, unknown> | null | undefined;
    if (
      typeof src !== 'object' ||
      src === null ||
      typeof src.server !== 'string' ||
      typeof src.version !== 'string' ||
      typeof config !== 'object' ||
      config === null ||
      !Object.values(config).every((v) => typeof v === 'string')
    ) {
      throw new ProtocolError(
        `baseline record field "source" is ${JSON.stringify(r.source)}, not {server, version, config} of strings`,
      );
    }
  }
  return r as unknown as BaselineRecord;
}
