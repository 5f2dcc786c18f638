import { Redis } from 'ioredis';
import { readableBytes } from './escape.js';

/** A key's value as people read it: bytes escaped like MONITOR and redis-cli print them, large values cut. */
export interface KeyValue {
  /** `none` when the key does not exist. */
  type: 'none' | 'string' | 'hash' | 'list' | 'set' | 'zset' | 'stream' | string;
  /** Milliseconds to live; -1 without expiry, -2 when the key does not exist. */
  ttlMs: number;
  /** Bytes of a string, fields of a hash, elements of a list, set or zset, entries of a stream. */
  size: number;
  /** A string's bytes (readable). */
  value?: string;
  /** A collection's first items: [field, value], [element], [member, score], [id, 'f v …']. */
  items?: string[][];
  /** Whether `value` or `items` show only part of it. */
  truncated: boolean;
}

/** Turns a readable key (core/redis/escape.ts) back into its bytes. */
export function unreadableBytes(text: string): Buffer {
  const out: number[] = [];
  const simple: Record<string, number> = { '\\': 0x5c, '"': 0x22, n: 0x0a, r: 0x0d, t: 0x09, a: 0x07, b: 0x08 };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c && i + 1 < text.length) {
      const e = text[i + 1]!;
      if (e in simple) {
        out.push(simple[e]!);
        i++;
        continue;
      }
      if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
        out.push(parseInt(text.slice(i + 2, i + 4), 16));
        i += 3;
        continue;
      }
    }
    // Readable text is latin1 by construction; anything above is taken as its UTF-8 bytes.
    if (c < 0x100) out.push(c);
    else out.push(...Buffer.from(text[i]!, 'utf8'));
  }
  return Buffer.from(out);
}

/**
 * A Redis glob (SCAN MATCH, restore `keys`) that matches `key`: glob characters escaped; a byte that a JS string cannot
 * carry as itself (≥ 0x80, sent as UTF-8) becomes `?`, which matches one byte, so the pattern may match a few more keys.
 */
export function globForKey(key: Buffer): string {
  let out = '';
  for (const b of key) {
    if (b >= 0x80) out += '?';
    else {
      const c = String.fromCharCode(b);
      out += '*?[]\\'.includes(c) ? `\\${c}` : c;
    }
  }
  return out;
}

/** Reads one key of a Redis server (database `db`) for display: at most `maxItems` items, strings cut at `maxBytes`. */
export async function readKeyValue(
  server: { host: string; port: number; password?: string },
  db: number,
  key: Buffer,
  { maxItems = 200, maxBytes = 4_096 }: { maxItems?: number; maxBytes?: number } = {},
): Promise<KeyValue> {
  const r = new Redis({
    ...server,
    db,
    lazyConnect: true,
    connectTimeout: 5_000,
    commandTimeout: 10_000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  // Failures reach the caller through the commands; the event would only be noise.
  r.on('error', () => undefined);
  await r.connect();
  const show = (b: Buffer) => readableBytes(b.length > maxBytes ? b.subarray(0, maxBytes) : b);
  try {
    const type = String(await r.type(key));
    const ttlMs = Number(await r.pttl(key));
    if (type === 'none') return { type, ttlMs, size: 0, truncated: false };
    if (type === 'string') {
      const v = (await r.getBuffer(key)) ?? Buffer.alloc(0);
      return { type, ttlMs, size: v.length, value: show(v), truncated: v.length > maxBytes };
    }
    const pairs = (flat: Buffer[]) => {
      const out: string[][] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) out.push([show(flat[i]!), show(flat[i + 1]!)]);
      return out;
    };
    let size: number;
    let items: string[][];
    if (type === 'hash') {
      size = await r.hlen(key);
      const [, flat] = (await r.callBuffer('HSCAN', key, '0', 'COUNT', String(maxItems))) as [Buffer, Buffer[]];
      items = pairs(flat).slice(0, maxItems);
    } else if (type === 'list') {
      size = await r.llen(key);
      items = (await r.lrangeBuffer(key, 0, maxItems - 1)).map((b) => [show(b)]);
    } else if (type === 'set') {
      size = await r.scard(key);
      const [, flat] = (await r.callBuffer('SSCAN', key, '0', 'COUNT', String(maxItems))) as [Buffer, Buffer[]];
      items = flat.slice(0, maxItems).map((b) => [show(b)]);
    } else if (type === 'zset') {
      size = await r.zcard(key);
      items = pairs((await r.callBuffer('ZRANGE', key, '0', String(maxItems - 1), 'WITHSCORES')) as Buffer[]);
    } else if (type === 'stream') {
      size = await r.xlen(key);
      const entries = (await r.callBuffer('XRANGE', key, '-', '+', 'COUNT', String(maxItems))) as [Buffer, Buffer[]][];
      items = entries.map(([id, fields]) => [show(id), fields.map(show).join(' ')]);
    } else return { type, ttlMs, size: 0, truncated: true };
    return { type, ttlMs, size, items, truncated: items.length < size };
  } finally {
    r.disconnect();
  }
}
