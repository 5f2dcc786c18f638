import { EVENT_KINDS, type EventKind, type FlashbackEvent } from './event.js';
import { ProtocolError } from '../errors.js';

/**
 * A batch of a format version newer than this code reads: the message is sound, the reader is old (an agent upgraded
 * before its sinks). A sink leaves such a message in the stream for a newer sink instead of terminating it.
 */
export class NewerBatchVersionError extends ProtocolError {
  constructor(readonly version: number) {
    super(
      `event batch version ${version} is not supported (expected 1 or ${VERSION}): an agent newer than this reader wrote it; upgrade the sink (and restorer) before the agents`,
    );
  }
}

/**
 * Binary codec for a batch of consecutive events of one (node, epoch): the body
 * of one JetStream message. Length-prefixed bytes, so keys and values stay
 * exact. What a batch of writes repeats is written small, since every byte is
 * paid again by the socket, NATS and its disk: seq and time as differences from the
 * event before, `replay` only when it differs from `args`, keys as indexes of `args`
 * when they are among them, the few client and command strings once per batch.
 *
 * Layout v2: u8 2 | str node | f64 epoch (LE) | var count | var n | n × str (strings) | events…
 * event: u8 flags | var db | var client (index of strings) | u8 kind | var command (index) |
 *        seq, tsUs, tx | keys | list args | [list replay]
 *   seq, tsUs, tx: zig(seq − seq before) | zig(tsUs − tsUs before) | var (tx ? seq − tx + 1 : 0), "before" being
 *   the last event written so (0 for the first); with flag FLOATS (a value that is no integer ≥ 0): f64 seq | f64 tsUs
 *   | f64 tx (LE), which moves no "before".
 *   keys: with KEY_REFS var n + n × var (index of args), else a list.
 * flags: 1 REPLAY_SAME (replay is args: no list follows), 2 KEY_REFS, 4 FLOATS.
 * var = unsigned LEB128 (up to 2^53); zig = var of the zigzag of a signed difference; str = var len + utf8;
 * list = var n + (var len + bytes)…
 *
 * v1, still decoded (messages an older agent stored): u8 1 | u32 len + node | f64 epoch | u32 count | events, each
 * f64 seq | f64 tsUs | u16 db | u32 len + client | u8 kind | u32 len + command | f64 tx | keys | args | u8 replaySame |
 * [replay], lists as u32 n + (u32 len + bytes)…, all little endian.
 */
const VERSION = 2;
const REPLAY_SAME = 1;
const KEY_REFS = 2;
const FLOATS = 4;

export interface EventBatch {
  node: string;
  epoch: number;
  events: FlashbackEvent[];
}

/** What a writer keeps of its buffer between batches: one huge event must not pin its size. */
const KEEP_BYTES = 8 << 20;

/** Written as a difference: an integer ≥ 0 whose doubled differences stay exact (2^52 µs is the year 2112). */
const isCount = (v: number) => Number.isInteger(v) && v >= 0 && v <= 2 ** 52;

/**
 * Encodes a batch one event at a time, as events come (the agent adds them while they are still in the CPU's cache,
 * not when the batch is sealed), into a buffer it reuses from batch to batch. `bytes` is exact at every point.
 */
export class BatchWriter {
  private buf: Buffer;
  private o = 0;
  private readonly strings: string[] = [];
  private readonly index = new Map<string, number>();
  private lastClient = '';
  private lastClientIndex = -1;
  private lastCommand = '';
  private lastCommandIndex = -1;
  private prevSeq = 0;
  private prevTs = 0;
  private stringBytes = 0;
  private readonly nodeBytes: Buffer;
  /** Events added since the last `finish`. */
  count = 0;

  constructor(
    node: string,
    private readonly epoch: number,
    initialBytes = 64 * 1024,
  ) {
    this.nodeBytes = Buffer.from(node, 'utf8');
    this.buf = Buffer.allocUnsafeSlow(initialBytes);
  }

  /** Size of the batch `finish` would return now, at most (its head's numbers may take fewer bytes). */
  get bytes(): number {
    return this.o + this.stringBytes + this.nodeBytes.length + 36;
  }

