import type { JsMsg } from '@nats-io/jetstream';
import { decodeBatch, NewerBatchVersionError } from '../core/bus/event-codec.js';
import { PART_HEADER } from '../core/bus/event-parts.js';
import { EVENT_STREAM } from '../core/bus/nats.js';
import type { Logger } from '../core/log.js';
import type { Batcher } from './batcher.js';
import type { HeldParts } from './held-parts.js';
import type { SinkMetrics } from './metrics.js';
import { baselineToRow, eventToRow, parseBaselineRecord } from './rows.js';

/** How long a message of a newer batch format waits before it is offered again (an older sink still runs). */
const NEWER_VERSION_RETRY_MS = 30_000;

/** Options of {@link messageReader}. */
export interface MessageReaderOptions {
  batcher: Batcher;
  parts: HeldParts;
  metrics: SinkMetrics;
  logger: Logger;
}

/**
 * Reads one JetStream message into the batch: an event batch or a baseline record becomes rows; a part of a split
 * batch is held until its batch is whole; a message that cannot be decoded is terminated.
 */
export function messageReader(o: MessageReaderOptions): (m: JsMsg) => void {
  const { batcher, parts, metrics, logger } = o;
  const { stats } = metrics;

  const poison = (msgs: readonly JsMsg[], err: unknown): void => {
    if (err instanceof NewerBatchVersionError) {
      // Sound, but written by a newer agent: a newer sink will read it. Redelivered later, never terminated, so an
      // upgrade in the wrong order holds events in JetStream instead of losing them.
      stats.newerVersionMessages += msgs.length;
      for (const m of msgs) {
        logger.error(
          { err: metrics.recordError(err), subject: m.subject, streamSeq: m.seq },
          `message ${m.seq} of ${EVENT_STREAM} is of a newer batch format; left in the stream, asked again in ${NEWER_VERSION_RETRY_MS / 1000} s: upgrade this sink`,
        );
        m.nak(NEWER_VERSION_RETRY_MS);
      }
      return;
    }
    // A message we cannot read never will be: stop its redelivery, keep it in the stream for inspection.
    stats.poisonMessages += msgs.length;
    const described = metrics.recordError(err);
    for (const m of msgs) {
      logger.error(
        { err: described, subject: m.subject, streamSeq: m.seq },
        `message ${m.seq} of ${EVENT_STREAM} cannot be decoded; terminated (it stays in the stream)`,
      );
      m.term();
    }
  };

  const readPart = (m: JsMsg, partHeader: string): void => {
    let joined;
    try {
      joined = parts.add(m, partHeader);
    } catch (err) {
      return poison([m], err);
    }
    if (!joined) return;
    let rows;
    try {
      rows = decodeBatch(joined.body).events.map(eventToRow);
    } catch (err) {
      return poison(joined.msgs, err);
    }
    stats.events += rows.length;
    stats.joinedBatches++;
    batcher.addEvents(joined.msgs, rows, joined.body.length);
  };

  return (m) => {
    stats.lagMessages = m.info.pending;
    const partHeader = m.headers?.get(PART_HEADER) ?? '';
    if (partHeader !== '') return readPart(m, partHeader);
    try {
      if (m.subject.startsWith('flashback.baselines.')) {
        batcher.addBaseline(m, baselineToRow(parseBaselineRecord(m.data)));
        stats.baselines++;
      } else {
        const rows = decodeBatch(m.data).events.map(eventToRow);
        batcher.addEvents([m], rows, m.data.length);
        stats.events += rows.length;
      }
    } catch (err) {
      poison([m], err);
    }
  };
}
