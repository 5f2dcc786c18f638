import type { Logger } from '../../core/log.js';
import { RespError, type RespValue } from '../../core/redis/resp.js';
import type { RawRedis } from '../../core/redis/raw-redis.js';

/**
 * Keyspace notification classes the agent needs: keyevent (E) for expired (x)
 * and evicted (e). Keyevent, not keyspace (K): one message per change instead
 * of two, and a narrow class set, because notifications cost the source CPU
 * (research/anchor-perf.md: KEA + a subscriber keeps 35 % of throughput).
 */
export const REQUIRED_NOTIFY_FLAGS = 'Exe';

/**
 * With hash-field TTLs (Redis 7.4+) also the hash class (h): a field's expiration is published only as the keyevent
 * `hexpired`, in the class of every hash event. It costs the source a notification per hash write (no subscriber
 * reads the others); without it MONITOR capture cannot place field expirations (docs/capture-modes.md).
 */
export const FIELD_TTL_NOTIFY_FLAGS = 'Exeh';

/** Union of the server's current flags and ours, keeping theirs. Redis treats `A` as every class (g$lshzxetd…). */
export function mergeNotifyFlags(current: string, required = REQUIRED_NOTIFY_FLAGS): string {
  const have = new Set(current.split(''));
  const covered = (f: string) => have.has(f) || (have.has('A') && 'g$lshzxetdm'.includes(f));
  let out = current;
  for (const f of required) if (!covered(f)) out += f;
  return out;
}

/**
 * Checks `notify-keyspace-events` and adds what we need. Returns what it did,
 * for the log; never removes a flag the operator set.
 */
export async function ensureNotifyFlags(
  control: RawRedis,
  logger: Logger,
  required = REQUIRED_NOTIFY_FLAGS,
): Promise<{ before: string; after: string; changed: boolean; error?: string }> {
  const got: RespValue = await control.call(['CONFIG', 'GET', 'notify-keyspace-events']);
  if (got instanceof RespError || !Array.isArray(got)) {
    const error = got instanceof RespError ? got.message : 'unexpected reply';
    logger.warn(
      { error },
      'cannot read notify-keyspace-events (CONFIG refused?): expirations and evictions will not be recorded; set notify-keyspace-events to include "Exe" yourself',
    );
    return { before: '?', after: '?', changed: false, error };
  }
  const before = String(got[1] ?? '');
  const after = mergeNotifyFlags(before, required);
  if (after === before) return { before, after, changed: false };
  const r = await control.call(['CONFIG', 'SET', 'notify-keyspace-events', after]);
  if (r instanceof RespError) {
    logger.warn(
      { error: r.message },
      'cannot set notify-keyspace-events; expirations and evictions will not be recorded',
    );
    return { before, after: before, changed: false, error: r.message };
  }
  logger.info(
    { before, after },
    `notify-keyspace-events changed: the server now publishes keyevent notifications for expired (x) and evicted (e) keys${required.includes('h') ? ' and hash events (h: field expirations)' : ''}`,
  );
  return { before, after, changed: true };
}

/** The keyevent patterns the MONITOR connection subscribes to (agent/monitor/monitor-source.ts). */
export const SERVER_CHANGE_PATTERNS = ['__keyevent@*__:expired', '__keyevent@*__:evicted'] as const;

/** With hash-field TTLs (Redis 7.4+) also their expirations; an ACL user then needs this channel too. */
export const FIELD_TTL_CHANGE_PATTERN = '__keyevent@*__:hexpired';

/** A server-side change seen through a keyevent notification. */
export interface ServerChange {
  /** `hexpired`: one or more hash fields of `key` expired (Redis 7.4+); the notification does not name them. */
  kind: 'expired' | 'evicted' | 'hexpired';
  db: number;
  key: Buffer;
}

/** Reads a push frame `pmessage <pattern> __keyevent@<db>__:<event> <key>`; undefined for anything else. */
export function parseServerChange(items: Buffer[]): ServerChange | undefined {
  if (items.length !== 4 || items[0]!.toString('latin1') !== 'pmessage') return undefined;
  const ch = items[2]!.toString('latin1');
  const at = ch.indexOf('@');
  const end = ch.indexOf('__:', at);
  if (!ch.startsWith('__keyevent@') || end < 0) return undefined;
  const db = Number(ch.slice(at + 1, end));
  const kind = ch.slice(end + 3);
  if (!Number.isInteger(db) || (kind !== 'expired' && kind !== 'evicted' && kind !== 'hexpired')) return undefined;
  return { kind, db, key: items[3]! };
}

/**
 * A client subscribed to anything is in the `pubsub` output-buffer class (default hard limit 32 MB), also while in
 * MONITOR: one line of an 8 MB binary value (escaped ×4) would get our MONITOR connection closed. Raises only that
 * class's hard limit, only when it is set and lower than `minHardBytes`; the soft limit (slow subscribers) stays.
 */
export async function ensurePubsubOutputLimit(
  control: RawRedis,
  minHardBytes: number,
  logger: Logger,
): Promise<{ before: string; after: string; changed: boolean; error?: string }> {
  const got: RespValue = await control.call(['CONFIG', 'GET', 'client-output-buffer-limit']);
  const text = got instanceof RespError || !Array.isArray(got) ? undefined : String(got[1] ?? '');
  const m = text === undefined ? null : /pubsub (\d+) (\d+) (\d+)/.exec(text);
  if (!m) {
    const error = got instanceof RespError ? got.message : 'unexpected reply';
    logger.warn(
      { error },
      'cannot read client-output-buffer-limit: MONITOR lines of values over ~8 MB may exceed the pubsub class limit and end the epoch',
    );
    return { before: '?', after: '?', changed: false, error };
  }
  const [hard, soft, secs] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const before = `pubsub ${hard} ${soft} ${secs}`;
  if (hard === 0 || hard >= minHardBytes) return { before, after: before, changed: false };
  const after = `pubsub ${minHardBytes} ${soft} ${secs}`;
  const r = await control.call(['CONFIG', 'SET', 'client-output-buffer-limit', after]);
  if (r instanceof RespError) {
    logger.warn(
      { error: r.message, before },
      'cannot raise the pubsub output-buffer hard limit: MONITOR lines of values over ~8 MB may end the epoch',
    );
    return { before, after: before, changed: false, error: r.message };
  }
  logger.info(
    { before, after },
    'client-output-buffer-limit changed: the MONITOR connection also receives notifications, which puts it in the pubsub class; its hard limit now fits large values (the soft limit is unchanged)',
  );
  return { before, after, changed: true };
}
