/** Shapes of the API answers the page reads (see /openapi.json). */

export interface Rates {
  fromUs: number;
  toUs: number;
  bucketUs: number;
  nodes: { node: string; counts: number[] }[];
}

export interface Mark {
  kind: 'flush' | 'swapdb' | 'mass-delete' | 'big-tx' | 'rename-over' | 'type-change';
  node: string;
  epoch: number;
  seq: number;
  tsUs: number;
  time: string;
  db: number;
  client: string;
  command: string;
  keys: string[];
  keyCount: number;
  summary: string;
}

export interface Spans {
  node: string;
  windows: { epoch: number; fromSeq: number; fromTsUs: number; toSeq: number; toTsUs: number }[];
  baselines: { epoch: number; seq: number; tsUs: number }[];
  holes: { epoch: number; afterSeq: number; fromTsUs: number; nextSeq: number; toTsUs: number }[];
}

export interface HistoryEvent {
  node: string;
  epoch: number;
  seq: number;
  tsUs: number;
  time: string;
  db: number;
  client: string;
  kind: string;
  command: string;
  keys: string[];
  args: string[];
  tx: number;
}

export interface NodeInfo {
  node: string;
  events: number;
  lastTsUs: number;
  windows: number;
}

export interface JobStatus {
  id: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  progress: { phase: string; events: number; totalEvents: number };
  report?: {
    url?: string;
    keys: number;
    eventsReplayed: number;
    cutoff: { seq: number; time: string };
    warnings?: string[];
  };
  /** A spawned instance's password: only in the first answer after the job is done. */
  password?: string;
  error?: { code: string; message: string };
}

export interface KeyValue {
  type: string;
  ttlMs: number;
  size: number;
  value?: string;
  items?: string[][];
  truncated: boolean;
}

/** What a restore-before asks about: an event of a node. */
export interface EventRef {
  node: string;
  epoch: number;
  seq: number;
  tsUs: number;
  what: string;
}

/** Words for a mark's kind. */
export const MARK_WORDS: Record<Mark['kind'], string> = {
  flush: 'flush',
  swapdb: 'SWAPDB',
  'mass-delete': 'many keys deleted',
  'big-tx': 'transaction/script writing many keys',
  'rename-over': 'RENAME over an existing key',
  'type-change': 'type change',
};
