import type { Store } from '../core/store/clickhouse.js';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/log.js';
import type { NatsConnection } from '../core/bus/nats.js';
import type { JobKey } from '../core/bus/job-secret.js';
import type { TargetAllowList } from '../core/redis/target-allow.js';
import type { ApiToken } from './auth.js';
import {
  cancelJob,
  getJob,
  listInstances,
  listJobs,
  stopInstance,
  submitRestoreJob,
  takeJobSecret,
  type InstanceRecord,
  type RestoreJobRequest,
  type RestoreJobState,
  type RestoreJobStatus,
} from '../core/bus/restore-jobs.js';

/** What the API needs from ClickHouse. */
export type ApiStore = Pick<Store, 'query' | 'readOnlySql' | 'ping'> & Partial<Pick<Store, 'client'>>;

/** What the API needs from the restore-job infrastructure. */
export interface JobClient {
  /** Queues a job; `o.id` is the id to give it (the API makes it first, to seal the target with it). */
  submit(request: RestoreJobRequest, o?: { id?: string }): Promise<string>;
  get(id: string): Promise<RestoreJobStatus>;
  /** Cancels a queued or running job; CONFLICT when it is done or failed. */
  cancel(id: string): Promise<RestoreJobStatus>;
  /** Takes a done job's sealed instance password out of the store (one caller ever gets it). */
  takeSecret(id: string): Promise<string | undefined>;
  list(o: { state?: RestoreJobState; limit?: number }): Promise<RestoreJobStatus[]>;
  instances(): Promise<InstanceRecord[]>;
  stopInstance(id: string): Promise<InstanceRecord>;
  /** Whether the bus is reachable now (for /health). */
  connected(): boolean;
}

/** The job client over a NATS connection (core/bus/restore-jobs.ts). */
export function natsJobClient(nc: NatsConnection): JobClient {
  const isReconnecting = () => 'isReconnecting' in nc && (nc as { isReconnecting?: () => boolean }).isReconnecting?.();
  return {
    submit: (r, o) => submitRestoreJob(nc, r, o),
    get: (id) => getJob(nc, id),
    cancel: (id) => cancelJob(nc, id),
    takeSecret: (id) => takeJobSecret(nc, id),
    list: (o) => listJobs(nc, o),
    instances: () => listInstances(nc),
    stopInstance: (id) => stopInstance(nc, id),
    connected: () => !nc.isClosed() && !isReconnecting(),
  };
}

/** Dependencies of buildApp (api/app.ts), handed to every route. */
export interface ApiDeps {
  store: ApiStore;
  jobs: JobClient;
  /**
   * Bearer tokens accepted, with their scopes (api/auth.ts: `read:T`, `restore:T`, `admin:T`, or `T` for admin);
   * every route but /health needs one.
   */
  tokens: readonly (string | ApiToken)[];
  /**
   * The restorers' export dir, when it is on this host: a job's `rdb` that is a symlink there is refused here too
   * (the restorer checks again). @default not checked here
   */
  exportDir?: string;
  /** Hosts a restore target may be (core/redis/target-allow.ts). @default loopback only */
  targetAllow?: TargetAllowList;
  /**
   * Key shared with the restorers that seals target passwords in jobs and opens restored instances' passwords
   * (core/bus/job-secret.ts). @default none: a target with a password is refused
   */
  jobKey?: JobKey;
  /** Largest request body, bytes; a larger one answers 413. @default 262_144 */
  maxBodyBytes?: number;
  /** Largest answer of `POST /sql`, bytes of JSON; a larger one answers 400 and is not kept. @default 8_388_608 */
  sqlMaxBytes?: number;
  /** `POST /sql` queries running at once; more wait (up to sqlMaxQueued) or answer 429. @default 4 */
  sqlConcurrency?: number;
  /** `POST /sql` queries waiting for a turn; beyond them a query answers 429. @default 16 */
  sqlMaxQueued?: number;
  /**
   * ClickHouse client for `POST /sql` and whether that user's profile holds the limits (then no settings are sent,
   * since readonly=1 refuses any). @default store.client with per-query readonly=1 and limits
   */
  sqlClient?: { client: Store['client']; serverLimits: boolean };
  /** @default silent */
  logger?: Logger;
  /** Upper bound of rows a `POST /sql` may return. @default 10_000 */
  sqlMaxRows?: number;
  /** Time limit of a `POST /sql` query, seconds. @default 30 */
  sqlMaxSeconds?: number;
  /** History retention, ms, shown by `GET /nodes` when known. @default unknown (null) */
  retentionMs?: number;
  /** More registries for `GET /metrics` (`flashback up`: the sink's, the restorer's, each agent's). @default none */
  metrics?: () => Registry[] | Promise<Registry[]>;
}
