import { setTimeout as delay } from 'node:timers/promises';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  type Consumer,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream';
import {
  ensureEventStream,
  EVENT_STREAM,
  natsJetStreamManager,
  translateNatsError,
  type NatsConnection,
} from '../core/bus/nats.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { SinkMetrics } from './metrics.js';

/** Settings of the sink's durable consumer on the event stream. */
export interface SinkConsumerConfig {
  /** Durable consumer name; one per sink group. */
  durable: string;
  /** Time JetStream waits for an ack before redelivering, ms. */
  ackWaitMs: number;
  /** Messages one pull asks for; the consumer allows four pulls' worth (at least 1 000) unacknowledged. */
  maxPullMessages: number;
}

/** Creates the durable consumer on the event stream, or brings an existing one to `config`. */
export async function ensureSinkConsumer(nc: NatsConnection, config: SinkConsumerConfig): Promise<void> {
  const { durable, ackWaitMs, maxPullMessages } = config;
  const jsm = await natsJetStreamManager(nc);
  const settings = {
    ack_wait: ackWaitMs * 1_000_000,
    max_ack_pending: Math.max(1_000, maxPullMessages * 4),
    description: 'flashback sink: JetStream → ClickHouse',
  };
  try {
    try {
      await jsm.consumers.info(EVENT_STREAM, durable);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.ConsumerNotFound) throw err;
      await jsm.consumers.add(EVENT_STREAM, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ...settings,
      });
      return;
    }
    await jsm.consumers.update(EVENT_STREAM, durable, settings);
  } catch (cause) {
    throw translateNatsError(cause, `consumer ${durable} of stream ${EVENT_STREAM}`);
  }
}

/** Options of {@link startConsumer}. */
export interface ConsumerOptions extends SinkConsumerConfig {
  nc: NatsConnection;
  /** How long one pull waits for messages, ms. */
  pullExpiresMs: number;
  /** Max age of the event stream, ms, should it have to be created again. */
  retentionMs: number;
  /** First delay after a failed pull, ms; doubles up to `maxRetryDelayMs`. */
  retryDelayMs: number;
  /** Longest delay between pull retries, ms. */
  maxRetryDelayMs: number;
  metrics: SinkMetrics;
  logger: Logger;
  /** Aborted when the sink starts closing: no pull starts after it. */
  signal: AbortSignal;
  /** Called for each message in order; a promise returned holds the next message back until it settles. */
  onMessage(m: JsMsg): Promise<void> | undefined;
}

/** The sink's pull loop on the event stream. */
export interface SinkConsumer {
  /** Asks the server for the messages not yet delivered (`num_pending`) into `lagMessages`; errors are ignored. */
  refreshLag(): void;
  /** Resolves once the loop, stopped by the signal, has handed every message of the pull in hand to `onMessage`. */
  close(): Promise<void>;
}

/** Starts pulling from the durable consumer until the signal aborts; failed pulls are retried with backoff. */
export function startConsumer(o: ConsumerOptions): SinkConsumer {
  const { nc, durable, pullExpiresMs, maxPullMessages, retentionMs, retryDelayMs, maxRetryDelayMs } = o;
  const { metrics, logger, signal, onMessage } = o;
  const js = jetstream(nc);

  const watchStatus = async (pulled: ConsumerMessages): Promise<void> => {
    for await (const st of pulled.status()) {
      if (st.type === 'heartbeats_missed') {
        logger.warn({ count: st.count }, 'JetStream heartbeats missed; pulling again');
      } else if (st.type === 'consumer_not_found' || st.type === 'consumer_deleted' || st.type === 'stream_not_found') {
        logger.warn({ status: st.type, durable }, 'sink consumer or stream is gone; it is created again');
      }
    }
  };

  const recreate = (): Promise<void> =>
    ensureEventStream(nc, { maxAgeMs: retentionMs })
      .then(() => ensureSinkConsumer(nc, o))
      .catch((e: unknown) => {
        logger.error({ err: describeError(e) }, 'could not create the event stream or the sink consumer');
      });

  // fetch, not consume: a consume() stopped mid-pull drops the messages still in flight, and JetStream
  // hands them out again only after ack_wait; a fetch ends by itself within pullExpiresMs, so close()
  // waits for it and finishes every message it brought.
  const loop = async (): Promise<void> => {
    let consumer: Consumer | undefined;
    for (let attempt = 0; !signal.aborted;) {
      try {
        consumer ??= await js.consumers.get(EVENT_STREAM, durable);
        const pulled = await consumer.fetch({ max_messages: maxPullMessages, expires: pullExpiresMs });
        void watchStatus(pulled).catch(() => {});
        for await (const m of pulled) {
          const held = onMessage(m);
          if (held) await held;
        }
        attempt = 0;
      } catch (err) {
        consumer = undefined;
        if (signal.aborted) break;
        const wait = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** Math.min(attempt++, 16));
        logger.error({ err: metrics.recordError(err), retryInMs: wait }, 'pulling from JetStream failed; retrying');
        if (/consumer not found|stream not found|consumer deleted/i.test(String((err as Error)?.message))) {
          await recreate();
        }
        await delay(wait);
      }
    }
  };
  const running = loop();

  return {
    refreshLag() {
      js.consumers
        .get(EVENT_STREAM, durable)
        .then((c) => c.info(true))
        .then((info) => {
          metrics.stats.lagMessages = info.num_pending;
        })
        .catch(() => {});
    },
    close: () => running,
  };
}
