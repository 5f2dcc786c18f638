/** Hash slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16_384;

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with (cluster.c keyHashSlot). */
const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

function crc16(buf: Buffer, from: number, to: number): number {
  let crc = 0;
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ buf[i]!) & 0xff]!;
  return crc;
}

/**
 * The hash slot of a key, as Redis Cluster computes it: CRC16 of the key mod 16384, or of the hash tag — the bytes
 * between the first `{` and the first `}` after it, when there are any.
 */
export function keySlot(key: Buffer): number {
  const open = key.indexOf(0x7b);
  if (open >= 0) {
    const close = key.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(key, open + 1, close) & (CLUSTER_SLOTS - 1);
  }
  return crc16(key, 0, key.length) & (CLUSTER_SLOTS - 1);
}

/**
 * A hash tag `{fb:N}` (smallest N) whose slot is one of `owned`, so a key holding it is served by the node owning
 * those slots. Undefined when `owned` is empty.
 */
export function hashTagForSlots(owned: ReadonlySet<number>, prefix = 'fb'): string | undefined {
  if (owned.size === 0) return undefined;
  // Each N hits a slot uniformly at random: a node owning a share p of the slots is reached after 1/p tries on average.
  for (let n = 0; n < 1_000_000; n++) {
    const tag = `{${prefix}:${n}}`;
    if (owned.has(keySlot(Buffer.from(tag)))) return tag;
  }
  return undefined;
}
