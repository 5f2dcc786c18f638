import { ProtocolError } from '../errors.js';
import { readableBytes } from './escape.js';
import type { MonitorLine } from './monitor-line.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const PLUS = 0x2b;
const GT = 0x3e;
const DOLLAR = 0x24;

/** Reads `<digits>\r\n` at `p`: the number and the index after the LF, or undefined when incomplete. */
function readLength(buf: Buffer, p: number): { value: number; next: number } | undefined {
  let v = 0;
  let neg = false;
  if (buf[p] === 0x2d) {
    neg = true;
    p++;
  }
  const start = p;
  while (p < buf.length && buf[p]! >= 0x30 && buf[p]! <= 0x39) v = v * 10 + (buf[p++]! - 0x30);
  if (p + 1 >= buf.length) return undefined;
  if (p === start || buf[p] !== CR || buf[p + 1] !== LF)
    throw new ProtocolError('a RESP length that is not an integer followed by CRLF in the MONITOR stream');
  return { value: neg ? -v : v, next: p + 2 };
}

/**
 * Splits the byte stream of a MONITOR connection into lines and decodes each
 * one with {@link parseMonitorLine}. Lines never contain a raw CR or LF (Redis
 * escapes them inside arguments), so every LF ends a line.
 *
 * Argument Buffers without escapes are views into the pushed chunks (no copy):
 * do not modify a chunk after pushing it.
 */
export class MonitorParser {
  /** Start of a line whose end has not arrived yet (no LF inside), copied out of its chunks. */
  private pending: Buffer | undefined;
  private pendingLen = 0;
  /** Unparsed bytes after a line that threw; parsed first on the next push. */
  private carry: Buffer | undefined;

  /**
   * @param onLine called once per complete line, in stream order, synchronously inside `push`.
   * @param onPush called with the items of each RESP3 push frame (`pmessage`, pattern, channel, message), in the same
   * order as the lines around it: a client that subscribed before MONITOR gets both on one socket, in server order.
   */
  constructor(
    private readonly onLine: (line: MonitorLine) => void,
    private readonly onPush?: (items: Buffer[]) => void,
  ) {}

  /** Parses the push frame at `pos`; returns the index after it, or -1 when its end has not arrived. */
  private pushFrame(buf: Buffer, pos: number): number {
    const head = readLength(buf, pos + 1);
    if (head === undefined) return -1;
    if (!this.onPush || head.value < 0)
      throw malformed(
        buf,
        pos,
        Math.min(buf.length, pos + 80),
        pos,
        'a MONITOR line (a push frame came on a connection that did not subscribe)',
      );
    const items: Buffer[] = new Array(head.value);
    let p = head.next;
    for (let i = 0; i < head.value; i++) {
      if (p >= buf.length) return -1;
      if (buf[p] !== DOLLAR)
        throw malformed(buf, pos, Math.min(buf.length, p + 40), p, 'a bulk string inside a push frame');
      const len = readLength(buf, p + 1);
      if (len === undefined) return -1;
      if (len.next + len.value + 2 > buf.length) return -1;
      items[i] = buf.subarray(len.next, len.next + len.value);
      p = len.next + len.value + 2;
    }
    this.onPush(items);
    return p;
  }

  /** Bytes held waiting for the end of a line. */
  get buffered(): number {
    return this.pendingLen + (this.carry?.length ?? 0);
  }

