import type { Store } from '../core/store/clickhouse.js';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/log.js';
import type { NatsConnection } from '../core/bus/nats.js';
import {
  getJob,
  listInstances,
  listJobs,
  stopInstance,
  submitRestoreJob,
  type InstanceRecord,
  type RestoreJobRequest,
  type RestoreJobState,
  type RestoreJobStatus,
} from '../core/bus/restore-jobs.js';

/** What the API needs from ClickHouse. */
export type ApiStore = Pick<Store, 'query' | 'readOnlySql' | 'ping'>;

/** What the API needs from the restore-job infrastructure. */
export interface JobClient {
  submit(request: RestoreJobRequest): Promise<string>;
  get(id: string): Promise<RestoreJobStatus>;
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
    submit: (r) => submitRestoreJob(nc, r),
    get: (id) => getJob(nc, id),
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
  /** Bearer tokens accepted (parseApiTokens); every route but /health needs one. */
  tokens: readonly string[];
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
