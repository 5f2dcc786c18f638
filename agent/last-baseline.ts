import type { NatsConnection } from '@nats-io/transport-node';
import { baselineSubject, type BaselineRecord } from '../core/bus/baseline.js';
import { EVENT_STREAM, natsJetStreamManager, translateNatsError } from '../core/bus/nats.js';

/**
 * The node's last baseline record in JetStream, or undefined when there is none. A restarted agent that resumes an
 * epoch reads it to know that the epoch already has a baseline (stored by the process before it): it is then ready at
 * once instead of waiting for its next baseline. A direct get, like the resume point's (agent/replication/resume.ts):
 * the server's permissions can limit it to this node's subject.
 */
export async function readLastBaseline(nc: NatsConnection, node: string): Promise<BaselineRecord | undefined> {
  const jsm = await natsJetStreamManager(nc);
  const subject = baselineSubject(node);
  let msg;
  try {
    msg = await jsm.direct
      .getMessage(EVENT_STREAM, { last_by_subj: subject })
      .catch((err: unknown) =>
        /no responders|503/i.test(String((err as Error).message))
          ? jsm.streams.getMessage(EVENT_STREAM, { last_by_subj: subject })
          : Promise.reject(err),
      );
  } catch (err) {
    if (/no message found|not found/i.test(String((err as Error).message))) return undefined;
    throw translateNatsError(err, `the last baseline record of ${node} in JetStream`);
  }
  if (!msg) return undefined;
  const record = msg.json<BaselineRecord>();
  return typeof record?.epoch === 'number' && typeof record.seq === 'number' ? record : undefined;
}
