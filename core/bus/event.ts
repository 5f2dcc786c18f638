/** What an event records (DESIGN.md, The event). */
export const EventKind = {
  /** A command the server executed; `replay` is its normalized argv. */
  Command: 'command',
  /** The captured state of one key: `replay` is a RESTORE … REPLACE ABSTTL argv. */
  State: 'state',
  /** The server expired a key (keyspace notification); replays as DEL. */
  Expired: 'expired',
  /** The server evicted a key under maxmemory; replays as DEL. */
  Evicted: 'evicted',
  /** A baseline marker: the position of a baseline in the stream; replays as nothing. */
  Baseline: 'baseline',
  /**
   * The agent's idle heartbeat: capture was live and complete up to this instant (a window may end here); replays as
   * nothing.
   */
  Heartbeat: 'heartbeat',
  /**
   * A write that left nothing in the replication stream (it changed nothing, or the server refused it), as MONITOR
   * showed it: who issued it, when, its argv. Stored for the audit (`--audit-noops`); replays as nothing.
   */
  Audit: 'audit',
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

export const EVENT_KINDS: readonly EventKind[] = Object.values(EventKind);

/**
 * One captured mutation. Ordered and gapless per (node, epoch): seq 1, 2, 3 …
 * Keys, args and replay are bytes, never decoded on the capture or replay path.
 */
export interface FlashbackEvent {
  /** Capture source id (default `host:port`). */
  node: string;
  /** Id of one continuous capture run: its start time in ms, so epochs sort by time. */
  epoch: number;
  /** 1, 2, 3 … within the epoch. */
  seq: number;
  /**
   * Redis server time of the command in µs (MONITOR); agent time for server-side events. For a transaction, its commit
   * time.
   */
  tsUs: number;
  /** Logical database the command ran in. */
  db: number;
  /** `ip:port`, `lua`, `unix:/path` or `agent`. */
  client: string;
  kind: EventKind;
  /** Upper-case command name as issued (`HSET`); for server-side events the event name (`expired`). */
  command: string;
  /** Keys the command touches, from the server's key specs. */
  keys: Buffer[];
  /** argv as issued. */
  args: Buffer[];
  /** argv to apply on restore (normalized: absolute expiries); empty for markers; may be the same array as `args`. */
  replay: Buffer[];
  /** Seq of the first event of the transaction or script this belongs to; 0 if none. A cutoff never splits a tx. */
  tx: number;
}

/**
 * `client` of an event read from the replication stream without attribution (`--attribution off`): the stream carries
 * no time, so its `tsUs` is an upper bound, the time of the agent's next time anchor; the real instant lies after the
 * anchor before it (the previous `ANCHOR` heartbeat event). Restores say so when that matters (core/store/cutoff.ts).
 */
export const REPLICATION_CLIENT = 'replication';

/** `command` of a heartbeat event that is a time anchor of the replication stream (client `agent`, kind heartbeat). */
export const ANCHOR_COMMAND = 'ANCHOR';

/** JetStream subject of a node's events. */
export function eventSubject(node: string): string {
  return `flashback.events.${subjectToken(node)}`;
}

/** A node id as one NATS subject token: anything outside [A-Za-z0-9_-] becomes `_`. */
export function subjectToken(node: string): string {
  return node.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** Dedup id of a message whose first event is `seq` (Nats-Msg-Id). */
export function messageId(node: string, epoch: number, seq: number): string {
  return `${node}:${epoch}:${seq}`;
}
