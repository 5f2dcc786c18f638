import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamClient,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { ConfigError, ConnectionError, ErrorCode, FlashbackError } from '../errors.js';
import { checkReplicas, natsJetStreamManager, translateNatsError } from './nats.js';
import type { ClusterRestoreReport, RestoreProgress, RestoreReport } from './restore-report.js';

/**
 * Restore jobs over NATS, shared by the API (which submits and reads them)
 * and the restorer service (which runs them): a work-queue stream hands each
 * job to exactly one restorer, and a KV bucket holds every job's status.
 */

/** Work-queue stream of restore jobs: a message is removed once a restorer acknowledges it. */
export const RESTORE_STREAM = 'FLASHBACK_RESTORES';
/** Subject of restore job messages (`{ id, request }` JSON). */
export const RESTORE_JOB_SUBJECT = 'flashback.restores.jobs';
/** Durable pull consumer every restorer shares. */
export const RESTORER_DURABLE = 'flashback-restorer';
/** KV bucket: job id → {@link RestoreJobStatus} JSON. */
export const JOBS_BUCKET = 'flashback-restore-jobs';
/** KV bucket: instance id (the job id that spawned it) → {@link InstanceRecord} JSON. */
export const INSTANCES_BUCKET = 'flashback-instances';
/**
 * Requests to stop a spawned instance go to `flashback.instances.stop.<host>`
 * (see {@link hostToken}), served by the restorers on the host that holds the
 * instance's files, in one queue group so exactly one of them acts.
 */
export const INSTANCE_STOP_SUBJECT = 'flashback.instances.stop';
/**
 * Requests to cancel a running job (`{ id }`), sent by the API to every restorer; only the one running that job
 * answers, once the job is marked failed with code CANCELLED.
 */
export const RESTORE_CANCEL_SUBJECT = 'flashback.restores.cancel';

const DAY_MS = 86_400_000;

/** What to restore and where: the body of `POST /restores` and of a job message. */
export interface RestoreJobRequest {
  /** The node to restore; exactly one of `node` and `nodes`. */
  node?: string;
  /** Several nodes (a Redis Cluster's masters) restored at one instant `to` into one destination. */
  nodes?: string[];
  /** Include every event up to this instant (text as an operator types it, or epoch s/ms/µs as text). */
  to?: string;
  /** Include events up to this seq (and the rest of its transaction). */
  toSeq?: number;
  /** Include events before this seq (and before its transaction). */
  beforeSeq?: number;
  /** Epoch of toSeq/beforeSeq; default the newest window that holds it. */
  epoch?: number;
  /**
   * Copy into this existing, empty Redis URL. In a stored job it holds no password (`redis://user:***@host:port/db`);
   * the whole URL travels in `sealedTarget`.
   */
  target?: string;
  /**
   * The target URL with its password, sealed with the job key (core/bus/job-secret.ts); set by the API, never taken
   * from a client.
   */
  sealedTarget?: string;
  /** With target: empty it first. */
  flush?: boolean;
  /** Start a new redis-server on the restorer's host (it keeps running; see `flashback-instances`). */
  spawn?: { port?: number };
  /**
   * Write an RDB file of this name into the restorer's export dir (`--export-dir`): a plain file name, no path
   * (a local `flashback restore --rdb` takes any path).
   */
  rdb?: string;
  /** Shift expiries by (restore time − cutoff). */
  keepTtlRelative?: boolean;
  /** Keep only keys matching one of these Redis glob patterns. */
  keys?: string[];
  /** Keep only this logical database. */
  db?: number;
}

export type RestoreJobState = 'queued' | 'running' | 'done' | 'failed';

/** A job's status as stored in {@link JOBS_BUCKET}. */
export interface RestoreJobStatus {
  id: string;
  state: RestoreJobState;
  request: RestoreJobRequest;
  progress: { phase: RestoreProgress['phase'] | 'queued'; events: number; totalEvents: number };
  /** Set when state is 'done' (and only then) for a request naming one `node`. */
  report?: RestoreReport;
  /** Set instead of `report` when state is 'done' for a request naming `nodes`. */
  clusterReport?: ClusterRestoreReport;
  /** Set when state is 'failed'; also while 'queued' again after a retryable failure. */
  error?: { code: string; message: string };
  /**
   * Deliveries to a restorer so far (1 on the first run; +1 per redelivery after a restorer died or handed it back).
   */
  attempts: number;
  /** Restorer running (or last running) the job: `host/pid/random`. */
  restorer?: string;
  /**
   * The generated password of the instance the job spawned, sealed with the job key; the API opens it for the first
   * `GET /restores/{id}` after the job is done and removes it (shown once).
   */
  secret?: string;
  /** Only in an API answer: the spawned instance's password, in the one answer that shows it. */
  password?: string;
  /** ISO 8601. */
  createdAt: string;
  updatedAt: string;
}