  /**
   * Feeds raw bytes read from the MONITOR socket after its `+OK` reply and
   * calls `onLine` for each line they complete, in order. If a line is
   * malformed (ProtocolError) or `onLine` throws, the error propagates; the
   * bytes after that line stay held and the next `push` goes on from them.
   */
  push(chunk: Buffer): void {
    if (this.carry !== undefined) {
      chunk = Buffer.concat([this.carry, chunk]);
      this.carry = undefined;
    }
    const n = chunk.length;
    let pos = 0;
    try {
      if (this.pendingLen > 0) {
        const nl = chunk.indexOf(LF);
        if (nl < 0) {
          this.hold(chunk);
          return;
        }
        // Only the held line is copied; the rest of the chunk is parsed in place.
        this.hold(chunk.subarray(0, nl + 1));
        const line = this.pending!;
        const len = this.pendingLen;
        // Arguments of this line are views into it: never reuse it for the next partial line.
        this.pending = undefined;
        this.pendingLen = 0;
        pos = nl + 1;
        this.emit(line, 0, len - 1);
      }
      while (pos < n) {
        if (chunk[pos] === GT) {
          // A RESP3 push (a keyspace notification on the same connection): length-prefixed, may hold CR/LF.
          const end = this.pushFrame(chunk, pos);
          if (end < 0) {
            this.carry = chunk.subarray(pos);
            return;
          }
          pos = end;
          continue;
        }
        const nl = chunk.indexOf(LF, pos);
        if (nl < 0) {
          this.hold(chunk.subarray(pos));
          return;
        }
        const start = pos;
        pos = nl + 1;
        this.emit(chunk, start, nl);
      }
    } catch (err) {
      if (pos < n) this.carry = chunk.subarray(pos);
      throw err;
    }
  }

  /**
   * Appends to the held partial line, growing by doubling so a line that arrives in many small chunks costs linear
   * time.
   */
  private hold(bytes: Buffer): void {
    const need = this.pendingLen + bytes.length;
    if (this.pending === undefined || need > this.pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.pendingLen * 2, 1024));
      if (this.pending !== undefined) this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    bytes.copy(this.pending, this.pendingLen);
    this.pendingLen = need;
  }

  private emit(buf: Buffer, start: number, nl: number): void {
    if (buf[start] !== PLUS || nl - 1 <= start || buf[nl - 1] !== CR) {
      throw malformed(
        buf,
        start,
        nl,
        start,
        'a line of the form \'+<sec>.<usec> [<db> <client>] "arg" …\' ending in CRLF',
      );
    }
    this.onLine(parseMonitorLine(buf, start + 1, nl - 1));
  }
}

/**
 * Parses one MONITOR line without the leading `+` and the trailing CRLF, e.g.
 * `1700000000.123456 [0 127.0.0.1:5555] "SET" "k" "v"`, into exact bytes:
 * arguments are unescaped from Redis's sdscatrepr form. Arguments without
 * escapes are views into `buf`; escaped ones are fresh Buffers.
 *
 * @param start index of the first digit of the seconds. @default 0
 * @param end index just past the last `"` (where the CR is). @default buf.length
 * @throws ProtocolError when the bytes are not a MONITOR line.
 */
export function parseMonitorLine(buf: Buffer, start = 0, end = buf.length): MonitorLine {
  let p = start;
  let c = 0;

  // Timestamp `%ld.%06ld`: digits are summed directly, no string is built.
  let sec = 0;
  while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
    sec = sec * 10 + (c - 0x30);
    p++;
  }
  if (p === start || c !== 0x2e) throw malformed(buf, start, end, p, 'the timestamp <sec>.<usec>');
  const usecStart = ++p;
  let usec = 0;
  while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
    usec = usec * 10 + (c - 0x30);
    p++;
  }
  if (p - usecStart !== 6 || c !== SPACE || buf[p + 1] !== 0x5b)
    throw malformed(buf, start, end, p, "six digits of µs, then ' ['");
  p += 2;

  const dbStart = p;
  let db = 0;
  while (p < end && (c = buf[p]) >= 0x30 && c <= 0x39) {
    db = db * 10 + (c - 0x30);
    p++;
  }
  if (p === dbStart || c !== SPACE) throw malformed(buf, start, end, p, 'the db number and a space');
  p++;

  // The client ends at `] "`: an IPv6 peer (`[::1]:port`) and a unix socket
  // path may contain `]`, but neither is followed by ` "` in practice.
  const clientStart = p;
  const last = end - 2;
  while (p < last && !(buf[p] === 0x5d && buf[p + 1] === SPACE && buf[p + 2] === QUOTE)) p++;
  if (p >= last) throw malformed(buf, start, end, clientStart, "the client and '] \"'");
  const client = clientName(buf, clientStart, p);
  p += 2;

  const argv: Buffer[] = [];
  for (;;) {
    if (buf[p] !== QUOTE) throw malformed(buf, start, end, p, 'a quoted argument');
    const argStart = ++p;
    // Bytes the escapes save: `\n` → 1 byte saves 1, `\xHH` → 1 byte saves 3.
    let saved = 0;
    while (p < end) {
      c = buf[p];
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        if (buf[p + 1] === 0x78) {
          saved += 3;
          p += 4;
        } else {
          saved += 1;
          p += 2;
        }
      } else p++;
    }
    if (p >= end) throw malformed(buf, start, end, argStart - 1, 'a closing quote');
    argv.push(
      saved === 0 ? buf.subarray(argStart, p) : unescapeRepr(buf, argStart, p, p - argStart - saved, start, end),
    );
    p++;
    if (p === end) break;
    if (buf[p] !== SPACE) throw malformed(buf, start, end, p, "' ' or the end of the line after an argument");
    p++;
  }
  return { tsUs: sec * 1_000_000 + usec, db, client, argv };
}

