import { EVENT_KINDS, type EventKind, type FlashbackEvent } from './event.js';
import { ProtocolError } from '../errors.js';

/**
 * Binary codec for a batch of consecutive events of one (node, epoch): the body
 * of one JetStream message. Length-prefixed bytes, so keys and values stay
 * exact; `replay` is stored only when it differs from `args`, keys as indexes of
 * `args` when they are among them, the few client and command strings once per batch.
 *
 * Layout v2 (little endian): u8 2 | str node | f64 epoch | u32 count | u16 n | n × str (strings) | events…
 * event: f64 seq | f64 tsUs | u16 db | u16 client (index of strings) | u8 kind | u16 command (index) | f64 tx |
 *        u8 flags | keys | list args | [list replay]
 * flags: 1 = replay is args (no list follows); 2 = keys are u32 n + n × u32 index of args (else a list).
 * str = u32 len + utf8; list = u32 n + (u32 len + bytes)…
 *
 * v1, still decoded (messages an older agent stored): no strings table, client and command as str, no flags; keys a
 * list, then args, then u8 replaySame and [list replay].
 */
const VERSION = 2;
const REPLAY_SAME = 1;
const KEY_REFS = 2;

export interface EventBatch {
  node: string;
  epoch: number;
  events: FlashbackEvent[];
}

/** Where events are written before the batch is cut to size: reused, so a batch costs one allocation. */
let scratch = Buffer.allocUnsafeSlow(1 << 20);
/** Scratch grown past this is given back after the batch (one huge event must not pin its size). */
const SCRATCH_KEEP = 8 << 20;