/**
 * A redis-server spawned by a restore (`spawn`), listed in {@link INSTANCES_BUCKET}. Only a listing: a restorer
 * stops an instance by its own record of what it started (restorer/instance-records.ts), never by this one.
 */
export interface InstanceRecord {
  /** The id of the job that spawned it. */
  id: string;
  /** Without the password (`redis://:***@127.0.0.1:port/0`). */
  url: string;
  pid: number;
  /** Its data dir on `host`. */
  dir: string;
  node: string;
  cutoff: { epoch: number; seq: number; tsUs: number; time: string };
  /** ISO 8601. */
  createdAt: string;
  /** `os.hostname()` of the restorer that started it. */
  host: string;
}

/** Consumer settings; only restorers pass them (the API never changes the consumer). */
export interface RestoreConsumerOptions {
  /**
   * Time JetStream waits for an ack before giving the job to another
   * restorer, ms. A running job is kept alive with `working()` every third of
   * it, so this bounds how long a dead restorer's job waits, not how long a restore may take.
   * @default 60_000
   */
  ackWaitMs?: number;
  /** Runs of one job before it is marked failed (a restorer dying mid-job counts as one). @default 3 */
  maxAttempts?: number;
}

/** Options of {@link ensureRestoreInfra}. */
export interface RestoreInfraOptions {
  /** Create or update the restorer consumer with these settings. @default leave the consumer alone */
  consumer?: RestoreConsumerOptions;
  /** How long job statuses are kept, ms. @default 7 days */
  jobTtlMs?: number;
  /** JetStream replicas of the job stream and buckets when they are created (existing ones keep theirs). @default 1 */
  replicas?: number;
}

/** Handles on the restore-job infrastructure. */
export interface RestoreInfra {
  js: JetStreamClient;
  jobs: KV;
  instances: KV;
}

/**
 * The consumer's max_deliver: one delivery more than the attempts, so that a
 * live restorer receives a job whose every run died and marks it failed
 * instead of the job staying 'running' forever.
 */
export function maxDeliverFor(maxAttempts: number): number {
  return maxAttempts + 1;
}

/** A host name as one NATS subject token. */
export function hostToken(host: string = os.hostname()): string {
  return host.replace(/[^A-Za-z0-9_-]/g, '_') || '_';
}

/** A new job id (also a valid KV key and subject token). */
export function newJobId(): string {
  return randomUUID();
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

function checkId(id: string, what: string): void {
  // Ids are KV keys: a '.', '*' or '>' would address other keys.
  if (!ID.test(id))
    throw new FlashbackError(
      ErrorCode.NotFound,
      `${what} "${id}" does not exist; ids are letters, digits, '-' and '_'`,
    );
}

/**
 * Creates (idempotently) the job stream, the two KV buckets and, when asked,
 * the restorer consumer; returns handles on them.
 */
export async function ensureRestoreInfra(nc: NatsConnection, o: RestoreInfraOptions = {}): Promise<RestoreInfra> {
  const { consumer, jobTtlMs = 7 * DAY_MS, replicas = 1 } = o;
  checkReplicas(replicas);
  const jsm = await natsJetStreamManager(nc);
  const where = `NATS at ${nc.getServer()}`;
  try {
    try {
      await jsm.streams.info(RESTORE_STREAM);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
      await jsm.streams.add({
        name: RESTORE_STREAM,
        subjects: [RESTORE_JOB_SUBJECT],
        retention: RetentionPolicy.Workqueue,
        storage: StorageType.File,
        num_replicas: replicas,
        duplicate_window: 120 * 1e9,
      });
    }
    if (consumer) {
      const { ackWaitMs = 60_000, maxAttempts = 3 } = consumer;
      if (!(ackWaitMs >= 1_000) || !Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
        throw new ConfigError(
          `restore job ack wait ${ackWaitMs} ms / max attempts ${maxAttempts} is invalid; use ≥ 1000 ms and ≥ 1 attempt`,
        );
      }
      const config: Partial<ConsumerConfig> = {
        durable_name: RESTORER_DURABLE,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: ackWaitMs * 1_000_000,
        max_deliver: maxDeliverFor(maxAttempts),
        // One job per pull; nothing waits in one restorer's buffer while another is idle.
        max_ack_pending: 1_000,
        description: 'flashback restorers: one restore job per message',
      };
      try {
        await jsm.consumers.info(RESTORE_STREAM, RESTORER_DURABLE);
        await jsm.consumers.update(RESTORE_STREAM, RESTORER_DURABLE, {
          ack_wait: config.ack_wait,
          max_deliver: config.max_deliver,
          description: config.description,
        });
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.ConsumerNotFound) throw err;
        await jsm.consumers.add(RESTORE_STREAM, config);
      }
    }
    const kvm = new Kvm(nc);
    const [jobs, instances] = await Promise.all([
      kvm.create(JOBS_BUCKET, { history: 1, storage: StorageType.File, ttl: jobTtlMs, replicas }),
      kvm.create(INSTANCES_BUCKET, { history: 1, storage: StorageType.File, replicas }),
    ]);
    return { js: jetstream(nc), jobs, instances };
  } catch (cause) {
    if (cause instanceof FlashbackError) throw cause;
    throw translateNatsError(
      cause,
      `restore job stream ${RESTORE_STREAM} / buckets ${JOBS_BUCKET}, ${INSTANCES_BUCKET} on ${where}`,
    );
  }
}

