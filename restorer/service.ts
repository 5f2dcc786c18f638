import { readFileSync } from 'node:fs';
import { chmod, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { jetstream, type Consumer, type JsMsg } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { openClickHouse, type ClickHouseAuth, type Store } from '../core/store/clickhouse.js';
import { ConfigError, describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import type { Registry } from 'prom-client';
import { startHealthServer } from '../core/health-server.js';
import { restorerMetrics } from './metrics.js';
import { verificationMetrics } from '../core/metrics/verification.js';
import { startVerifier } from './verifier.js';
import { silentLogger, type Logger } from '../core/log.js';
import { connectNats, ensureBaselineStore, type NatsAuthOptions, type NatsConnection } from '../core/bus/nats.js';
import {
  deleteInstance,
  ensureRestoreInfra,
  getJob,
  hostToken,
  INSTANCE_STOP_SUBJECT,
  isFinal,
  putInstance,
  putJob,
  readJobEntry,
  RESTORE_CANCEL_SUBJECT,
  RESTORE_STREAM,
  RESTORER_DURABLE,
  updateJob,
  type CancelReply,
  type InstanceRecord,
  type RestoreJobRequest,
  type RestoreJobStatus,
  type StopInstanceReply,
} from '../core/bus/restore-jobs.js';
import { loadJobKey, seal, unseal, type JobKey } from '../core/bus/job-secret.js';
import { exportPath } from '../core/export-dir.js';
import { ensurePrivateDir } from '../core/private-dir.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { assertTargetAllowed, parseTargetAllow, type TargetAllowList } from '../core/redis/target-allow.js';
import {
  adoptInstance,
  newInstancePassword,
  runningInstances,
  runsRestoreServer,
  shownInstanceUrl,
  stopOwnInstance,
} from './instance-records.js';
import type { RestoreProgress } from '../core/bus/restore-report.js';
import { isPidAlive, stopPid } from '../core/servers/server-process.js';
import { clickHouseEventStore } from '../core/store/event-store.js';
import { isClusterReport, runRestoreRequest } from './cluster-restore.js';
import { shownUrl } from './key-target.js';
import type { RestoreDeps } from './restore.js';

/** Options of {@link startRestorer}. */
export interface RestorerOptions {
  /** NATS server(s) with JetStream. */
  natsUrl: string;
  /** ClickHouse HTTP URL holding the history. */
  clickhouseUrl: string;
  /** NATS credentials and TLS (docs/security.md). @default none */
  natsAuth?: NatsAuthOptions;
  /** ClickHouse user and password; override any in the URL. @default the URL's */
  clickhouseAuth?: ClickHouseAuth;
  /**
   * Where spawned instances keep their files (one dir each); made mode 700, refused when it is a symlink or another
   * user's. @default <tmp>/flashback-instances
   */
  instancesDir?: string;
  /** Where jobs' `rdb` files go (a plain name each); made mode 700 on first use. @default ./.flashback/exports */
  exportDir?: string;
  /** Hosts a job's target may be (core/redis/target-allow.ts), checked again here before connecting. @default loopback */
  targetAllow?: string | readonly string[] | TargetAllowList;
  /**
   * Key that opens jobs' sealed target URLs and seals spawned instances' passwords (core/bus/job-secret.ts); the API
   * must hold the same. @default FLASHBACK_JOB_KEY_FILE, else none: a job with a sealed target fails, and a spawned
   * instance's password stays in its record on this host
   */
  jobKey?: JobKey;
  /** Time one job may run before it is failed (code TIMEOUT) and the next one runs, ms. @default 1_800_000 */
  jobTimeoutMs?: number;
  /** Restored instances this restorer keeps running at most; a spawn job beyond fails (code BUSY). @default 10 */
  maxInstances?: number;
  /** @default silent */
  logger?: Logger;
  /** Serve GET /health and /metrics on this port. @default none */
  healthPort?: number;
  /** Address the health port binds to (`0.0.0.0` for a Prometheus on another machine). @default '127.0.0.1' */
  healthHost?: string;
  /** Consumer ack wait, ms; the job in hand is kept alive with `working()` every third of it. @default 60_000 */
  ackWaitMs?: number;
  /** Runs of one job before it is marked failed. @default 3 */
  maxAttempts?: number;
  /** Progress reaches the job's KV entry at most this often (and on every phase change), ms. @default 500 */
  progressIntervalMs?: number;
  /** How long close() lets the job in hand finish before handing it back to the queue, ms. @default 30_000 */
  closeTimeoutMs?: number;
  /** How long one pull waits for a job before asking again, ms (close() may wait this long). @default 2_000 */
  pullExpiresMs?: number;
  /**
   * Background restore check (restorer/verifier.ts): this often, stretches between two baselines are restored and
   * compared with the source's digest, one at a time, only while no job runs; 0 = off. @default 0
   */
  verifyIntervalMs?: number;
}

/** Counters of one restorer. */
export interface RestorerStats {
  /** `host/pid/random`: the name in job statuses. */
  id: string;
  jobsStarted: number;
  jobsDone: number;
  jobsFailed: number;
  /** Jobs handed back to the queue (retryable failure, or close() while running). */
  jobsRequeued: number;
  /** Id of the job in hand. */
  running?: string;
  instancesStopped: number;
  /** Seconds of the last successful restore. */
  lastJobSeconds: number;
  /** Sum of seconds of successful restores. */
  jobSecondsTotal: number;
}

/** A running restorer service. */
export interface Restorer {
  stats(): RestorerStats;
  /** The restorer's Prometheus metrics (restorer/metrics.ts). */
  metrics(): Registry;
  /** Port of the health server, when one was asked for. */
  healthPort?: number;
  /**
   * Stops taking jobs; lets the job in hand finish (up to closeTimeoutMs) or hands it back; closes connections.
   * Idempotent.
   */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface JobMessage {
  id: string;
  request: RestoreJobRequest;
}

/**
 * Starts a restorer: pulls restore jobs from the FLASHBACK_RESTORES work queue
 * one at a time (several restorers share the durable consumer, so each job
 * runs on one of them), runs each with {@link restore}, keeps the job's KV
 * status current, records spawned instances, and serves instance-stop
 * requests for its host.
 *
 * A job is acknowledged only after its final status (report or error) is in
 * KV. A restorer that dies mid-job leaves the message unacknowledged: after
 * the ack wait another restorer gets it (attempts + 1); a delivery beyond
 * maxAttempts is marked failed, so no job stays 'running' forever and none
 * is 'done' without a report.
 */
export async function startRestorer(o: RestorerOptions): Promise<Restorer> {
  const {
    natsUrl,
    clickhouseUrl,
    instancesDir = path.join(os.tmpdir(), 'flashback-instances'),
    logger = silentLogger,
    healthPort,
    healthHost,
    ackWaitMs = 60_000,
    maxAttempts = 3,
    progressIntervalMs = 500,
    closeTimeoutMs = 30_000,
    pullExpiresMs = 2_000,
    exportDir = path.resolve('.flashback', 'exports'),
    jobTimeoutMs = 1_800_000,
    maxInstances = 10,
  } = o;
  if (!(jobTimeoutMs >= 1_000)) throw new ConfigError(`job timeout ${jobTimeoutMs} ms is too short; use at least 1s`);
  if (!Number.isSafeInteger(maxInstances) || maxInstances < 0)
    throw new ConfigError(`max instances ${maxInstances} is not a whole number ≥ 0`);
  const targetAllow =
    typeof o.targetAllow === 'object' && 'allows' in o.targetAllow ? o.targetAllow : parseTargetAllow(o.targetAllow);
  const jobKey = loadJobKey({ key: o.jobKey });
  const instancesRoot = await ensurePrivateDir(instancesDir, 'instances dir');
  // JetStream refuses a pull that expires in under a second; it would be retried forever.
  if (!(pullExpiresMs >= 1_000))
    throw new ConfigError(`pullExpiresMs must be at least 1000 (JetStream's minimum), got ${pullExpiresMs}`);
  const id = `${os.hostname()}/${process.pid}/${Math.random().toString(36).slice(2, 8)}`;
  const store = await openClickHouse(clickhouseUrl, { ...o.clickhouseAuth });
  let nc: NatsConnection;
  try {
    nc = await connectNats({ url: natsUrl, name: `flashback-restorer ${id}`, logger, auth: o.natsAuth });
  } catch (err) {
    await store.close();
    throw err;
  }
  let deps: RestoreDeps;
  try {
    await ensureRestoreInfra(nc, { consumer: { ackWaitMs, maxAttempts } });
    deps = {
      events: clickHouseEventStore(store, store.client),
      objects: await ensureBaselineStore(nc),
      instancesDir: instancesRoot,
      logger,
    };
  } catch (err) {
    await nc.close();
    await store.close();
    throw err;
  }
  const r = new RestorerService({
    id,
    nc,
    store,
    deps,
    logger,
    instancesDir: instancesRoot,
    exportDir: path.resolve(exportDir),
    targetAllow,
    jobKey,
    jobTimeoutMs,
    maxInstances,
    ackWaitMs,
    maxAttempts,
    progressIntervalMs,
    closeTimeoutMs,
    pullExpiresMs,
  });
  r.start();
  // Served even with the check off: alert rules over them then see no series rather than an unknown metric.
  const verifyMetrics = verificationMetrics(r.metrics());
  if ((o.verifyIntervalMs ?? 0) > 0) {
    try {
      const verifier = await startVerifier({
        deps,
        client: store.client,
        metrics: verifyMetrics,
        intervalMs: o.verifyIntervalMs!,
        isBusy: () => r.stats().running !== undefined,
        logger,
      });
      r.onClose(() => verifier.close());
    } catch (err) {
      await r.close();
      throw err;
    }
  }
  if (healthPort !== undefined) {
    try {
      const hs = await startHealthServer(
        healthPort,
        { health: () => r.health(), metrics: () => [r.metrics()] },
        healthHost,
      );
      r.onClose(() => hs.close());
      r.healthPort = hs.port;
      logger.info({ port: hs.port }, 'health endpoint: GET /health, /metrics');
    } catch (err) {
      await r.close();
      throw err;
    }
  }
  logger.info(
    {
      id,
      instancesDir: instancesRoot,
      exportDir,
      targetAllow: targetAllow.entries,
      jobKey: jobKey !== undefined,
      jobTimeoutMs,
      maxInstances,
      ackWaitMs,
      maxAttempts,
    },
    'restorer taking jobs',
  );
  return r;
}

interface ServiceDeps {
  id: string;
  nc: NatsConnection;
  store: Store;
  deps: RestoreDeps;
  logger: Logger;
  instancesDir: string;
  exportDir: string;
  targetAllow: TargetAllowList;
  jobKey: JobKey | undefined;
  jobTimeoutMs: number;
  maxInstances: number;
  ackWaitMs: number;
  maxAttempts: number;
  progressIntervalMs: number;
  closeTimeoutMs: number;
  pullExpiresMs: number;
}

/** The job in hand. */
interface Current {
  id: string;
  msg: JsMsg;
  done: Promise<void>;
  /**
   * Set when the job left this restorer's hands while its restore still runs (close() gave it back, a cancel, its
   * deadline): whatever the restore does next must not touch the job's status.
   */
  handedBack: boolean;
  /** Ends the job now (cancel, deadline); set while its restore runs. */
  stop?: (err: FlashbackError) => void;
  /** A cancel that came before the restore started. */
  cancelled?: FlashbackError;
  /** Answers the cancel request once the job is marked failed. */
  onStopped?: () => void;
}

/** A job's request as the restore runs it, and the secrets to keep out of what is stored and logged. */
interface PreparedJob {
  request: RestoreJobRequest;
  secrets: string[];
}

class RestorerService implements Restorer {
  private readonly s: RestorerStats;
  private closing = false;
  private closed: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private current: Current | undefined;
  private stopSub: Subscription | undefined;
  private cancelSub: Subscription | undefined;
  private readonly closers: (() => Promise<void>)[] = [];
  private readonly m = restorerMetrics(() => this.stats());
  healthPort?: number;

  constructor(private readonly d: ServiceDeps) {
    this.s = {
      id: d.id,
      jobsStarted: 0,
      jobsDone: 0,
      jobsFailed: 0,
      jobsRequeued: 0,
      instancesStopped: 0,
      lastJobSeconds: 0,
      jobSecondsTotal: 0,
    };
  }

  start(): void {
    this.stopSub = this.d.nc.subscribe(`${INSTANCE_STOP_SUBJECT}.${hostToken()}`, {
      queue: RESTORER_DURABLE,
      callback: (err, m) => {
        if (err) return;
        void this.serveStop(m.json<{ id: string }>()?.id).then(
          (reply) => m.respond(JSON.stringify(reply)),
          () => undefined,
        );
      },
    });
    this.cancelSub = this.d.nc.subscribe(RESTORE_CANCEL_SUBJECT, {
      callback: (err, m) => {
        if (err) return;
        let req: { id?: unknown; by?: unknown } | undefined;
        try {
          req = m.json();
        } catch {
          return;
        }
        const cur = this.current;
        // Only the restorer running the job answers; the others stay silent.
        if (!cur || typeof req?.id !== 'string' || cur.id !== req.id) return;
        const by = typeof req.by === 'string' ? req.by.slice(0, 100) : 'a cancel request';
        const err2 = new FlashbackError(ErrorCode.Cancelled, `restore job ${cur.id} was cancelled (${by})`);
        cur.onStopped = () => m.respond(JSON.stringify({ ok: true } satisfies CancelReply));
        if (cur.stop) cur.stop(err2);
        else cur.cancelled = err2;
      },
    });
    this.loop = this.pullLoop();
  }

  onClose(f: () => Promise<void>): void {
    this.closers.push(f);
  }

  health(): { ok: boolean; running?: string } {
    return { ok: !this.closing && !this.d.nc.isClosed(), running: this.current?.id };
  }

  stats(): RestorerStats {
    return { ...this.s, running: this.current?.id };
  }

  metrics(): Registry {
    return this.m.registry;
  }

  private async pullLoop(): Promise<void> {
    const { nc, logger, pullExpiresMs } = this.d;
    const js = jetstream(nc);
    let consumer: Consumer | undefined;
    let failures = 0;
    while (!this.closing) {
      let m: JsMsg | null;
      try {
        consumer ??= await js.consumers.get(RESTORE_STREAM, RESTORER_DURABLE);
        m = await consumer.next({ expires: pullExpiresMs });
        failures = 0;
      } catch (err) {
        if (this.closing) break;
        consumer = undefined;
        const wait = Math.min(10_000, 250 * 2 ** Math.min(failures++, 6));
        logger.error({ err: describeError(err), retryInMs: wait }, 'pulling restore jobs failed; retrying');
        await delay(wait);
        continue;
      }
      if (!m) continue;
      if (this.closing) {
        m.nak();
        break;
      }
      const current: Current = { id: '', msg: m, handedBack: false, done: Promise.resolve() };
      current.done = this.runJob(current).catch((err: unknown) => {
        logger.error(
          { err: describeError(err) },
          'restore job handling failed; the message is redelivered after the ack wait',
        );
      });
      this.current = current;
      await current.done;
      this.current = undefined;
    }
  }

  private async runJob(cur: Current): Promise<void> {
    const { nc, logger, maxAttempts, ackWaitMs, progressIntervalMs, jobTimeoutMs } = this.d;
    const m = cur.msg;
    let job: JobMessage;
    try {
      job = m.json<JobMessage>();
      if (typeof job?.id !== 'string' || (typeof job.request?.node !== 'string' && !Array.isArray(job.request?.nodes)))
        throw new Error('no id, or neither request.node nor request.nodes');
    } catch (err) {
      logger.error({ err: describeError(err), seq: m.seq }, 'undecodable restore job message; dropped');
      m.term('undecodable');
      return;
    }
    cur.id = job.id;
    const attempt = m.info.deliveryCount;
    const t = new Date().toISOString();
    const entry = await readJobEntry(nc, job.id).catch((err: unknown) => {
      if (err instanceof FlashbackError && err.code === ErrorCode.NotFound) return undefined;
      throw err;
    });
    let status: RestoreJobStatus = entry?.status ?? {
      id: job.id,
      state: 'queued',
      request: job.request,
      progress: { phase: 'queued', events: 0, totalEvents: 0 },
      attempts: 0,
      createdAt: t,
      updatedAt: t,
    };
    if (isFinal(status.state)) {
      // Its final status is stored (done, failed, or cancelled while queued); only the ack was lost.
      m.ack();
      return;
    }
    if (attempt > maxAttempts) {
      status = {
        ...status,
        state: 'failed',
        attempts: attempt - 1,
        error: {
          code: ErrorCode.Internal,
          message: `the restorer running restore job ${job.id} stopped before finishing, ${maxAttempts} time(s) (last: ${status.restorer ?? 'unknown'}); check that restorer's log, then submit the job again`,
        },
      };
      await putJob(nc, status);
      this.s.jobsFailed++;
      logger.error({ job: job.id, attempts: maxAttempts }, 'restore job failed: every attempt died');
      await m.ackAck();
      return;
    }

    status = {
      ...status,
      state: 'running',
      attempts: attempt,
      restorer: this.d.id,
      error: undefined,
      progress: { phase: 'resolve', events: 0, totalEvents: 0 },
    };
    // Compare-and-set: a cancel written since we read the job wins, and the job does not run.
    if (!entry || !(await updateJob(nc, status, entry.revision))) {
      const now = await readJobEntry(nc, job.id);
      if (now && isFinal(now.status.state)) {
        m.ack();
        logger.info({ job: job.id }, 'restore job cancelled before it started');
        cur.onStopped?.();
        return;
      }
      await putJob(nc, status);
    }
    this.s.jobsStarted++;
    // KV writes go out in order: a throttled progress write never lands after the final status.
    let writes: Promise<void> = Promise.resolve();
    const write = (s: RestoreJobStatus) => {
      writes = writes.then(
        () => (cur.handedBack ? undefined : putJob(nc, s)),
        () => (cur.handedBack ? undefined : putJob(nc, s)),
      );
      return writes;
    };
    // Stored jobs hold no target password (the API seals it); a forged or older job's is hidden here all the same.
    const shownRequest =
      job.request.target === undefined ? job.request : { ...job.request, target: shownUrl(job.request.target) };
    const { sealedTarget: _sealed, ...loggedRequest } = shownRequest;
    logger.info({ job: job.id, attempt, request: loggedRequest }, 'restore job started');
    const keepAlive = setInterval(
      () => {
        if (!cur.handedBack) m.working();
      },
      Math.max(250, Math.floor(ackWaitMs / 3)),
    );
    let lastWrite = Date.now();
    let lastPhase = status.progress.phase;
    const onProgress = (p: RestoreProgress) => {
      status = { ...status, progress: { ...p } };
      const now = Date.now();
      if (p.phase !== lastPhase || now - lastWrite >= progressIntervalMs) {
        lastPhase = p.phase;
        lastWrite = now;
        void write(status).catch((err: unknown) =>
          logger.warn({ err: describeError(err), job: job.id }, 'progress not written'),
        );
      }
    };
    let secrets: string[] = [];
    let stoppedBy: FlashbackError | undefined;
    let deadline: NodeJS.Timeout | undefined;
    try {
      const prepared = await this.prepare(job);
      secrets = prepared.secrets;
      if (cur.cancelled) throw (stoppedBy = cur.cancelled);
      const run = runRestoreRequest(this.d.deps, prepared.request, onProgress);
      // The deadline and a cancel end the job here; the restore itself is left to finish (its target connections
      // time out) and whatever it made is removed then.
      const stopped = new Promise<never>((_, reject) => {
        cur.stop = (err) => reject((stoppedBy ??= err));
        deadline = setTimeout(
          () =>
            cur.stop?.(
              new FlashbackError(
                ErrorCode.Timeout,
                `restore job ${job.id} ran past its deadline of ${Math.round(jobTimeoutMs / 1000)} s (restorer --job-timeout) and was stopped; a target that accepts connections but never answers, or a history too long for the deadline (then raise --job-timeout)?`,
              ),
            ),
          jobTimeoutMs,
        );
      });
      let report;
      try {
        report = await Promise.race([run, stopped]);
      } catch (err) {
        if (stoppedBy !== undefined && err === stoppedBy) {
          cur.handedBack = true;
          void run.then(
            (r) => this.discard(r),
            () => undefined,
          );
        }
        throw err;
      } finally {
        cur.stop = undefined;
        clearTimeout(deadline);
      }
      const [single, cluster] = isClusterReport(report) ? [undefined, report] : [report, undefined];
      if (cur.handedBack) {
        // Another restorer runs this job now; an instance made here would be a stray.
        await this.discard(report);
        return;
      }
      let secret: string | undefined;
      if (job.request.spawn && report.url && report.pid !== undefined && report.dir) {
        const password = newInstancePassword();
        let own;
        try {
          own = await adoptInstance(this.d.instancesDir, {
            id: job.id,
            url: report.url,
            pid: report.pid,
            dir: report.dir,
            password,
          });
        } catch (err) {
          await this.discard(report);
          throw err;
        }
        report.url = shownInstanceUrl(own);
        if (this.d.jobKey) secret = seal(this.d.jobKey, job.id, 'instance-password', password);
        else
          report.warnings.push(
            `the instance's generated password is not sent to the API (no job key shared with it: --job-key-file); it is in ${path.join(own.dir, 'flashback-instance.json')} on host ${os.hostname()}`,
          );
        const rec: InstanceRecord = {
          id: job.id,
          url: report.url,
          pid: report.pid,
          dir: report.dir,
          // A merged instance of several nodes has no single epoch and seq: 0 there, the nodes joined by commas.
          node: single ? single.node : cluster!.nodes.join(','),
          cutoff: single
            ? { epoch: single.epoch, seq: single.cutoff.seq, tsUs: single.cutoff.tsUs, time: single.cutoff.time }
            : { epoch: 0, seq: 0, tsUs: report.cutoff.tsUs, time: report.cutoff.time },
          createdAt: new Date().toISOString(),
          host: os.hostname(),
        };
        await putInstance(nc, rec);
      }
      if (report.rdb) await chmod(report.rdb, 0o600);
      status = { ...status, state: 'done', report: single, clusterReport: cluster, secret };
      await write(status);
      await m.ackAck();
      this.s.jobsDone++;
      this.s.lastJobSeconds = report.seconds;
      this.s.jobSecondsTotal += report.seconds;
      this.m.jobSeconds.observe(report.seconds);
      logger.info(
        {
          job: job.id,
          seconds: report.seconds,
          events: single?.eventsReplayed,
          nodes: cluster?.nodes,
          keys: report.keys,
          url: report.url,
        },
        'restore job done',
      );
    } catch (err) {
      if (cur.handedBack && stoppedBy === undefined) return;
      const fe =
        err instanceof FlashbackError
          ? err
          : new FlashbackError(ErrorCode.Internal, describeError(err), { cause: err });
      // No password reaches the job's status or the log, whatever a server or library put in its message.
      const error = { code: fe.code, message: scrub(describeError(fe), secrets) };
      if (stoppedBy !== undefined) {
        await writes.catch(() => undefined);
        status = { ...status, state: 'failed', error };
        await putJob(nc, status);
        await m.ackAck();
        this.s.jobsFailed++;
        logger.error({ job: job.id, attempt, code: fe.code, err: error.message }, 'restore job stopped');
        cur.onStopped?.();
      } else if (fe.retryable && attempt < maxAttempts && !this.closing) {
        status = { ...status, state: 'queued', error };
        await write(status);
        m.nak(1_000 * attempt);
        this.s.jobsRequeued++;
        logger.warn({ job: job.id, attempt, err: error.message }, 'restore job failed; retrying');
      } else {
        status = { ...status, state: 'failed', error };
        await write(status);
        await m.ackAck();
        this.s.jobsFailed++;
        logger.error({ job: job.id, attempt, err: error.message }, 'restore job failed');
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  /**
   * A job's request as this restorer runs it: the sealed target opened and checked against the allow-list, the
   * `rdb` name placed in the export dir, a spawn checked against the cap on running instances.
   */
  private async prepare(job: JobMessage): Promise<PreparedJob> {
    const { jobKey, targetAllow, exportDir, instancesDir, maxInstances } = this.d;
    const { sealedTarget, ...request } = job.request;
    const secrets: string[] = [];
    if (sealedTarget !== undefined) {
      if (!jobKey)
        throw new FlashbackError(
          ErrorCode.Config,
          `restore job ${job.id} carries a sealed target URL and this restorer has no job key to open it; give the restorer the API's --job-key-file (FLASHBACK_JOB_KEY_FILE)`,
        );
      request.target = unseal(jobKey, job.id, 'target', sealedTarget);
    }
    if (request.target !== undefined) {
      const password = parseRedisUrl(request.target, 'target').password;
      if (password) secrets.push(password, encodeURIComponent(password));
      await assertTargetAllowed(request.target, targetAllow);
    }
    if (request.rdb !== undefined)
      request.rdb = await exportPath(await ensurePrivateDir(exportDir, 'export dir'), request.rdb);
    if (request.spawn !== undefined) {
      const running = await runningInstances(instancesDir);
      if (running.length >= maxInstances)
        throw new FlashbackError(
          ErrorCode.Busy,
          `${running.length} restored instance(s) run on ${os.hostname()} already, this restorer's cap (--max-instances ${maxInstances}); stop one (DELETE /instances/{id}, flashback instances stop ID) and submit the job again`,
        );
    }
    return { request, secrets };
  }

  /** Removes what a restore made after its job left this restorer's hands: its instance, dir or RDB file. */
  private async discard(report: { pid?: number; url?: string; dir?: string; rdb?: string }): Promise<void> {
    if (report.pid !== undefined) await this.stopProcess(report.pid, report.url).catch(() => undefined);
    if (report.dir) await rm(report.dir, { recursive: true, force: true });
    if (report.rdb) await rm(report.rdb, { force: true });
  }

  private async readJob(id: string): Promise<RestoreJobStatus | undefined> {
    try {
      return await getJob(this.d.nc, id);
    } catch (err) {
      if (err instanceof FlashbackError && err.code === ErrorCode.NotFound) return undefined;
      throw err;
    }
  }

  /** Serves `flashback.instances.stop.<host>`: stops the process, removes its files, forgets it. */
  private async serveStop(id: string | undefined): Promise<StopInstanceReply> {
    const { nc, logger, instancesDir } = this.d;
    try {
      if (typeof id !== 'string') throw new FlashbackError(ErrorCode.BadInput, 'instance stop request without an id');
      // Only this restorer's own record says which process and dir the id stands for; the bus gives the id alone.
      const rec = await stopOwnInstance(instancesDir, id);
      await deleteInstance(nc, id);
      this.s.instancesStopped++;
      logger.info({ id, pid: rec.pid, dir: rec.dir }, 'instance stopped');
      return { ok: true };
    } catch (err) {
      const fe = err instanceof FlashbackError ? err : new FlashbackError(ErrorCode.Internal, describeError(err));
      return { ok: false, error: { code: fe.code, message: describeError(fe) } };
    }
  }

  /**
   * Stops a redis-server this process's own restore just started (never a pid from the bus): SHUTDOWN NOSAVE, then
   * a signal if it still runs (and is a redis-server).
   */
  private async stopProcess(pid: number, url: string | undefined): Promise<void> {
    if (!isRedisServer(pid)) return;
    if (url) {
      const r = new Redis(url, {
        lazyConnect: true,
        connectTimeout: 2_000,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        enableOfflineQueue: false,
      });
      r.on('error', () => undefined);
      try {
        await r.connect();
        await r.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
      } catch {
        // Unreachable: the signal below does it.
      } finally {
        r.disconnect();
      }
    }
    if (isRedisServer(pid)) await stopPid(pid, { timeoutMs: 5_000 });
    else {
      const deadline = Date.now() + 5_000;
      while (isPidAlive(pid) && Date.now() < deadline) await delay(20);
    }
  }

  close(): Promise<void> {
    return (this.closed ??= this.doClose());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async doClose(): Promise<void> {
    const { nc, store, logger, closeTimeoutMs } = this.d;
    this.closing = true;
    const cur = this.current;
    let handedBack = false;
    if (cur) {
      let timer: NodeJS.Timeout | undefined;
      const finished = await Promise.race([
        cur.done.then(() => true),
        new Promise<boolean>((res) => (timer = setTimeout(() => res(false), closeTimeoutMs))),
      ]);
      clearTimeout(timer);
      if (!finished) {
        cur.handedBack = true;
        handedBack = true;
        const prev = await this.readJob(cur.id).catch(() => undefined);
        if (prev && !isFinal(prev.state)) {
          await putJob(nc, {
            ...prev,
            state: 'queued',
            error: {
              code: ErrorCode.Connection,
              message: `restorer ${this.d.id} stopped while running it; handed back to the queue`,
            },
          }).catch(() => undefined);
        }
        cur.msg.nak();
        this.s.jobsRequeued++;
        logger.warn({ job: cur.id }, 'restore job handed back: it did not finish before the close timeout');
      }
    }
    // A job handed back may never settle (a target that stopped answering); the loop then ends with the process.
    if (!handedBack) await this.loop?.catch(() => undefined);
    this.stopSub?.unsubscribe();
    this.cancelSub?.unsubscribe();
    for (const f of this.closers) await f().catch(() => undefined);
    await nc.drain().catch(() => nc.close());
    await store.close();
    logger.info(this.stats(), 'restorer stopped');
  }
}

/** Whether pid is a live redis-server or valkey-server (Linux /proc); elsewhere, whether it is alive at all. */
function isRedisServer(pid: number): boolean {
  if (!isPidAlive(pid)) return false;
  try {
    return runsRestoreServer(pid);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' || !readDirOk('/proc');
  }
}

function readDirOk(dir: string): boolean {
  try {
    readFileSync(path.join(dir, 'self', 'stat'));
    return true;
  } catch {
    return false;
  }
}

/** `text` with every secret replaced by `***`. */
function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 3) out = out.split(s).join('***');
  return out;
}