/** Decodes sdscatrepr escapes of `buf[from, to)` into a new Buffer of `size` bytes. */
function unescapeRepr(buf: Buffer, from: number, to: number, size: number, lineStart: number, lineEnd: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  let p = from;
  while (p < to) {
    const c = buf[p];
    if (c !== BACKSLASH) {
      out[o++] = c;
      p++;
      continue;
    }
    const e = buf[p + 1];
    switch (e) {
      case BACKSLASH:
      case QUOTE:
        out[o++] = e;
        break;
      case 0x6e: // n
        out[o++] = 0x0a;
        break;
      case 0x72: // r
        out[o++] = 0x0d;
        break;
      case 0x74: // t
        out[o++] = 0x09;
        break;
      case 0x61: // a
        out[o++] = 0x07;
        break;
      case 0x62: // b
        out[o++] = 0x08;
        break;
      case 0x78: {
        // x: sdscatrepr always writes two lower-case hex digits
        const hi = HEX[buf[p + 2]];
        const lo = HEX[buf[p + 3]];
        if (p + 3 >= to || hi > 15 || lo > 15) throw malformed(buf, lineStart, lineEnd, p, 'two hex digits after \\x');
        out[o++] = (hi << 4) | lo;
        p += 4;
        continue;
      }
      default:
        throw malformed(buf, lineStart, lineEnd, p, 'one of the escapes \\\\ \\" \\n \\r \\t \\a \\b \\xHH');
    }
    p += 2;
  }
  return out;
}

/** Hex digit value per byte, 255 for a non-digit. */
const HEX = new Uint8Array(256).fill(255);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) HEX[0x61 + i] = HEX[0x41 + i] = 10 + i;

// Consecutive lines mostly come from the same client: reuse its string
// instead of decoding (and allocating) it for every line.
let cachedClient = '';
const cachedClientBytes = Buffer.alloc(256);
let cachedClientLen = -1;

function clientName(buf: Buffer, from: number, to: number): string {
  const len = to - from;
  if (len === cachedClientLen) {
    let i = 0;
    while (i < len && buf[from + i] === cachedClientBytes[i]) i++;
    if (i === len) return cachedClient;
  }
  const s = buf.toString('latin1', from, to);
  if (len <= cachedClientBytes.length) {
    buf.copy(cachedClientBytes, 0, from, to);
    cachedClientLen = len;
    cachedClient = s;
  }
  return s;
}

function malformed(buf: Buffer, start: number, end: number, at: number, expected: string): ProtocolError {
  const shown =
    end - start > 200 ? `${readableBytes(buf.subarray(start, start + 200))}…` : readableBytes(buf.subarray(start, end));
  return new ProtocolError(
    `MONITOR line is malformed at byte ${at - start}: expected ${expected} in "${shown}"; ` +
      'the stream is not Redis 7 MONITOR output or lost sync: reconnect and start a new capture epoch',
  );
}
