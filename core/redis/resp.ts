import { ProtocolError } from '../errors.js';

/** A RESP2 value as read off the wire. Bulk strings stay bytes. */
export type RespValue = string | number | Buffer | null | RespError | RespValue[];

/** An error reply (`-ERR …`). Returned, not thrown, so a pipeline can go on. */
export class RespError {
  constructor(readonly message: string) {}
}

const CRLF = Buffer.from('\r\n');

/** Encodes one command (argv of strings or bytes) as a RESP array of bulk strings. */
export function encodeCommand(argv: readonly (Buffer | string | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${argv.length}\r\n`)];
  for (const a of argv) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, CRLF);
  }
  return Buffer.concat(parts);
}

/** The inverse of encodeCommand: exactly one RESP array of bulk strings, else ProtocolError. */
export function decodeCommand(resp: Buffer): Buffer[] {
  const reader = new RespReader();
  reader.push(resp);
  const v = reader.read();
  if (!Array.isArray(v) || reader.pending !== 0 || !v.every((x) => Buffer.isBuffer(x))) {
    throw new ProtocolError(`expected exactly one RESP command (an array of bulk strings) in ${resp.length} bytes`);
  }
  return v as Buffer[];
}

/** Byte length of `encodeCommand(argv)` without building it. */
export function encodedCommandLength(argv: readonly Buffer[]): number {
  let n = 3 + String(argv.length).length;
  for (const a of argv) n += 1 + String(a.length).length + 2 + a.length + 2;
  return n;
}

/**
 * Incremental RESP reader (RESP2, and the RESP3 types a handshake or a push brings: maps and pushes as flat arrays):
 * `push` bytes as they arrive, then call `read()`
 * until it returns `undefined` (needs more bytes). `consumed` counts the bytes
 * of every complete value returned (the replication offset needs it).
 *
 * Resumable: an array that is not complete yet keeps what it has parsed (a stack of open arrays), so a reply of a
 * million elements arriving in a few hundred chunks is parsed once, not once per chunk.
 */
export class RespReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Total bytes of all values returned by `read()`. */
  consumed = 0;
  /** Bytes of the value being read that are parsed already (its open arrays' headers and complete elements). */
  private progress = 0;
  /** Arrays opened and not complete yet, outermost first. */
  private readonly open: { out: RespValue[]; i: number }[] = [];

  /** Chunks held back until a large bulk string is complete (avoids re-concatenating per chunk). */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Bytes from `pos` the element being parsed needs, when known. */
  private wanted = 0;

  push(chunk: Buffer): void {
    const have = this.buf.length - this.pos;
    if (this.wanted > 0 && have + this.partsLen + chunk.length < this.wanted) {
      this.parts.push(chunk);
      this.partsLen += chunk.length;
      return;
    }
    if (have === 0 && this.parts.length === 0) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.pos), ...this.parts, chunk]);
      this.parts = [];
      this.partsLen = 0;
    }
    this.pos = 0;
    this.wanted = 0;
  }

  /** Bytes received but not yet parsed. */
  get pending(): number {
    return this.buf.length - this.pos + this.partsLen;
  }

  /** Takes the unread bytes out of the reader (for a switch to raw framing, such as an RDB payload). */
  takeRemaining(): Buffer {
    if (this.open.length > 0) throw new ProtocolError('takeRemaining() in the middle of an array reply');
    const rest = Buffer.concat([this.buf.subarray(this.pos), ...this.parts]);
    this.buf = Buffer.alloc(0);
    this.parts = [];
    this.partsLen = 0;
    this.wanted = 0;
    this.pos = 0;
    return rest;
  }

  /** The next complete value, or `undefined` when more bytes are needed. */
  read(): RespValue | undefined {
    for (;;) {
      const start = this.pos;
      const v = this.element();
      if (v === NEED_MORE) {
        this.pos = start;
        return undefined;
      }
      this.progress += this.pos - start;
      if (v === OPENED) continue;
      let done: RespValue = v;
      // Hand the element to the innermost open array; a completed array is an element of the next one out.
      for (;;) {
        const top = this.open[this.open.length - 1];
        if (!top) {
          this.consumed += this.progress;
          this.progress = 0;
          return done;
        }
        top.out[top.i++] = done;
        if (top.i < top.out.length) break;
        this.open.pop();
        done = top.out;
      }
    }
  }

  /**
   * The next value like `read()`, faster when it is a command (an array of bulk strings) whose bytes have all
   * arrived: read in one pass with no stack, as most of a replication stream is. Anything else, or a command split
   * across chunks, goes through `read()`.
   */
  readCommand(): RespValue | undefined {
    if (this.open.length === 0 && this.wanted === 0) {
      const v = this.wholeCommand();
      if (v !== undefined) {
        this.lastWasCommand = true;
        return v;
      }
    }
    this.lastWasCommand = false;
    return this.read();
  }

  private lastName: Buffer | undefined;

  /** The last value `readCommand` returned is an array of bulk strings, read by its fast path (else: unknown). */
  lastWasCommand = false;

  /** A command wholly in `buf` at `pos` (then consumed), else undefined with nothing consumed. */
  private wholeCommand(): Buffer[] | undefined {
    const buf = this.buf;
    const end = buf.length;
    let p = this.pos;
    if (p >= end || buf[p] !== 0x2a) return undefined;
    // Header `*<n>\r\n`, then n × `$<len>\r\n<bytes>\r\n`; lengths of at most 15 digits (as intLine).
    let n = 0;
    let q = ++p;
    while (q < end && q - p < 15) {
      const c = buf[q]!;
      if (c < 0x30 || c > 0x39) break;
      n = n * 10 + (c - 0x30);
      q++;
    }
    if (q === p || q + 1 >= end || buf[q] !== 0x0d || buf[q + 1] !== 0x0a || n === 0) return undefined;
    p = q + 2;
    const out: Buffer[] = new Array(n);
    for (let i = 0; i < n; i++) {
      if (p >= end || buf[p] !== 0x24) return undefined;
      let len = 0;
      q = ++p;
      while (q < end && q - p < 15) {
        const c = buf[q]!;
        if (c < 0x30 || c > 0x39) break;
        len = len * 10 + (c - 0x30);
        q++;
      }
      if (q === p || q + 1 >= end || buf[q] !== 0x0d || buf[q + 1] !== 0x0a) return undefined;
      p = q + 2;
      if (p + len + 2 > end) return undefined;
      // The command name: the previous command's Buffer when the bytes are the same (one object less per entry of a
      // stream that repeats a few names).
      const name = this.lastName;
      if (i === 0 && name !== undefined && name.length === len && len <= 16 && sameAt(buf, p, name)) out[0] = name;
      else {
        out[i] = buf.subarray(p, p + len);
        if (i === 0) this.lastName = out[0];
      }
      p += len + 2;
    }
    this.consumed += p - this.pos;
    this.pos = p;
    return out;
  }

  /** A bulk string of `len` bytes at `pos` (its header read from `start`). */
  private bulk(len: number, start: number): RespValue | typeof NEED_MORE {
    if (len < 0) return null;
    if (this.pos + len + 2 > this.buf.length) {
      this.wanted = this.pos + len + 2 - start;
      return NEED_MORE;
    }
    const b = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len + 2;
    return b;
  }

  /** An array header of `n` elements (RESP2 `*`). */
  private array(n: number): RespValue | typeof OPENED {
    if (n < 0) return null;
    if (n === 0) return [];
    this.open.push({ out: new Array(n), i: 0 });
    return OPENED;
  }

  /**
   * The integer of a header line (`-1`, `0`, `123`) read from its bytes, or undefined when it is anything else (the
   * caller then reads it as text, with its error); NEED_MORE when its line end has not arrived.
   */
  private intLine(): number | undefined | typeof NEED_MORE {
    const buf = this.buf;
    let p = this.pos;
    let neg = false;
    if (buf[p] === 0x2d) {
      neg = true;
      p++;
    }
    let n = 0;
    const first = p;
    while (p < buf.length && p - first < 15) {
      const c = buf[p]!;
      if (c < 0x30 || c > 0x39) break;
      n = n * 10 + (c - 0x30);
      p++;
    }
    if (p >= buf.length) return NEED_MORE;
    if (p === first || buf[p] !== 0x0d) return undefined;
    if (p + 1 >= buf.length) return NEED_MORE;
    if (buf[p + 1] !== 0x0a) return undefined;
    this.pos = p + 2;
    return neg ? -n : n;
  }

  private line(): string | typeof NEED_MORE {
    const end = this.buf.indexOf(CRLF, this.pos);
    if (end < 0) return NEED_MORE;
    const s = this.buf.toString('latin1', this.pos, end);
    this.pos = end + 2;
    return s;
  }

  /** One scalar, or the header of a non-empty array (pushed on `open`: OPENED). */
  private element(): RespValue | typeof NEED_MORE | typeof OPENED {
    if (this.pos >= this.buf.length) return NEED_MORE;
    const start = this.pos;
    const type = this.buf[this.pos++];
    // Bulk and array headers are most of a replication stream: their length is read from the bytes, no string.
    if (type === 0x24 || type === 0x2a) {
      const n = this.intLine();
      if (n === NEED_MORE) {
        this.pos = start;
        return NEED_MORE;
      }
      if (n !== undefined) return type === 0x24 ? this.bulk(n, start) : this.array(n);
    }
    const line = this.line();
    if (line === NEED_MORE) return NEED_MORE;
    switch (type) {
      case 0x2b: // +
        return line;
      case 0x2d: // -
        return new RespError(line);
      case 0x3a: // :
        return Number(line);
      case 0x24: {
        // $
        const len = Number(line);
        if (!Number.isInteger(len)) throw badLength('bulk string', line);
        return this.bulk(len, start);
      }
      case 0x5f: // _ RESP3 null
        return null;
      case 0x23: // # RESP3 boolean
        return line === 't' ? 1 : 0;
      case 0x2c: // , RESP3 double (as text: exact)
        return line;
      case 0x2a: // *
      case 0x3e: // > RESP3 push (as an array)
      case 0x7e: // ~ RESP3 set
      case 0x25: {
        // % RESP3 map: read as a flat array of key, value, key, value …
        let n = Number(line);
        if (!Number.isInteger(n)) throw badLength('array', line);
        if (n < 0) return null;
        if (type === 0x25) n *= 2;
        if (n === 0) return [];
        this.open.push({ out: new Array(n), i: 0 });
        return OPENED;
      }
      default:
        throw new ProtocolError(`unexpected RESP type byte 0x${(type ?? 0).toString(16)} in reply`);
    }
  }
}

/** Whether `b` holds the bytes of `name` at `at` (short names: a loop costs less than a native compare). */
function sameAt(b: Buffer, at: number, name: Buffer): boolean {
  for (let k = 0; k < name.length; k++) if (b[at + k] !== name[k]) return false;
  return true;
}

const NEED_MORE = Symbol('need-more');
const OPENED = Symbol('opened');

// A `$EOF:<mark>` RDB header, for one, is not a length: reading it as NaN would corrupt the position.
function badLength(what: string, line: string): ProtocolError {
  return new ProtocolError(
    `RESP ${what} length "${line.slice(0, 60)}" is not an integer; raw framing such as a diskless RDB ($EOF:) must be read after takeRemaining()`,
  );
}
