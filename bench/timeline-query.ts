/**
 * The timeline page's aggregation speed on a generated history: N events (default 100 M) over one UTC day, four nodes,
 * in `flashback.events` of a local clickhouse-server (Debian's 18.16), then each timeline query timed (median of 5
 * runs, first run separately: cold caches). The goal (issue 18): < 1 s for a day at one-minute buckets and for a minute
 * at 10 ms buckets.
 *
 * Run: `node --import tsx bench/timeline-query.ts [--events 100000000] [--dir /var/tmp/fb-timeline-bench]`.
 * With --dir the server's data stays there and a second run reuses the table (the generation takes minutes).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startClickHouseServer } from '../core/servers/clickhouse-server.js';
import { openClickHouse } from '../core/store/clickhouse.js';
import {
  bigTxSql,
  dangerousEventsSql,
  pickBucketUs,
  rateSql,
  typeMixSql,
  type TimeRange,
} from '../core/store/timeline-sql.js';
import { markdownTable, median, round, type BenchRow } from './report.js';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '100000000' }, dir: { type: 'string' } },
});
const EVENTS = Number(values.events);
/** 2026-08-03 00:00:00 UTC, µs. */
const DAY0 = Date.UTC(2026, 7, 3) * 1000;
const DAY_US = 86_400e6;
const NODES = 4;
const CHUNK = 10_000_000;

const server = await startClickHouseServer({ dir: values.dir, readyTimeoutMs: 120_000 });
const store = await openClickHouse(server.url, { requestTimeoutMs: 1_800_000 });
try {
  await store.ensureSchema();
  const have = Number(
    (await store.query<{ n: string }>(`SELECT count() AS n FROM flashback.events WHERE node LIKE 'bench-%'`))[0]!.n,
  );
  if (have !== EVENTS) {
    console.log(`generating ${EVENTS} events (have ${have}) …`);
    await store.command(`TRUNCATE TABLE flashback.events`);
    const t = performance.now();
    for (let start = 0; start < EVENTS; start += CHUNK) {
      const n = Math.min(CHUNK, EVENTS - start);
      // Event i: node i % 4, seq i / 4 + 1, evenly over the day; every 1000th a DEL of 20 keys, every 100 000th a
      // FLUSHDB, every 500th a 5-command transaction; 99 991 keys, each written by commands of all types.
      await store.command(`INSERT INTO flashback.events (node, epoch, seq, ts_us, time, db, client, kind, command, key, keys, args, replay, tx)
SELECT concat('bench-n', toString(i % ${NODES})) AS node, 1 AS epoch, intDiv(i, ${NODES}) + 1 AS seq,
  ${DAY0} + intDiv(i * ${Math.floor(DAY_US)}, ${EVENTS}) AS ts_us, toDateTime(intDiv(ts_us, 1000000)) AS time,
  toUInt16(0) AS db, concat('10.0.0.', toString(i % 50), ':5', toString(i % 1000)) AS client, 'command' AS kind,
  multiIf(i % 100000 = 7, 'FLUSHDB', i % 1000 = 3, 'DEL', ['SET', 'HSET', 'INCR', 'LPUSH', 'SADD', 'ZADD', 'EXPIRE', 'SET'][i % 8 + 1]) AS command,
  concat('key:', toString(i % 99991)) AS key,
  if(command = 'DEL', arrayMap(j -> concat('key:', toString((i + j) % 99991)), range(20)), if(command = 'FLUSHDB', emptyArrayString(), [key])) AS keys,
  arrayConcat([command], keys, ['value']) AS args, '' AS replay,
  if(i % 500 < 5 * ${NODES}, i - i % 500 + i % ${NODES}, 0) AS tx
FROM (SELECT number + ${start} AS i FROM system.numbers LIMIT ${n})`);
      console.log(`  ${start + n} rows, ${round((performance.now() - t) / 1000, 1)} s`);
    }
    await store.command('OPTIMIZE TABLE flashback.events FINAL').catch(() => undefined);
  }
  const bytes = await store.query<{ rows: string; bytes: string }>(
    `SELECT sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts WHERE database = 'flashback' AND table = 'events' AND active`,
  );
  console.log(`flashback.events: ${bytes[0]!.rows} rows, ${round(Number(bytes[0]!.bytes) / 2 ** 30)} GiB on disk`);

  const day: TimeRange = { fromUs: DAY0, toUs: DAY0 + DAY_US };
  const noon = DAY0 + DAY_US / 2;
  const minute: TimeRange = { fromUs: noon, toUs: noon + 60e6 };
  const hour: TimeRange = { fromUs: noon, toUs: noon + 3_600e6 };
  const cases: [string, string][] = [
    [`rate: a day at ${pickBucketUs(day.fromUs, day.toUs, 1_500) / 1e6} s buckets, all nodes`, rateSql(day, 60e6)],
    ['rate: a day at 60 s buckets, one node', rateSql(day, 60e6, 'bench-n1')],
    ['rate: a minute at 10 ms buckets, all nodes', rateSql(minute, 1e4)],
    ['rate: a minute at 10 ms buckets, one node', rateSql(minute, 1e4, 'bench-n1')],
    ['dangerous events: a day', dangerousEventsSql(day, 10, 1_000)],
    ['dangerous events: a minute', dangerousEventsSql(minute, 10, 1_000)],
    ['big transactions: a day', bigTxSql(day, 5, 1_000)],
    ['type changes: a minute', typeMixSql(minute, 1_000)],
    ['type changes: an hour', typeMixSql(hour, 1_000)],
  ];
  const rows: BenchRow[] = [];
  for (const [what, sql] of cases) {
    const times: number[] = [];
    let result = 0;
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      result = (await store.query(sql)).length;
      times.push((performance.now() - t) / 1000);
    }
    rows.push({
      query: what,
      'rows back': result,
      'first run, s': round(times[0]!, 3),
      'median of next 5, s': round(median(times.slice(1)), 3),
      'max, s': round(Math.max(...times.slice(1)), 3),
    });
    console.log(`${what}: ${rows.at(-1)!['median of next 5, s']} s`);
  }
  console.log(`\n${EVENTS} events over one day, ${NODES} nodes, ClickHouse ${store.version}\n`);
  console.log(markdownTable(rows));
} finally {
  await store.close();
  await server.stop();
}
