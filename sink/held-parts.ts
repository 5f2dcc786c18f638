import type { JsMsg } from '@nats-io/jetstream';
import {
  BATCH_HEADER,
  PART_HEADER,
  PartCollector,
  parsePart,
  type HeldBatch,
  type JoinedBatch,
} from '../core/bus/event-parts.js';
import { ProtocolError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { SinkMetrics } from './metrics.js';

/** Options of {@link holdParts}. */
export interface HeldPartsOptions {
  metrics: SinkMetrics;
  logger: Logger;
  /** Over this many bytes held, the oldest incomplete batch is handed back. */
  maxHeldPartBytes: number;
  /** An incomplete batch is handed back after waiting this long for its other parts, ms. */
  partTimeoutMs: number;
  /** JetStream's ack wait, ms: held parts are kept from redelivery well within it, and handed back with it as delay. */
  ackWaitMs: number;
}

/** Part messages of split batches (core/bus/event-parts.ts), held until their batch is whole. */
export interface HeldParts {
  /**
   * Holds the part message `m` (its header `partHeader`); returns its batch when that was the last part missing.
   * Throws ProtocolError when the headers are not a flashback agent's.
   */
  add(m: JsMsg, partHeader: string): JoinedBatch<JsMsg> | undefined;
  /** Hands every incomplete batch back for redelivery (to the next sink) and stops the timer. */
  close(): void;
}

/** Starts holding part messages; a timer keeps them from redelivery and hands back the batches that wait too long. */
export function holdParts(o: HeldPartsOptions): HeldParts {
  const { metrics, logger, maxHeldPartBytes, partTimeoutMs, ackWaitMs } = o;
  const { stats } = metrics;
  const parts = new PartCollector<JsMsg>();

  const handBack = (h: HeldBatch<JsMsg>, why: string): void => {
    stats.partBatchesHandedBack++;
    const held = { batch: h.batchId, partsReceived: h.received, parts: h.count, heldBytes: h.bytes };
    logger.error(
      { ...held, heldMs: Date.now() - h.sinceMs },
      `split batch ${h.batchId} is incomplete (${h.received} of ${h.count} parts) and ${why}; its parts are handed ` +
        'back for redelivery (raise maxHeldPartBytes/partTimeoutMs if batches are this large or slow)',
    );
    for (const m of h.parts) m?.nak(ackWaitMs);
    stats.heldPartBytes = parts.heldBytes;
  };

  const timer = setInterval(
    () => {
      for (const h of parts.takeOlderThan(Date.now() - partTimeoutMs)) {
        handBack(h, `waited over partTimeoutMs (${partTimeoutMs} ms) for the rest`);
      }
      for (const m of parts.messages()) m.working();
    },
    Math.max(100, Math.min(ackWaitMs / 3, partTimeoutMs / 2)),
  );
  timer.unref();

  return {
    add(m, partHeader) {
      const batchId = m.headers?.get(BATCH_HEADER) ?? '';
      if (batchId === '') {
        throw new ProtocolError(
          `part message has ${PART_HEADER} but no ${BATCH_HEADER} header; was it published by a flashback agent?`,
        );
      }
      const joined = parts.add(batchId, parsePart(partHeader), m);
      if (!joined) {
        while (parts.heldBytes > maxHeldPartBytes) {
          handBack(parts.evictOldest()!, `its parts held exceed maxHeldPartBytes (${maxHeldPartBytes} bytes)`);
        }
      }
      stats.heldPartBytes = parts.heldBytes;
      return joined;
    },
    close() {
      clearInterval(timer);
      for (const h of parts.takeAll()) for (const m of h.parts) m?.nak();
      stats.heldPartBytes = 0;
    },
  };
}