/** Encodes a batch; every event must carry the batch's node and epoch. */
export function encodeBatch(batch: EventBatch): Buffer {
  const { node, epoch, events } = batch;
  const strings: string[] = [];
  const index = new Map<string, number>();
  const stringIndex = (s: string): number => {
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      if (i > 0xffff) throw new RangeError('an event batch holds at most 65,536 distinct clients and commands');
      strings.push(s);
      index.set(s, i);
    }
    return i;
  };
  let buf = scratch;
  let o = 0;
  const ensure = (n: number) => {
    if (o + n <= buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(buf.length * 2, o + n));
    buf.copy(grown, 0, 0, o);
    buf = grown;
  };
  const u32 = (v: number) => {
    buf[o] = v;
    buf[o + 1] = v >>> 8;
    buf[o + 2] = v >>> 16;
    buf[o + 3] = v >>> 24;
    o += 4;
  };
  const bytes = (b: Buffer) => {
    const n = b.length;
    u32(n);
    // Short values byte by byte: a native copy costs more than it moves below a few dozen bytes.
    if (n <= 24) for (let i = 0; i < n; i++) buf[o + i] = b[i]!;
    else buf.set(b, o);
    o += n;
  };
  const list = (l: Buffer[]) => {
    u32(l.length);
    for (const b of l) bytes(b);
  };
  let lastClient = '';
  let lastClientIndex = -1;
  let lastCommand = '';
  let lastCommandIndex = -1;
  for (const e of events) {
    let need = 48 + 8 * e.keys.length;
    for (const a of e.args) need += 4 + a.length;
    if (e.replay !== e.args) for (const a of e.replay) need += 4 + a.length;
    for (const k of e.keys) need += k.length;
    ensure(need);
    if (e.client !== lastClient || lastClientIndex < 0) {
      lastClient = e.client;
      lastClientIndex = stringIndex(e.client);
    }
    if (e.command !== lastCommand || lastCommandIndex < 0) {
      lastCommand = e.command;
      lastCommandIndex = stringIndex(e.command);
    }
    buf.writeDoubleLE(e.seq, o);
    buf.writeDoubleLE(e.tsUs, o + 8);
    buf[o + 16] = e.db;
    buf[o + 17] = e.db >>> 8;
    buf[o + 18] = lastClientIndex;
    buf[o + 19] = lastClientIndex >>> 8;
    buf[o + 20] = EVENT_KINDS.indexOf(e.kind);
    buf[o + 21] = lastCommandIndex;
    buf[o + 22] = lastCommandIndex >>> 8;
    buf.writeDoubleLE(e.tx, o + 23);
    const flagsAt = o + 31;
    o += 32;
    const same = e.replay === e.args;
    let flags = same ? REPLAY_SAME : 0;
    // Keys are the args' own Buffers when they come from the command table: indexes, searched from the last one found.
    const keysAt = o;
    const { keys, args } = e;
    let refs = keys.length > 0;
    if (refs) {
      u32(keys.length);
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
        u32(found);
        j = found + 1 < args.length ? found + 1 : 0;
      }
    }
    if (refs) flags |= KEY_REFS;
    else {
      o = keysAt;
      list(keys);
    }
    buf[flagsAt] = flags;
    list(args);
    if (!same) list(e.replay);
  }
  const nodeBytes = Buffer.from(node, 'utf8');
  const encoded = strings.map((s) => Buffer.from(s, 'utf8'));
  let head = 1 + 4 + nodeBytes.length + 8 + 4 + 2;
  for (const s of encoded) head += 4 + s.length;
  const out = Buffer.allocUnsafe(head + o);
  let h = 0;
  out[h++] = VERSION;
  out.writeUInt32LE(nodeBytes.length, h);
  h += 4 + nodeBytes.copy(out, h + 4);
  out.writeDoubleLE(epoch, h);
  out.writeUInt32LE(events.length, h + 8);
  out.writeUInt16LE(encoded.length, h + 12);
  h += 14;
  for (const s of encoded) {
    out.writeUInt32LE(s.length, h);
    h += 4 + s.copy(out, h + 4);
  }
  buf.copy(out, h, 0, o);
  scratch = buf.length <= SCRATCH_KEEP ? buf : Buffer.allocUnsafeSlow(1 << 20);
  return out;
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
  if (version !== VERSION && version !== 1)
    throw new ProtocolError(
      `event batch version ${version} is not supported (expected 1 or ${VERSION}); upgrade the sink/restorer`,
    );
  const node = str();
  const epoch = f64();
  const count = u32();
  let strings: string[] = [];
  if (version === VERSION) {
    need(2);
    const n = b.readUInt16LE(o);
    o += 2;
    strings = new Array<string>(n);
    for (let i = 0; i < n; i++) strings[i] = str();
  }
  const stringAt = (): string => {
    need(2);
    const i = b.readUInt16LE(o);
    if (i >= strings.length) throw new ProtocolError(`event batch names string ${i} of ${strings.length} at byte ${o}`);
    o += 2;
    return strings[i]!;
  };
  const events: FlashbackEvent[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const seq = f64();
    const tsUs = f64();
    need(2);
    const db = b.readUInt16LE(o);
    o += 2;
    const client = version === 1 ? str() : stringAt();
    need(1);
    const kind = EVENT_KINDS[b.readUInt8(o++)] as EventKind | undefined;
    if (!kind) throw new ProtocolError(`event batch has an unknown event kind at byte ${o - 1}`);
    const command = version === 1 ? str() : stringAt();
    const tx = f64();
    if (version === 1) {
      const keys = list();
      const args = list();
      need(1);
      const same = b.readUInt8(o++) === 1;
      const replay = same ? args : list();
      events[i] = { node, epoch, seq, tsUs, db, client, kind, command, keys, args, replay, tx };
      continue;
    }
    need(1);
    const flags = b.readUInt8(o++);
    let keys: Buffer[];
    let refs: number[] | undefined;
    if (flags & KEY_REFS) {
      const n = u32();
      refs = new Array<number>(n);
      for (let k = 0; k < n; k++) refs[k] = u32();
      keys = [];
    } else keys = list();
    const args = list();
    if (refs) {
      const at = o;
      keys = refs.map((r) => {
        if (r >= args.length)
          throw new ProtocolError(`event batch names arg ${r} of ${args.length} as a key before byte ${at}`);
        return args[r]!;
      });
    }
    const replay = flags & REPLAY_SAME ? args : list();
    events[i] = { node, epoch, seq, tsUs, db, client, kind, command, keys, args, replay, tx };
  }
  return { node, epoch, events };
}
