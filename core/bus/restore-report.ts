/**
 * What a restore reports, shared by the restorer (which produces it) and the
 * API and CLI (which show it): the one definition, so a job's stored result
 * and a local restore's `--json` output cannot drift apart.
 */

/** Progress of a running restore. */
export interface RestoreProgress {
  phase: 'resolve' | 'baseline' | 'events' | 'load' | 'copy' | 'verify';
  events: number;
  totalEvents: number;
}

/** How long a restore took and where its data went. */
export interface RestoreOutcome {
  seconds: number;
  /** The new instance (spawn), the target, or the RDB file. */
  url?: string;
  pid?: number;
  dir?: string;
  rdb?: string;
}

/** What a restore did: the `--json` output and the API's job result. */
export interface RestoreReport extends RestoreOutcome {
  node: string;
  epoch: number;
  cutoff: { seq: number; tsUs: number; time: string; asked?: string };
  baseline: { seq: number; tsUs: number; time: string; rdbBytes: number; digest: string };
  eventsReplayed: number;
  keys: number;
  /** Keys dropped by a key-subset restore (--keys / --db); absent for a full restore. */
  droppedKeys?: number;
  /** Keys whose absolute expiry had passed by the time of the restore (gone from the new instance). */
  expiredAtRestore: number;
  digest: string;
  /** 'match': equal to the source's digest recorded at the baseline (cutoff = baseline); 'unchecked' otherwise. */
  verified: 'match' | 'unchecked';
  /**
   * What may keep this restore from being exact: nondeterministic commands (SPOP, XADD *, …) replayed as issued
   * because the agent could not capture the state they reached. Empty when there were none.
   */
  warnings: string[];
  /** The server that loaded the restore (`redis 8.0.2`), picked to match the source's (restorer/server-binaries.ts). */
  server?: string;
}

/**
 * What a cluster-wide restore did: several nodes (a Redis Cluster's masters, or any nodes whose data is disjoint)
 * restored at one instant into one destination. The `--json` output and the API's job result when the request
 * named `nodes`.
 */
export interface ClusterRestoreReport extends RestoreOutcome {
  /** The nodes, in the order asked. */
  nodes: string[];
  /** The instant every node was restored at. */
  cutoff: { tsUs: number; time: string };
  /**
   * Each node's own restore (into a scratch server, then copied): epoch, cutoff seq, baseline, events, keys, digest.
   */
  parts: RestoreReport[];
  /** Keys written to the destination (each part's keys, less those whose expiry passed during the copy). */
  keys: number;
  /**
   * `DEBUG DIGEST` of the destination: a standalone instance (spawn, standalone target, RDB); absent for a Cluster
   * target.
   */
  digest?: string;
  /** A Cluster target: each master with its slots, keys and `DEBUG DIGEST` ('' where DEBUG is refused). */
  masters?: { url: string; slots?: [number, number][]; keys: number; digest: string }[];
  /** The parts' warnings, each prefixed with its node. */
  warnings: string[];
}
