import { BASELINE_BUCKET, EVENT_STREAM, inboxPrefixOf } from './nats.js';
import { subjectToken } from './event.js';
import {
  INSTANCE_STOP_SUBJECT,
  INSTANCES_BUCKET,
  JOBS_BUCKET,
  RESTORE_CANCEL_SUBJECT,
  RESTORE_JOB_SUBJECT,
  RESTORE_STREAM,
  RESTORER_DURABLE,
} from './restore-jobs.js';

/**
 * Who connects to NATS, and what each may do (docs/security.md has the table). A server with these permissions
 * enforces the trust boundaries of the design: an agent publishes its own node's events and baselines and reads
 * nothing of anyone's; the sink reads events; the restorer owns jobs and instances; the API queues jobs.
 */
export type NatsRole =
  { role: 'admin' } | { role: 'sink' } | { role: 'restorer' } | { role: 'api' } | { role: 'agent'; node: string };

/** Subject permissions of one NATS user, as nats-server's config spells them. */
export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /** May answer requests sent to it (the restorer's instance-stop service). */
  allow_responses?: boolean;
}

/** One user of the generated server config. */
export interface NatsUser {
  user: string;
  password: string;
  permissions: NatsPermissions;
}

const API = '$JS.API';
const OBJ_STREAM = `OBJ_${BASELINE_BUCKET}`;
const kvStream = (bucket: string) => `KV_${bucket}`;

/** The user name of a role: `flashback-sink`, `flashback-agent-<node token>`. */
export function natsUserName(r: NatsRole): string {
  return r.role === 'agent' ? `flashback-agent-${subjectToken(r.node)}` : `flashback-${r.role}`;
}

/** Reading a stream: its info, stored messages (stream and direct API), and ordered consumers (KV keys, watch, obj get). */
function readStream(stream: string): string[] {
  return [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.STREAM.MSG.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}.>`,
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ];
}

/** A durable pull consumer a role owns: create/update it, pull, ack. */
function pullConsumer(stream: string, durable: string): string[] {
  return [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.CONSUMER.INFO.${stream}.${durable}`,
    `${API}.CONSUMER.CREATE.${stream}.${durable}`,
    `${API}.CONSUMER.CREATE.${stream}.${durable}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.${durable}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${durable}`,
    `$JS.ACK.${stream}.${durable}.>`,
  ];
}

/** What a role may publish and subscribe to. Every role may also use `$JS.API.INFO` and its own reply subjects. */
export function natsPermissions(r: NatsRole): NatsPermissions {
  const inbox = `${inboxPrefixOf(natsUserName(r))}.>`;
  const common = [`${API}.INFO`];
  switch (r.role) {
    case 'admin':
      return { publish: { allow: ['>'] }, subscribe: { allow: ['>'] }, allow_responses: true };
    case 'agent': {
      const t = subjectToken(r.node);
      return {
        publish: {
          allow: [
            ...common,
            `flashback.events.${t}`,
            `flashback.baselines.${t}`,
            `${API}.STREAM.INFO.${EVENT_STREAM}`,
            // Its own last message only (resume after a restart): the subject is part of the request's subject.
            `${API}.DIRECT.GET.${EVENT_STREAM}.flashback.events.${t}`,
            // Its own last baseline record (a resumed epoch is restorable at once: agent/last-baseline.ts).
            `${API}.DIRECT.GET.${EVENT_STREAM}.flashback.baselines.${t}`,
            // Writes of baseline objects, never reads (core/bus/baseline-writer.ts).
            `${API}.STREAM.INFO.${OBJ_STREAM}`,
            `$O.${BASELINE_BUCKET}.C.>`,
            `$O.${BASELINE_BUCKET}.M.>`,
          ],
        },
        subscribe: { allow: [inbox] },
      };
    }
    case 'sink':
      return {
        publish: {
          allow: [
            ...common,
            ...pullConsumer(EVENT_STREAM, '*'),
            // Retention deletes expired baseline objects.
            ...readStream(OBJ_STREAM),
            `${API}.STREAM.PURGE.${OBJ_STREAM}`,
            `$O.${BASELINE_BUCKET}.M.>`,
          ],
        },
        subscribe: { allow: [inbox] },
      };
    case 'restorer':
      return {
        publish: {
          allow: [
            ...common,
            ...pullConsumer(RESTORE_STREAM, RESTORER_DURABLE),
            ...readStream(kvStream(JOBS_BUCKET)),
            `$KV.${JOBS_BUCKET}.>`,
            ...readStream(kvStream(INSTANCES_BUCKET)),
            `$KV.${INSTANCES_BUCKET}.>`,
            ...readStream(OBJ_STREAM),
          ],
        },
        // Cancel requests of DELETE /restores/{id}: the restorer running the job answers.
        subscribe: { allow: [inbox, `${INSTANCE_STOP_SUBJECT}.>`, RESTORE_CANCEL_SUBJECT] },
        allow_responses: true,
      };
    case 'api':
      return {
        publish: {
          allow: [
            ...common,
            `${API}.STREAM.INFO.${RESTORE_STREAM}`,
            RESTORE_JOB_SUBJECT,
            ...readStream(kvStream(JOBS_BUCKET)),
            // A new job's 'queued' status is written by the API before the job message.
            `$KV.${JOBS_BUCKET}.>`,
            // Instances: read, and ask the restorer that owns one to stop it. Never write a record.
            ...readStream(kvStream(INSTANCES_BUCKET)),
            `${INSTANCE_STOP_SUBJECT}.>`,
            // DELETE /restores/{id} of a running job asks its restorer to stop it.
            RESTORE_CANCEL_SUBJECT,
          ],
        },
        subscribe: { allow: [inbox] },
      };
  }
}

/**
 * The `authorization` block of a nats-server config for these users (nats-server reads JSON as its config syntax).
 * Holds passwords: write it with mode 600.
 */
export function natsAuthorizationConfig(users: readonly NatsUser[]): string {
  const body = { authorization: { users: users.map((u) => ({ ...u })) } };
  return `# Generated by flashback up: one user per service, per-service subject permissions (docs/security.md).\n${JSON.stringify(body, null, 2)}\n`;
}
