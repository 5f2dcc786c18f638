/*
 * A DUMP payload (RESTORE's argument) ends with 2 bytes of RDB version and the CRC-64 of everything before the CRC
 * (Jones polynomial, reflected, as Redis's crc64.c). RESTORE checks both before it parses anything
 * (7.0 verifyDumpPayload): a payload failing them is refused, never parsed.
 */

/** Table of the reflected Jones CRC-64, as two 32-bit halves (BigInt per byte would be ~50× slower). */
const TABLE_HI = new Uint32Array(256);
const TABLE_LO = new Uint32Array(256);
{
  // 0x95ac9329ac4bc9b5: the bit-reflected form of Redis's polynomial 0xad93d23594c935a9.
  const POLY_HI = 0x95ac9329;
  const POLY_LO = 0xac4bc9b5;
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let k = 0; k < 8; k++) {
      const odd = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi >>>= 1;
      if (odd) {
        hi = (hi ^ POLY_HI) >>> 0;
        lo = (lo ^ POLY_LO) >>> 0;
      }
    }
    TABLE_HI[i] = hi;
    TABLE_LO[i] = lo;
  }
}

/** Redis's CRC-64 of `bytes` (crc64(0, bytes, len)). */
export function crc64(bytes: Uint8Array): bigint {
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < bytes.length; i++) {
    const t = (lo ^ bytes[i]!) & 0xff;
    lo = (((lo >>> 8) | (hi << 24)) ^ TABLE_LO[t]!) >>> 0;
    hi = ((hi >>> 8) ^ TABLE_HI[t]!) >>> 0;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Whether RESTORE would get past its checksum: at least version + CRC, and the CRC (little-endian) right. */
export function dumpChecksumOk(payload: Buffer): boolean {
  if (payload.length < 10) return false;
  return crc64(payload.subarray(0, payload.length - 8)) === payload.readBigUInt64LE(payload.length - 8);
}

/** `payload` with its CRC made right again (for tests that need a payload RESTORE parses). */
export function withDumpChecksum(payload: Buffer): Buffer {
  const out = Buffer.from(payload);
  out.writeBigUInt64LE(crc64(out.subarray(0, out.length - 8)), out.length - 8);
  return out;
}
