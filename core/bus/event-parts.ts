import { ProtocolError } from '../errors.js';

/**
 * A batch body larger than one NATS message (the server's max_payload, 1 MiB
 * by default; Redis values reach 512 MB) travels as consecutive part
 * messages. Every part carries `Flashback-Part: i/n` (1-based) and
 * `Flashback-Batch: <node:epoch:firstSeq>`, and its own Nats-Msg-Id
 * `node:epoch:firstSeq:i`, so a retried part is deduplicated like a whole
 * batch. The sink joins the parts of one batch before decoding it.
 */

/** Header with the part's position: `i/n`, 1 ≤ i ≤ n. */
export const PART_HEADER = 'Flashback-Part';
/** Header naming the batch a part belongs to: the message id its whole batch would have (`node:epoch:firstSeq`). */
export const BATCH_HEADER = 'Flashback-Batch';
/** Bytes of a message left for headers (Nats-Msg-Id, the part headers) and protocol framing. @default 8 KiB */
export const HEADER_ROOM_BYTES = 8 * 1024;

/** Position of one part. */
export interface PartPosition {
  /** 1-based. */
  index: number;
  count: number;
}

/** Largest body a message may carry under a connection's max_payload (headers and framing room taken off). */
export function maxPartBytes(maxPayloadBytes: number): number {
  return Math.max(1024, maxPayloadBytes - HEADER_ROOM_BYTES);
}

/** Splits a body into parts of at most `partBytes` (views into `body`, no copy); one part when it fits. */
export function splitBody(body: Buffer, partBytes: number): Buffer[] {
  if (!(partBytes > 0)) throw new RangeError(`part size ${partBytes} must be > 0`);
  if (body.length <= partBytes) return [body];
  const parts: Buffer[] = [];
  for (let o = 0; o < body.length; o += partBytes) parts.push(body.subarray(o, Math.min(body.length, o + partBytes)));
  return parts;
}

/** Concatenates parts given in order 1..n back into the body. */
export function joinParts(parts: readonly Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

/** Nats-Msg-Id of part `index` of the batch whose whole-message id is `batchId`. */
export function partMessageId(batchId: string, index: number): string {
  return `${batchId}:${index}`;
}

/** The `Flashback-Part` header value. */
export function formatPart(p: PartPosition): string {
  return `${p.index}/${p.count}`;
}

/** Parses a `Flashback-Part` header value; ProtocolError when it is not `i/n` with 1 ≤ i ≤ n. */
export function parsePart(value: string): PartPosition {
  const m = /^(\d{1,9})\/(\d{1,9})$/.exec(value.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || index < 1 || index > count) {
    throw new ProtocolError(
      `${PART_HEADER} header "${value}" is not i/n with 1 ≤ i ≤ n; was the message published by a flashback agent?`,
    );
  }
  return { index, count };
}

/** The parts of one batch received so far. */
export interface HeldBatch<M> {
  batchId: string;
  count: number;
  /** Index i-1 holds part i. */
  parts: (M | undefined)[];
  received: number;
  bytes: number;
  /** When its first part arrived, ms since the epoch. */
  sinceMs: number;
}

/** A batch whose every part arrived: its body and the messages that carried it, in part order. */
export interface JoinedBatch<M> {
  batchId: string;
  body: Buffer;
  msgs: M[];
}

/**
 * Collects part messages until their batch is whole. Parts of many batches
 * may interleave and arrive in any order; a part delivered again replaces the
 * copy held (the newest delivery is the one to acknowledge). The caller bounds
 * memory with `heldBytes` and takes batches out with `evictOldest`/`takeOlderThan`.
 */
export class PartCollector<M extends { data: Uint8Array }> {
  private readonly held = new Map<string, HeldBatch<M>>();
  /** Bytes of the parts held. */
  heldBytes = 0;

  /** Batches incomplete now. */
  get size(): number {
    return this.held.size;
  }

  /**
   * Adds a part; returns the whole batch once its last part is in. ProtocolError when the part count contradicts
   * earlier parts.
   */
  add(batchId: string, part: PartPosition, msg: M, nowMs = Date.now()): JoinedBatch<M> | undefined {
    let h = this.held.get(batchId);
    if (!h) {
      h = {
        batchId,
        count: part.count,
        parts: new Array<M | undefined>(part.count).fill(undefined),
        received: 0,
        bytes: 0,
        sinceMs: nowMs,
      };
      this.held.set(batchId, h);
    }
    if (h.count !== part.count) {
      throw new ProtocolError(
        `part ${formatPart(part)} of batch ${batchId} contradicts the ${h.count} parts announced before; was the batch published twice with different sizes?`,
      );
    }
    const old = h.parts[part.index - 1];
    if (old) {
      h.bytes -= old.data.length;
      this.heldBytes -= old.data.length;
    } else h.received++;
    h.parts[part.index - 1] = msg;
    h.bytes += msg.data.length;
    this.heldBytes += msg.data.length;
    if (h.received < h.count) return undefined;
    this.remove(h);
    const msgs = h.parts as M[];
    return { batchId, body: joinParts(msgs.map((m) => m.data)), msgs };
  }

  /** Every message held, e.g. to keep them from being redelivered while their batch is incomplete. */
  messages(): M[] {
    const out: M[] = [];
    for (const h of this.held.values()) for (const m of h.parts) if (m) out.push(m);
    return out;
  }

  /** Removes and returns the batch held longest (undefined when none). */
  evictOldest(): HeldBatch<M> | undefined {
    const first = this.held.values().next();
    if (first.done) return undefined;
    this.remove(first.value);
    return first.value;
  }

  /** Removes and returns the batches whose first part arrived before `beforeMs`. */
  takeOlderThan(beforeMs: number): HeldBatch<M>[] {
    const out: HeldBatch<M>[] = [];
    for (const h of this.held.values()) if (h.sinceMs < beforeMs) out.push(h);
    for (const h of out) this.remove(h);
    return out;
  }

  /** Removes and returns every batch held. */
  takeAll(): HeldBatch<M>[] {
    const out = [...this.held.values()];
    for (const h of out) this.remove(h);
    return out;
  }

  private remove(h: HeldBatch<M>): void {
    this.held.delete(h.batchId);
    this.heldBytes -= h.bytes;
  }
}
