import { ProtocolError } from './errors.js';

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
 * Incremental RESP reader (RESP2, and the RESP3 types a handshake or a push brings: maps and pushes as flat arrays): `push` bytes as they arrive, then call `read()`
 * until it returns `undefined` (needs more bytes). `consumed` counts the bytes
 * of every complete value returned (the replication offset needs it).
 */
export class RespReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Total bytes of all values returned by `read()`. */
  consumed = 0;

  /** Chunks held back until a large bulk string is complete (avoids re-concatenating per chunk). */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Bytes from `pos` the value being parsed needs, when known. */
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

  /** Bytes received but not yet returned as values. */
  get pending(): number {
    return this.buf.length - this.pos + this.partsLen;
  }

  /** Takes the unread bytes out of the reader (for a switch to raw framing, such as an RDB payload). */
  takeRemaining(): Buffer {
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
    const start = this.pos;
    const v = this.parse();
    if (v === NEED_MORE) {
      if (this.wanted > 0) this.wanted = this.wanted - start;
      this.pos = start;
      return undefined;
    }
    this.consumed += this.pos - start;
    return v;
  }

  private line(): string | typeof NEED_MORE {
    const end = this.buf.indexOf(CRLF, this.pos);
    if (end < 0) return NEED_MORE;
    const s = this.buf.toString('latin1', this.pos, end);
    this.pos = end + 2;
    return s;
  }

  private parse(): RespValue | typeof NEED_MORE {
    if (this.pos >= this.buf.length) return NEED_MORE;
    const type = this.buf[this.pos++];
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
        if (len < 0) return null;
        if (this.pos + len + 2 > this.buf.length) {
          this.wanted = this.pos + len + 2; // absolute; read() makes it relative to the value's start
          return NEED_MORE;
        }
        const b = this.buf.subarray(this.pos, this.pos + len);
        this.pos += len + 2;
        return b;
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
        const out: RespValue[] = new Array(n);
        for (let i = 0; i < n; i++) {
          const v = this.parse();
          if (v === NEED_MORE) return NEED_MORE;
          out[i] = v;
        }
        return out;
      }
      default:
        throw new ProtocolError(`unexpected RESP type byte 0x${(type ?? 0).toString(16)} in reply`);
    }
  }
}

const NEED_MORE = Symbol('need-more');

// A `$EOF:<mark>` RDB header, for one, is not a length: reading it as NaN would corrupt the position.
function badLength(what: string, line: string): ProtocolError {
  return new ProtocolError(`RESP ${what} length "${line.slice(0, 60)}" is not an integer; raw framing such as a diskless RDB ($EOF:) must be read after takeRemaining()`);
}