  add(e: FlashbackEvent): void {
    const { keys, args, seq, tsUs, tx } = e;
    // Worst case: 50 bytes of fixed fields, 9 per count or length.
    let need = 64 + 18 * keys.length;
    for (const a of args) need += 9 + a.length;
    if (e.replay !== args) for (const a of e.replay) need += 9 + a.length;
    for (const k of keys) need += k.length;
    this.ensure(need);
    if (e.client !== this.lastClient || this.lastClientIndex < 0) {
      this.lastClient = e.client;
      this.lastClientIndex = this.stringIndex(e.client);
    }
    if (e.command !== this.lastCommand || this.lastCommandIndex < 0) {
      this.lastCommand = e.command;
      this.lastCommandIndex = this.stringIndex(e.command);
    }
    const same = e.replay === args;
    const floats = !isCount(seq) || !isCount(tsUs) || !isCount(tx) || tx > seq;
    const flagsAt = this.o++;
    let flags = (same ? REPLAY_SAME : 0) | (floats ? FLOATS : 0);
    this.varint(e.db);
    this.varint(this.lastClientIndex);
    this.buf[this.o++] = EVENT_KINDS.indexOf(e.kind);
    this.varint(this.lastCommandIndex);
    if (floats) {
      this.buf.writeDoubleLE(seq, this.o);
      this.buf.writeDoubleLE(tsUs, this.o + 8);
      this.buf.writeDoubleLE(tx, this.o + 16);
      this.o += 24;
    } else {
      this.zigzag(seq - this.prevSeq);
      this.zigzag(tsUs - this.prevTs);
      this.varint(tx === 0 ? 0 : seq - tx + 1);
      this.prevSeq = seq;
      this.prevTs = tsUs;
    }
    // Keys are the args' own Buffers when they come from the command table: indexes, searched from the last one found.
    const keysAt = this.o;
    let refs = keys.length > 0;
    if (refs) {
      this.varint(keys.length);
      let j = 0;
      for (const k of keys) {
        let found = -1;
        for (let t = 0; t < args.length; t++) {
          const at = j + t < args.length ? j + t : j + t - args.length;
          if (args[at] === k) {
            found = at;
            break;
          }
        }
        if (found < 0) {
          refs = false;
          break;
        }
        this.varint(found);
        j = found + 1 < args.length ? found + 1 : 0;
      }
    }
    if (refs) flags |= KEY_REFS;
    else {
      this.o = keysAt;
      this.list(keys);
    }
    this.buf[flagsAt] = flags;
    this.list(args);
    if (!same) this.list(e.replay);
    this.count++;
  }

  /** The batch of every event added since the last call (a copy: the writer goes on with its buffer). */
  finish(): Buffer {
    const body = this.o;
    // The head (node, epoch, count, strings) goes in front of the events, written after them into the same buffer.
    const encoded = this.strings.map((x) => Buffer.from(x, 'utf8'));
    let headBytes = 1 + 9 + this.nodeBytes.length + 8 + 9 + 9;
    for (const x of encoded) headBytes += 9 + x.length;
    this.ensure(headBytes);
    this.buf[this.o++] = VERSION;
    this.bytesOf(this.nodeBytes);
    this.buf.writeDoubleLE(this.epoch, this.o);
    this.o += 8;
    this.varint(this.count);
    this.varint(encoded.length);
    for (const x of encoded) this.bytesOf(x);
    const out = Buffer.allocUnsafe(this.o);
    const head = this.buf.copy(out, 0, body, this.o);
    this.buf.copy(out, head, 0, body);
    if (this.buf.length > KEEP_BYTES) this.buf = Buffer.allocUnsafeSlow(64 * 1024);
    this.o = 0;
    this.count = 0;
    this.strings.length = 0;
    this.index.clear();
    this.stringBytes = 0;
    this.lastClientIndex = -1;
    this.lastCommandIndex = -1;
    this.prevSeq = 0;
    this.prevTs = 0;
    return out;
  }

  private stringIndex(x: string): number {
    let i = this.index.get(x);
    if (i === undefined) {
      i = this.strings.length;
      this.strings.push(x);
      this.index.set(x, i);
      this.stringBytes += 9 + Buffer.byteLength(x);
    }
    return i;
  }

