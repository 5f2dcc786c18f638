import type { NatsConnection } from '@nats-io/transport-node';
import { eventSubject } from '../../core/bus/event.js';
import { EVENT_STREAM, natsJetStreamManager, translateNatsError } from '../../core/bus/nats.js';
import { DURABLE_HEADER, POSITION_HEADER } from '../publisher.js';
import type { ReplicationPosition } from './replica-link.js';

/** Where the node's history in JetStream ends, when it ends in replication mode. */
export interface ResumePoint {
  epoch: number;
  /** Last seq published. */
  seq: number;
  /** Time of that event, µs. */
  tsUs: number;
  /** The master's stream right after it. */
  position: ReplicationPosition;
  /**
   * Why this epoch cannot go on although its stream could: messages after the durable position were stored, and they
   * hold events the agent added (MONITOR attribution) that a publication again would not (other seqs, other
   * content). The agent then starts a new epoch.
   */
  cannotContinue?: string;
}

/**
 * Where to continue the node's last epoch: the durable position its last stored message carries (DURABLE_HEADER:
 * every event up to it was acknowledged when that message was sent), else that message's own position (messages of
 * older agents, or sent before anything was acknowledged); undefined when there is no history, the last epoch was
 * captured by MONITOR, or it ended (`end`). Batches end only where a stream entry ends (agent/publisher.ts), so
 * `PSYNC <replid> <offset+1>` continues exactly after the event it names. Events after it that were stored already
 * are published again with the same seqs and content (the stream from that offset is the same): the sink's table
 * keeps one row per seq. A message stored after a later one (a NATS leader change), or a later one stored while an
 * earlier one failed before a kill -9, then leaves no hole.
 */
export async function readResumePoint(nc: NatsConnection, node: string): Promise<ResumePoint | undefined> {
  const jsm = await natsJetStreamManager(nc);
  let msg;
  try {
    // A direct get names the subject in the request's own subject, which a server's permissions can limit to this
    // node (docs/security.md); an older stream without allow_direct falls back to the stream API.
    msg = await jsm.direct
      .getMessage(EVENT_STREAM, { last_by_subj: eventSubject(node) })
      .catch((err: unknown) =>
        /no responders|503/i.test(String((err as Error).message))
          ? jsm.streams.getMessage(EVENT_STREAM, { last_by_subj: eventSubject(node) })
          : Promise.reject(err),
      );
  } catch (err) {
    if (/no message found|not found/i.test(String((err as Error).message))) return undefined;
    throw translateNatsError(err, `the last event of ${node} in JetStream`);
  }
  const own = parsePosition(msg?.header?.get(POSITION_HEADER));
  if (!own) return undefined; // absent, malformed, or the epoch ended there
  const durable = parsePosition(msg?.header?.get(DURABLE_HEADER));
  if (!durable) return own;
  if (durable.seq < own.seq && (own.position.inserted ?? 0) !== (durable.position.inserted ?? 0))
    durable.cannotContinue = `events after seq ${durable.seq} were stored with ${(own.position.inserted ?? 0) - (durable.position.inserted ?? 0)} the agent added from MONITOR (consumers, audit rows), which publishing that stretch again cannot repeat`;
  return durable;
}

/**
 * `<epoch> <seq> <replid> <offset> <tsUs> <db> [i<n>] [end]` → a resume point; undefined when absent, malformed, or the epoch
 * ended there (`end`: its stream could not go on, so a restart starts a new epoch).
 */
export function parsePosition(value: string | undefined): ResumePoint | undefined {
  const m = /^(\d+) (\d+) ([0-9a-f]{40}) (\d+) (\d+) (\d+)(?: i(\d+))?$/.exec(value ?? '');
  if (!m) return undefined;
  const position: ReplicationPosition = { replid: m[3]!, offset: Number(m[4]), db: Number(m[6]) };
  if (m[7] !== undefined) position.inserted = Number(m[7]);
  return { epoch: Number(m[1]), seq: Number(m[2]), position, tsUs: Number(m[5]) };
}