const infraByConnection = new WeakMap<NatsConnection, Promise<RestoreInfra>>();

/** {@link ensureRestoreInfra} once per connection (stream and buckets only). */
export function restoreInfra(nc: NatsConnection): Promise<RestoreInfra> {
  let p = infraByConnection.get(nc);
  if (!p) {
    p = ensureRestoreInfra(nc);
    infraByConnection.set(nc, p);
    p.catch(() => infraByConnection.delete(nc));
  }
  return p;
}

const now = () => new Date().toISOString();

/**
 * Queues a restore job: its status ('queued') goes to KV first, then the
 * message to the work queue, so a restorer never runs a job nobody can see.
 * The request is not validated here; the API resolves its cutoff before.
 * @param o.id the job id (the API makes it first to seal the target with it). @default a new one
 * @returns the job id.
 * @throws FlashbackError TOO_LARGE when the job is over the server's max_payload (nothing queued then).
 */
export async function submitRestoreJob(
  nc: NatsConnection,
  request: RestoreJobRequest,
  o: { id?: string } = {},
): Promise<string> {
  const { js, jobs } = await restoreInfra(nc);
  const id = o.id ?? newJobId();
  checkId(id, 'restore job');
  const t = now();
  const status: RestoreJobStatus = {
    id,
    state: 'queued',
    request,
    progress: { phase: 'queued', events: 0, totalEvents: 0 },
    attempts: 0,
    createdAt: t,
    updatedAt: t,
  };
  const message = JSON.stringify({ id, request });
  const statusText = JSON.stringify(status);
  // Over max_payload NATS would drop the connection's publish with an error that reads like an outage.
  const maxPayload = nc.info?.max_payload;
  const bytes = Math.max(Buffer.byteLength(message), Buffer.byteLength(statusText) + 1_024);
  if (maxPayload !== undefined && bytes > maxPayload)
    throw new FlashbackError(
      ErrorCode.TooLarge,
      `the restore job is ${bytes} bytes, over NATS's max_payload of ${maxPayload} bytes; send fewer or shorter keys patterns or nodes`,
    );
  try {
    await jobs.put(id, statusText);
    await js.publish(RESTORE_JOB_SUBJECT, message, { msgID: id });
  } catch (cause) {
    throw translateNatsError(cause, `restore job queue ${RESTORE_STREAM} on NATS at ${nc.getServer()}`);
  }
  return id;
}

/** Writes a job's status (the restorer's side). */
export async function putJob(nc: NatsConnection, status: RestoreJobStatus): Promise<void> {
  const { jobs } = await restoreInfra(nc);
  const { password: _shownOnly, ...stored } = status;
  await jobs.put(status.id, JSON.stringify({ ...stored, updatedAt: now() }));
}

/** A job's status with its KV revision, or undefined when there is none. */
export async function readJobEntry(
  nc: NatsConnection,
  id: string,
): Promise<{ status: RestoreJobStatus; revision: number } | undefined> {
  checkId(id, 'restore job');
  const { jobs } = await restoreInfra(nc);
  const e = await jobs.get(id);
  if (!e || e.operation !== 'PUT') return undefined;
  return { status: e.json<RestoreJobStatus>(), revision: e.revision };
}

