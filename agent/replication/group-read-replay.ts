/**
 * Redis 7.0 replicates a group read (`XREADGROUP … >`) as one `XCLAIM key group consumer 0 id … LASTID id` per entry
 * delivered, without the group's `entries-read`: a replica (and a replay of the stream) keeps the old counter, so its
 * `entries-read` and `lag` differ from the master's (docs/research/replication-stream-7.0.md §4). This script runs the
 * XCLAIM and then does what the master did to the counter when the read moved the group's last id (t_stream.c,
 * streamReplyWithRange): +1 while the counter is valid and no deleted entry lies at or after the id, else the
 * estimate from the first entry ever (streamEstimateDistanceFromFirstEverEntry). A later `XGROUP SETID … ENTRIESREAD`
 * (newer servers propagate one) overrides it.
 */
export const GROUP_READ_SCRIPT = `
local function cmpn(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function cmp(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  local c = cmpn(am, bm)
  if c ~= 0 then return c end
  return cmpn(as, bs)
end
local function field(flat, name)
  for i = 1, #flat - 1, 2 do if flat[i] == name then return flat[i + 1] end end
end
local key, group = KEYS[1], ARGV[1]
local lastid
for i = 1, #ARGV - 1 do if string.upper(ARGV[i]) == 'LASTID' then lastid = ARGV[i + 1] end end
local before
if lastid then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    if field(g, 'name') == group then before = g end
  end
end
local reply = redis.call('XCLAIM', key, unpack(ARGV))
if not before or cmp(lastid, field(before, 'last-delivered-id')) <= 0 then return reply end
local s = redis.call('XINFO', 'STREAM', key)
local len, added = field(s, 'length'), field(s, 'entries-added')
local first, last = field(s, 'recorded-first-entry-id'), field(s, 'last-generated-id')
local maxdel = field(s, 'max-deleted-entry-id')
local read = field(before, 'entries-read')
local tomb = len > 0 and maxdel ~= '0-0' and cmp(first, maxdel) <= 0 and cmp(lastid, maxdel) <= 0
local n
if read and not tomb then
  n = read + 1
elseif added > 0 then
  local c = cmp(lastid, last)
  if len == 0 and c <= 0 then n = added
  elseif c == 0 then n = added
  elseif c > 0 then n = -1
  else
    n = -1
    if maxdel == '0-0' or cmp(maxdel, first) < 0 then
      local cf = cmp(lastid, first)
      if cf < 0 then n = added - len elseif cf == 0 then n = added - len + 1 end
    end
  end
end
if n then redis.call('XGROUP', 'SETID', key, group, lastid, 'ENTRIESREAD', n) end
return reply
`;

const SCRIPT = Buffer.from(GROUP_READ_SCRIPT);
const EVAL = Buffer.from('EVAL');
const ONE = Buffer.from('1');

/** The replay of a stream entry: `XCLAIM … LASTID …` through {@link GROUP_READ_SCRIPT}; anything else as it is. */
export function groupReadReplay(argv: Buffer[]): Buffer[] {
  if (argv.length < 6 || argv[0]!.length !== 6 || argv[0]!.toString('latin1').toUpperCase() !== 'XCLAIM') return argv;
  if (!argv.some((a) => a.length === 6 && a.toString('latin1').toUpperCase() === 'LASTID')) return argv;
  return [EVAL, SCRIPT, ONE, argv[1]!, ...argv.slice(2)];
}
