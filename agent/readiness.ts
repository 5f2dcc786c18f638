import type { AgentStats } from './metrics.js';

/** What the agent's `GET /health` answers: ready only when the node can be restored, and why not otherwise. */
export type AgentHealth = {
  /** True when the current epoch has a stored baseline and capture runs: a restore to "now" can succeed. */
  ok: boolean;
  ready: boolean;
  /** Why the node is not ready, naming the way out; absent when ready. */
  reason?: string;
} & AgentStats;

/**
 * Readiness of an agent: capture runs and its epoch has a baseline (its restorable window has a start). Before the
 * first baseline of an epoch, or while every baseline fails (PSYNC refused on managed Redis, the object store full),
 * nothing captured can be restored, so the agent is not ready and says why.
 */
export function agentHealth(s: AgentStats, closed: boolean): AgentHealth {
  const reason = notReadyReason(s, closed);
  return { ok: reason === undefined, ready: reason === undefined, ...(reason ? { reason } : {}), ...s };
}

function notReadyReason(s: AgentStats, closed: boolean): string | undefined {
  if (closed) return 'the agent is stopping';
  if (!s.connected)
    return `capture of ${s.redis} is not running (connection lost or an epoch restarting); it reconnects by itself`;
  if (s.lastBaselineAtMs > 0 && s.lastBaselineEpoch === s.epoch) return undefined;
  const next =
    s.nextBaselineAttemptAtMs !== undefined
      ? `; next attempt in ${Math.max(0, Math.round((s.nextBaselineAttemptAtMs - Date.now()) / 1000))} s`
      : '';
  if (s.lastBaselineError)
    return `no restorable window: epoch ${s.epoch} has no baseline; the last attempt failed: ${s.lastBaselineError}${next}`;
  return `no restorable window yet: the first baseline of epoch ${s.epoch} is being taken`;
}