/**
 * Writes `status` only if the job's entry is still at `revision` (compare-and-set); false when someone wrote it
 * meanwhile (a cancel, another restorer).
 */
export async function updateJob(nc: NatsConnection, status: RestoreJobStatus, revision: number): Promise<boolean> {
  const { jobs } = await restoreInfra(nc);
  const { password: _shownOnly, ...stored } = status;
  try {
    await jobs.update(status.id, JSON.stringify({ ...stored, updatedAt: now() }), revision);
    return true;
  } catch (err) {
    if (err instanceof Error && /wrong last sequence|key exists/i.test(err.message)) return false;
    throw err;
  }
}

/**
 * Takes a done job's sealed instance password out of KV: the one caller whose compare-and-set removes it gets it;
 * everyone else (and every later call) gets undefined.
 */
export async function takeJobSecret(nc: NatsConnection, id: string): Promise<string | undefined> {
  for (let i = 0; i < 5; i++) {
    const e = await readJobEntry(nc, id);
    if (!e?.status.secret) return undefined;
    const { secret, ...rest } = e.status;
    if (await updateJob(nc, rest, e.revision)) return secret;
  }
  return undefined;
}

/** Reply of a cancel request. */
export type CancelReply = { ok: true } | { ok: false; error: { code: string; message: string } };

/**
 * Cancels a job: a queued one is marked failed (code CANCELLED) at once, and its message is dropped by the
 * restorer that receives it; a running one is stopped by its restorer (asked on {@link RESTORE_CANCEL_SUBJECT}),
 * which marks it failed, stops what it spawned and takes the next job. When no restorer answers for a running
 * job (it died), the job is marked failed here.
 * @throws FlashbackError NOT_FOUND for an unknown id, CONFLICT for a job that is done or failed already.
 */
export async function cancelJob(
  nc: NatsConnection,
  id: string,
  o: { timeoutMs?: number; by?: string } = {},
): Promise<RestoreJobStatus> {
  const { timeoutMs = 15_000, by = 'DELETE /restores/{id}' } = o;
  const cancelled = (s: RestoreJobStatus): RestoreJobStatus => ({
    ...s,
    state: 'failed',
    error: { code: ErrorCode.Cancelled, message: `restore job ${id} was cancelled (${by})` },
  });
  for (let i = 0; i < 10; i++) {
    const e = await readJobEntry(nc, id);
    if (!e)
      throw new FlashbackError(
        ErrorCode.NotFound,
        `restore job "${id}" does not exist (job statuses are kept 7 days); GET /restores lists them`,
      );
    const s = e.status;
    if (isFinal(s.state))
      throw new FlashbackError(
        ErrorCode.Conflict,
        `restore job ${id} is ${s.state === 'done' ? 'done' : 'failed'} already; nothing to cancel${s.state === 'done' && s.request.spawn ? ' (DELETE /instances/{id} stops the instance it spawned)' : ''}`,
      );
    if (s.state === 'queued') {
      if (await updateJob(nc, cancelled(s), e.revision)) return (await readJobEntry(nc, id))?.status ?? cancelled(s);
      continue;
    }
    let reply: CancelReply | undefined;
    try {
      reply = (await nc.request(RESTORE_CANCEL_SUBJECT, JSON.stringify({ id, by }), { timeout: timeoutMs })).json();
    } catch {
      reply = undefined; // no restorer runs it any more (or none answered in time)
    }
    if (reply && !reply.ok) throw new FlashbackError(reply.error.code as ErrorCode, reply.error.message);
    if (reply?.ok) return (await readJobEntry(nc, id))?.status ?? cancelled(s);
    if (await updateJob(nc, cancelled(s), e.revision)) return (await readJobEntry(nc, id))?.status ?? cancelled(s);
  }
  throw new FlashbackError(
    ErrorCode.Busy,
    `restore job ${id} kept changing while it was being cancelled; try DELETE /restores/${id} again`,
    { retryable: true },
  );
}

/** A job's status (without its sealed secret); NOT_FOUND error when there is none. */
export async function getJob(nc: NatsConnection, id: string): Promise<RestoreJobStatus> {
  checkId(id, 'restore job');
  const { jobs } = await restoreInfra(nc);
  const e = await jobs.get(id);
  if (!e || e.operation !== 'PUT')
    throw new FlashbackError(
      ErrorCode.NotFound,
      `restore job "${id}" does not exist (job statuses are kept 7 days); GET /restores lists them`,
    );
  // The sealed password leaves KV only through takeJobSecret.
  const { secret: _sealed, ...status } = e.json<RestoreJobStatus>();
  return status;
}

