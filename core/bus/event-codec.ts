import { EVENT_KINDS, type EventKind, type FlashbackEvent } from './event.js';
import { ProtocolError } from '../errors.js';

/**
 * Binary codec for a batch of consecutive events of one (node, epoch): the body
 * of one JetStream message. Length-prefixed bytes, so keys and values stay
 * exact; `replay` is stored only when it differs from `args`.
 *
 * Layout (little endian): u8 version | str node | f64 epoch | u32 count | events…
 * event: f64 seq | f64 tsUs | u16 db | str client | u8 kind | str command |
 *        f64 tx | list keys | list args | u8 replaySame | [list replay]
 * str = u32 len + utf8; list = u32 n + (u32 len + bytes)…
 */
const VERSION = 1;

export interface EventBatch {
  node: string;
  epoch: number;
  events: FlashbackEvent[];
}

function listSize(list: Buffer[]): number {
  let n = 4;
  for (const b of list) n += 4 + b.length;
  return n;
}

/** UTF-8 of the few distinct client and command strings of a capture, encoded once (bounded). */
const encodedStrings = new Map<string, Buffer>();

function utf8(s: string): Buffer {
  let b = encodedStrings.get(s);
  if (b === undefined) {
    b = Buffer.from(s, 'utf8');
    if (encodedStrings.size >= 4096) encodedStrings.clear();
    encodedStrings.set(s, b);
  }
  return b;
}

/** Encodes a batch; every event must carry the batch's node and epoch. */
export function encodeBatch(batch: EventBatch): Buffer {
  const { node, epoch, events } = batch;
  const nodeBytes = Buffer.from(node, 'utf8');
  let size = 1 + 4 + nodeBytes.length + 8 + 4;
  for (const e of events) {
    size += 8 + 8 + 2 + 4 + utf8(e.client).length + 1 + 4 + utf8(e.command).length + 8;
    size += listSize(e.keys) + listSize(e.args) + 1;
    if (e.replay !== e.args) size += listSize(e.replay);
  }
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  const bytes = (b: Buffer) => {
    buf.writeUInt32LE(b.length, o);
    o += 4;
    o += b.copy(buf, o);
  };
  const list = (l: Buffer[]) => {
    buf.writeUInt32LE(l.length, o);
    o += 4;
    for (const b of l) bytes(b);
  };
  buf.writeUInt8(VERSION, o++);
  bytes(nodeBytes);
  buf.writeDoubleLE(epoch, o);
  o += 8;
  buf.writeUInt32LE(events.length, o);
  o += 4;
  for (const e of events) {
    buf.writeDoubleLE(e.seq, o);
    buf.writeDoubleLE(e.tsUs, o + 8);
    buf.writeUInt16LE(e.db, o + 16);
    o += 18;
    bytes(utf8(e.client));
    buf[o++] = EVENT_KINDS.indexOf(e.kind);
    bytes(utf8(e.command));
    buf.writeDoubleLE(e.tx, o);
    o += 8;
    list(e.keys);
    list(e.args);
    const same = e.replay === e.args;
    buf[o++] = same ? 1 : 0;
    if (!same) list(e.replay);
  }
  return buf;
}

/** Decodes a batch; the returned Buffers are views into `buf`. */
export function decodeBatch(buf: Uint8Array): EventBatch {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  const need = (n: number) => {
    if (o + n > b.length) throw new ProtocolError(`event batch truncated at byte ${o} of ${b.length}`);
  };
  const u32 = () => {
    need(4);
    const v = b.readUInt32LE(o);
    o += 4;
    return v;
  };
  const f64 = () => {
    need(8);
    const v = b.readDoubleLE(o);
    o += 8;
    return v;
  };
  const str = () => {
    const len = u32();
    need(len);
    const s = b.toString('utf8', o, o + len);
    o += len;
    return s;
  };
  const list = () => {
    const n = u32();
    const out: Buffer[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const len = u32();
      need(len);
      out[i] = b.subarray(o, o + len);
      o += len;
    }
    return out;
  };
  need(1);
  const version = b.readUInt8(o++);
  if (version !== VERSION)
    throw new ProtocolError(
      `event batch version ${version} is not supported (expected ${VERSION}); upgrade the sink/restorer`,
    );
  const node = str();
  const epoch = f64();
  const count = u32();
  const events: FlashbackEvent[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const seq = f64();
    const tsUs = f64();
    need(2);
    const db = b.readUInt16LE(o);
    o += 2;
    const client = str();
    need(1);
    const kind = EVENT_KINDS[b.readUInt8(o++)] as EventKind | undefined;
    if (!kind) throw new ProtocolError(`event batch has an unknown event kind at byte ${o - 1}`);
    const command = str();
    const tx = f64();
    const keys = list();
    const args = list();
    need(1);
    const same = b.readUInt8(o++) === 1;
    const replay = same ? args : list();
    events[i] = { node, epoch, seq, tsUs, db, client, kind, command, keys, args, replay, tx };
  }
  return { node, epoch, events };
}