  private ensure(n: number): void {
    if (this.o + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.o + n));
    this.buf.copy(grown, 0, 0, this.o);
    this.buf = grown;
  }

  private varint(v: number): void {
    const buf = this.buf;
    let o = this.o;
    while (v >= 0x80) {
      buf[o++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    buf[o++] = v;
    this.o = o;
  }

  private zigzag(d: number): void {
    this.varint(d >= 0 ? d * 2 : -d * 2 - 1);
  }

  private bytesOf(b: Buffer): void {
    const n = b.length;
    this.varint(n);
    const buf = this.buf;
    const o = this.o;
    // Short values byte by byte: a native copy costs more than it moves below a few dozen bytes.
    if (n <= 24) for (let i = 0; i < n; i++) buf[o + i] = b[i]!;
    else buf.set(b, o);
    this.o = o + n;
  }

  private list(l: Buffer[]): void {
    this.varint(l.length);
    for (const b of l) this.bytesOf(b);
  }
}

/** Encodes a batch; every event must carry the batch's node and epoch. */
export function encodeBatch(batch: EventBatch): Buffer {
  const w = new BatchWriter(batch.node, batch.epoch, 1024);
  for (const e of batch.events) w.add(e);
  return w.finish();
}

/** Decodes a batch; the returned Buffers are views into `buf`. */
export function decodeBatch(buf: Uint8Array): EventBatch {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  const need = (n: number) => {
    if (o + n > b.length) throw new ProtocolError(`event batch truncated at byte ${o} of ${b.length}`);
  };
  need(1);
  const version = b.readUInt8(o++);
  if (version === 1) return decodeV1(b, o);
  if (version > VERSION) throw new NewerBatchVersionError(version);
  if (version !== VERSION)
    throw new ProtocolError(`event batch version ${version} is not supported (expected 1 or ${VERSION})`);
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      need(1);
      const c = b[o++]!;
      v += (c & 0x7f) * mul;
      if (c < 0x80) return v;
      mul *= 0x80;
      if (mul > 2 ** 56) throw new ProtocolError(`event batch has a number over 2^53 at byte ${o - 1}`);
    }
  };
  const zigzag = (): number => {
    const z = varint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  };
  const f64 = () => {
    need(8);
    const v = b.readDoubleLE(o);
    o += 8;
    return v;
  };
  const str = () => {
    const len = varint();
    need(len);
    const s = b.toString('utf8', o, o + len);
    o += len;
    return s;
  };
  const list = () => {
    const n = varint();
    const out: Buffer[] = new Array(Math.min(n, b.length - o));
    for (let i = 0; i < n; i++) {
      const len = varint();
      need(len);
      out[i] = b.subarray(o, o + len);
      o += len;
    }
    return out;
  };
  const node = str();
  const epoch = f64();
  const count = varint();
  const strings: string[] = [];
  for (let i = varint(); i > 0; i--) strings.push(str());
  const stringAt = (): string => {
    const at = o;
    const i = varint();
    if (i >= strings.length)
      throw new ProtocolError(`event batch names string ${i} of ${strings.length} at byte ${at}`);
    return strings[i]!;
  };
  const events: FlashbackEvent[] = new Array(Math.min(count, b.length));
  let prevSeq = 0;
  let prevTs = 0;
  for (let i = 0; i < count; i++) {
    need(1);
    const flags = b[o++]!;
    const db = varint();
    const client = stringAt();
    need(1);
    const kind = EVENT_KINDS[b[o++]!] as EventKind | undefined;
    if (!kind) throw new ProtocolError(`event batch has an unknown event kind at byte ${o - 1}`);
    const command = stringAt();
    let seq: number;
    let tsUs: number;
    let tx: number;
    if (flags & FLOATS) {
      seq = f64();
      tsUs = f64();
      tx = f64();
    } else {
      seq = prevSeq + zigzag();
      tsUs = prevTs + zigzag();
      const t = varint();
      tx = t === 0 ? 0 : seq - t + 1;
      prevSeq = seq;
      prevTs = tsUs;
    }
    let keys: Buffer[];
    let refs: number[] | undefined;
    if (flags & KEY_REFS) {
      const n = varint();
      refs = [];
      for (let k = 0; k < n; k++) refs.push(varint());
      keys = [];
    } else keys = list();
    const args = list();
    if (refs) {
      keys = new Array(refs.length);
      for (let k = 0; k < refs.length; k++) {
        const r = refs[k]!;
        if (r >= args.length)
          throw new ProtocolError(`event batch names arg ${r} of ${args.length} as a key at byte ${o}`);
        keys[k] = args[r]!;
      }
    }
    const replay = flags & REPLAY_SAME ? args : list();
    events[i] = { node, epoch, seq, tsUs, db, client, kind, command, keys, args, replay, tx };
  }
  return { node, epoch, events };
}

/** Version 1 (see the layout above), from byte `o` on. */
function decodeV1(b: Buffer, start: number): EventBatch {
  let o = start;
  const fail = () => {
    throw new ProtocolError(`event batch truncated at byte ${o} of ${b.length}`);
  };
  const u32 = () => {
    if (o + 4 > b.length) fail();
    const v = b.readUInt32LE(o);
    o += 4;
    return v;
  };
  const f64 = () => {
    if (o + 8 > b.length) fail();
    const v = b.readDoubleLE(o);
    o += 8;
    return v;
  };
  const str = () => {
    const len = u32();
    if (o + len > b.length) fail();
    const s = b.toString('utf8', o, o + len);
    o += len;
    return s;
  };
  const list = () => {
    const n = u32();
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const len = u32();
      if (o + len > b.length) fail();
      out.push(b.subarray(o, o + len));
      o += len;
    }
    return out;
  };
  const node = str();
  const epoch = f64();
  const count = u32();
  const events: FlashbackEvent[] = [];
  for (let i = 0; i < count; i++) {
    const seq = f64();
    const tsUs = f64();
    if (o + 2 > b.length) fail();
    const db = b.readUInt16LE(o);
    o += 2;
    const client = str();
    if (o + 1 > b.length) fail();
    const kind = EVENT_KINDS[b.readUInt8(o++)] as EventKind | undefined;
    if (!kind) throw new ProtocolError(`event batch has an unknown event kind at byte ${o - 1}`);
    const command = str();
    const tx = f64();
    const keys = list();
    const args = list();
    if (o + 1 > b.length) fail();
    const same = b.readUInt8(o++) === 1;
    const replay = same ? args : list();
    events.push({ node, epoch, seq, tsUs, db, client, kind, command, keys, args, replay, tx });
  }
  return { node, epoch, events };
}
