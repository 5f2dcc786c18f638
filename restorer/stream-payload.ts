/*
 * Sets consumer-group delivery times inside a stream's DUMP payload, for RESTORE … REPLACE: the one way to set the time
 * of an entry deleted from its stream while still pending (XCLAIM drops such an entry from the pending list instead),
 * and one that leaves the consumers' seen and active times as they are (XCLAIM moves them to now).
 *
 * Layout (Redis rdb.c rdbSaveObject for OBJ_STREAM, types 19 RDB_TYPE_STREAM_LISTPACKS_2 from 7.0 and 21
 * RDB_TYPE_STREAM_LISTPACKS_3 from 7.2, Valkey included): listpack nodes (count, then key and listpack strings),
 * length, last id, first id, max deleted id, entries added (lengths), groups: count, then each group's name
 * (string), last id, entries read (lengths), its PEL (count, then 16-byte big-endian id, 8-byte little-endian
 * delivery time in ms, delivery count), its consumers (count, then name, seen time, [active time: 21], their PEL of
 * ids). A DUMP payload is the type byte, that object, the RDB version (2 bytes) and a CRC-64 (Jones) of all before it.
 */

const STREAM_LISTPACKS_2 = 19;
const STREAM_LISTPACKS_3 = 21;

/** Reads an RDB payload: lengths and strings, skipped without decoding. */
class Cursor {
  constructor(
    readonly b: Buffer,
    public o: number,
  ) {}

  private need(n: number): void {
    if (this.o + n > this.b.length) throw new RangeError(`stream payload ends at byte ${this.b.length}`);
  }

  /** rdbLoadLen: 6-bit, 14-bit, 32-bit or 64-bit big-endian length; an encoded string's marker is no length. */
  len(): number {
    this.need(1);
    const first = this.b[this.o]!;
    const kind = first >> 6;
    if (kind === 0) {
      this.o += 1;
      return first & 0x3f;
    }
    if (kind === 1) {
      this.need(2);
      const v = ((first & 0x3f) << 8) | this.b[this.o + 1]!;
      this.o += 2;
      return v;
    }
    if (first === 0x80) {
      this.need(5);
      const v = this.b.readUInt32BE(this.o + 1);
      this.o += 5;
      return v;
    }
    if (first === 0x81) {
      this.need(9);
      const v = Number(this.b.readBigUInt64BE(this.o + 1));
      this.o += 9;
      return v;
    }
    throw new RangeError(`not a length at byte ${this.o} of the stream payload (0x${first.toString(16)})`);
  }

  /** rdbLoadString without its bytes: an integer (1, 2 or 4 bytes), an LZF block, or a length and bytes. */
  skipString(): void {
    this.need(1);
    const first = this.b[this.o]!;
    if (first >> 6 === 3) {
      this.o += 1;
      const enc = first & 0x3f;
      if (enc === 0) this.o += 1;
      else if (enc === 1) this.o += 2;
      else if (enc === 2) this.o += 4;
      else if (enc === 3) {
        const compressed = this.len();
        this.len(); // its length once decompressed
        this.o += compressed;
      } else throw new RangeError(`unknown string encoding ${enc} in the stream payload`);
    } else {
      const n = this.len(); // read before `o` is: `this.o += this.len()` would add to the old position
      this.o += n;
    }
    this.need(0);
  }

  skip(n: number): void {
    this.need(n);
    this.o += n;
  }
}

/** The 16 bytes of a stream id `ms-seq` as Redis keys its radix trees (big endian), hex. */
export function rawStreamId(id: string): string {
  const m = /^(\d+)-(\d+)$/.exec(id);
  if (!m) throw new RangeError(`"${id}" is not a stream id`);
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(BigInt(m[1]!), 0);
  b.writeBigUInt64BE(BigInt(m[2]!), 8);
  return b.toString('hex');
}

/**
 * The payload with the delivery times of `times` set: per group, by its position among the stream's groups (the order
 * of XINFO GROUPS: sorted by name, as the payload holds them), entry id (rawStreamId) → time in ms. Entries not in a
 * group's PEL are ignored. Returns the new payload and how many times it set, or undefined when the payload is no
 * stream of a layout known here (a type other than 19 or 21).
 */
export function setPayloadDeliveryTimes(
  payload: Buffer,
  times: ReadonlyMap<number, ReadonlyMap<string, number>>,
): { payload: Buffer; set: number } | undefined {
  const type = payload[0];
  if (type !== STREAM_LISTPACKS_2 && type !== STREAM_LISTPACKS_3) return undefined;
  const out = Buffer.from(payload);
  const c = new Cursor(out, 1);
  for (let nodes = c.len(); nodes > 0; nodes--) {
    c.skipString();
    c.skipString();
  }
  // length, last id (2), first id (2), max deleted id (2), entries added
  for (let i = 0; i < 8; i++) c.len();
  let set = 0;
  const groups = c.len();
  for (let g = 0; g < groups; g++) {
    c.skipString();
    c.len(); // last id ms
    c.len(); // last id seq
    c.len(); // entries read
    const wanted = times.get(g);
    for (let pel = c.len(); pel > 0; pel--) {
      const id = out.toString('hex', c.o, c.o + 16);
      c.skip(16);
      const t = wanted?.get(id);
      if (t !== undefined) {
        out.writeBigInt64LE(BigInt(t), c.o);
        set++;
      }
      c.skip(8);
      c.len(); // delivery count
    }
    for (let consumers = c.len(); consumers > 0; consumers--) {
      c.skipString();
      c.skip(type === STREAM_LISTPACKS_3 ? 16 : 8);
      for (let pel = c.len(); pel > 0; pel--) c.skip(16);
    }
  }
  // What follows the object: the RDB version (2 bytes), then the CRC.
  if (c.o + 10 !== out.length)
    throw new RangeError(`stream payload of ${out.length} bytes has ${out.length - c.o - 10} unread`);
  out.writeBigUInt64LE(crc64(out.subarray(0, out.length - 8)), out.length - 8);
  return { payload: out, set };
}

/** CRC-64/Jones as Redis computes it (crc64.c: reflected, polynomial 0xad93d23594c935a9, no final xor). */
export function crc64(data: Uint8Array): bigint {
  const { hiTable, loTable } = crcTables();
  // The 64-bit register as two 32-bit halves: no BigInt per byte (a payload may be megabytes).
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < data.length; i++) {
    const idx = (lo ^ data[i]!) & 0xff;
    lo = (((lo >>> 8) | ((hi & 0xff) << 24)) ^ loTable[idx]!) >>> 0;
    hi = ((hi >>> 8) ^ hiTable[idx]!) >>> 0;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

let TABLES: { hiTable: Uint32Array; loTable: Uint32Array } | undefined;
function crcTables(): { hiTable: Uint32Array; loTable: Uint32Array } {
  if (TABLES) return TABLES;
  const poly = 0x95ac9329ac4bc9b5n; // 0xad93d23594c935a9 bit-reflected
  const hiTable = new Uint32Array(256);
  const loTable = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = BigInt(i);
    for (let k = 0; k < 8; k++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
    hiTable[i] = Number(crc >> 32n);
    loTable[i] = Number(crc & 0xffffffffn);
  }
  TABLES = { hiTable, loTable };
  return TABLES;
}