/** Jobs, newest first. */
export async function listJobs(
  nc: NatsConnection,
  o: { state?: RestoreJobState; limit?: number } = {},
): Promise<RestoreJobStatus[]> {
  const { jobs } = await restoreInfra(nc);
  const out = (await readAll<RestoreJobStatus>(jobs)).map(({ secret: _sealed, ...s }) => s);
  return out
    .filter((j) => o.state === undefined || j.state === o.state)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0))
    .slice(0, o.limit ?? Number.MAX_SAFE_INTEGER);
}

/** Whether a job will change no more. */
export function isFinal(state: RestoreJobState): boolean {
  return state === 'done' || state === 'failed';
}

/**
 * Statuses of a job as they change, from the current one until it is done
 * or failed (then the iterator ends).
 */
export async function* watchJob(nc: NatsConnection, id: string): AsyncGenerator<RestoreJobStatus> {
  checkId(id, 'restore job');
  const { jobs } = await restoreInfra(nc);
  const w = await jobs.watch({ key: id });
  try {
    for await (const e of w) {
      if (e.operation !== 'PUT') continue;
      const s = e.json<RestoreJobStatus>();
      yield s;
      if (isFinal(s.state)) return;
    }
  } finally {
    w.stop();
  }
}

/** Records a spawned instance. */
export async function putInstance(nc: NatsConnection, rec: InstanceRecord): Promise<void> {
  const { instances } = await restoreInfra(nc);
  await instances.put(rec.id, JSON.stringify(rec));
}

/** Spawned instances, newest first. */
export async function listInstances(nc: NatsConnection): Promise<InstanceRecord[]> {
  const { instances } = await restoreInfra(nc);
  return (await readAll<InstanceRecord>(instances)).sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
}

/** One instance; NOT_FOUND error when none has that id. */
export async function getInstance(nc: NatsConnection, id: string): Promise<InstanceRecord> {
  checkId(id, 'instance');
  const { instances } = await restoreInfra(nc);
  const e = await instances.get(id);
  if (!e || e.operation !== 'PUT')
    throw new FlashbackError(
      ErrorCode.NotFound,
      `instance "${id}" does not exist (stopped already?); GET /instances lists them`,
    );
  return e.json<InstanceRecord>();
}

/** Forgets an instance (after it stopped). */
export async function deleteInstance(nc: NatsConnection, id: string): Promise<void> {
  const { instances } = await restoreInfra(nc);
  await instances.delete(id);
}

/** Reply of an instance-stop request. */
export type StopInstanceReply = { ok: true } | { ok: false; error: { code: string; message: string } };

/**
 * Stops a spawned instance and removes its files: asks a restorer on the
 * instance's host (`flashback.instances.stop.<host>`), since only that host
 * holds the process and its dir.
 * @throws FlashbackError NOT_FOUND for an unknown id; ConnectionError when no restorer runs on that host.
 */
export async function stopInstance(
  nc: NatsConnection,
  id: string,
  o: { timeoutMs?: number } = {},
): Promise<InstanceRecord> {
  const { timeoutMs = 30_000 } = o;
  const rec = await getInstance(nc, id);
  let reply: StopInstanceReply;
  try {
    const m = await nc.request(`${INSTANCE_STOP_SUBJECT}.${hostToken(rec.host)}`, JSON.stringify({ id }), {
      timeout: timeoutMs,
    });
    reply = m.json<StopInstanceReply>();
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    if (/no responders/i.test(msg) || (cause as { code?: unknown })?.code === '503') {
      throw new ConnectionError(
        `no restorer runs on host "${rec.host}" to stop instance "${id}" (${rec.url}, pid ${rec.pid}); start \`flashback restorer\` there, or stop it there with: redis-cli -u ${rec.url} shutdown nosave`,
        { cause },
      );
    }
    throw translateNatsError(cause, `restorer on host "${rec.host}"`);
  }
  if (!reply.ok) throw new FlashbackError(reply.error.code as ErrorCode, reply.error.message);
  return rec;
}

async function readAll<T>(kv: KV): Promise<T[]> {
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  const out: T[] = [];
  for (const k of keys) {
    const e = await kv.get(k);
    if (e && e.operation === 'PUT') out.push(e.json<T>());
  }
  return out;
}
