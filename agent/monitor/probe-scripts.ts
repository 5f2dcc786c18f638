/**
 * Reads each key's exact state on the source: DUMP and PEXPIRETIME, atomic in one script, and for a stream its
 * entries-added and last-generated-id (where the next XADD ids are read from). Missing key → nil, -2, -1, ''.
 * EVAL_RO would do, but EVAL keeps the probe working on servers where the agent's user lacks @scripting read-only.
 */
export const STATE_PROBE_SCRIPT =
  "local r = {} for i, k in ipairs(KEYS) do r[#r + 1] = redis.call('DUMP', k) " +
  "r[#r + 1] = redis.call('PEXPIRETIME', k) local n = -1 local l = '' " +
  "if redis.call('TYPE', k)['ok'] == 'stream' then local x = redis.call('XINFO', 'STREAM', k) for j = 1, #x, 2 do " +
  "if x[j] == 'entries-added' then n = x[j + 1] elseif x[j] == 'last-generated-id' then l = x[j + 1] end end end " +
  'r[#r + 1] = n r[#r + 1] = l end return r';

/**
 * The same script, told apart in MONITOR: the re-read after a baseline's marker. Its `state` events are named
 * SETTLE, so a restore knows from where that baseline is exact (restorer/settled-baseline.ts).
 */
export const SETTLE_PROBE_SCRIPT = `-- settle\n${STATE_PROBE_SCRIPT}`;
