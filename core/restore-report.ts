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

/** What a restore did: the `--json` output and the API's job result. */
export interface RestoreReport {
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
   * What may keep this restore from being exact: commands replayed as issued whose effect the argv does not
   * determine (tip nondeterministic_output: SPOP, XADD *, …) or that can block (BLPOP …: a pop served later is
   * not in MONITOR). Empty when nothing of the kind was replayed.
   */
  warnings: string[];
  seconds: number;
  /** The new instance (spawn), the target, or the RDB file. */
  url?: string;
  pid?: number;
  dir?: string;
  rdb?: string;
}
