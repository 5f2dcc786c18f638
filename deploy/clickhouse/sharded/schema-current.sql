-- flashback's DDL for each shard server of cluster "flashback" (ClickHouse 20.1 and later), made by shardedSchemaFile in
-- core/store/sharded-schema.ts (test/clickhouse-shards.test.ts checks it). Apply on every server:
--   clickhouse-client --multiquery < this file

CREATE DATABASE IF NOT EXISTS flashback;

CREATE TABLE IF NOT EXISTS flashback.events_local (
  node LowCardinality(String),
  epoch UInt64,
  seq UInt64 CODEC(Delta, ZSTD),
  ts_us UInt64 CODEC(Delta, ZSTD),
  time DateTime,
  db UInt16,
  client LowCardinality(String),
  kind LowCardinality(String),
  command LowCardinality(String),
  key String,
  keys Array(String),
  args Array(String) CODEC(ZSTD),
  replay String CODEC(ZSTD),
  tx UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (node, epoch, seq);

CREATE TABLE IF NOT EXISTS flashback.events AS flashback.events_local ENGINE = Distributed(flashback, flashback, events_local, cityHash64(node));

CREATE TABLE IF NOT EXISTS flashback.baselines_local (
  node LowCardinality(String),
  epoch UInt64,
  seq UInt64,
  ts_us UInt64,
  time DateTime,
  marker String,
  rdb_object String,
  tail_object String,
  rdb_bytes UInt64,
  tail_bytes UInt64,
  keys UInt64,
  digest String,
  source String,
  rdb_sha256 String,
  tail_sha256 String
) ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (node, epoch, seq);

CREATE TABLE IF NOT EXISTS flashback.baselines AS flashback.baselines_local ENGINE = Distributed(flashback, flashback, baselines_local, cityHash64(node));

CREATE TABLE IF NOT EXISTS flashback.epochs_local (
  node LowCardinality(String),
  epoch UInt64,
  started_us UInt64,
  reason String
) ENGINE = ReplacingMergeTree()
ORDER BY (node, epoch);

CREATE TABLE IF NOT EXISTS flashback.epochs AS flashback.epochs_local ENGINE = Distributed(flashback, flashback, epochs_local, cityHash64(node));

CREATE TABLE IF NOT EXISTS flashback.broken_events_local (
  node String,
  epoch UInt64,
  seq UInt64,
  ts_us UInt64,
  command String,
  args String,
  reason String,
  found_us UInt64
) ENGINE = ReplacingMergeTree()
ORDER BY (node, epoch, seq);

CREATE TABLE IF NOT EXISTS flashback.broken_events AS flashback.broken_events_local ENGINE = Distributed(flashback, flashback, broken_events_local, cityHash64(node));

CREATE TABLE IF NOT EXISTS flashback.verifications_local (
  node String,
  epoch UInt64,
  from_seq UInt64,
  to_seq UInt64,
  from_ts_us UInt64,
  to_ts_us UInt64,
  result String,
  source_digest String,
  restored_digest String,
  first_key String,
  keys_differing UInt64,
  detail String,
  events UInt64,
  seconds Float64,
  checked_us UInt64
) ENGINE = ReplacingMergeTree(checked_us)
ORDER BY (node, epoch, from_seq, to_seq);

CREATE TABLE IF NOT EXISTS flashback.verifications AS flashback.verifications_local ENGINE = Distributed(flashback, flashback, verifications_local, cityHash64(node));

CREATE TABLE IF NOT EXISTS flashback.event_rates_local (
  node LowCardinality(String),
  second DateTime,
  n UInt64
) ENGINE = SummingMergeTree(n)
PARTITION BY toDate(second)
ORDER BY (node, second);

CREATE TABLE IF NOT EXISTS flashback.event_rates AS flashback.event_rates_local ENGINE = Distributed(flashback, flashback, event_rates_local, cityHash64(node));

INSERT INTO flashback.event_rates_local (node, second, n) SELECT node, time AS second, count() AS n FROM flashback.events_local WHERE kind IN ('command', 'expired', 'evicted') AND (SELECT count() FROM system.tables WHERE database = 'flashback' AND name = 'event_rates_mv') = 0 GROUP BY node, second;

CREATE MATERIALIZED VIEW IF NOT EXISTS flashback.event_rates_mv TO flashback.event_rates_local AS SELECT node, time AS second, count() AS n FROM flashback.events_local WHERE kind IN ('command', 'expired', 'evicted') GROUP BY node, second;

CREATE TABLE IF NOT EXISTS flashback.event_marks_local (
  node LowCardinality(String),
  epoch UInt64,
  seq UInt64,
  ts_us UInt64,
  time DateTime,
  db UInt16,
  client String,
  command String,
  keys Array(String),
  args Array(String),
  tx UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (node, epoch, seq);

CREATE TABLE IF NOT EXISTS flashback.event_marks AS flashback.event_marks_local ENGINE = Distributed(flashback, flashback, event_marks_local, cityHash64(node));

INSERT INTO flashback.event_marks_local (node, epoch, seq, ts_us, time, db, client, command, keys, args, tx) SELECT node, epoch, seq, ts_us, time, db, client, command, keys, args, tx FROM flashback.events_local WHERE kind = 'command' AND (command IN ('FLUSHALL', 'FLUSHDB', 'SWAPDB') OR (command IN ('DEL', 'UNLINK') AND length(keys) >= 10) OR command = 'RENAME') AND (SELECT count() FROM system.tables WHERE database = 'flashback' AND name = 'event_marks_mv') = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS flashback.event_marks_mv TO flashback.event_marks_local AS SELECT node, epoch, seq, ts_us, time, db, client, command, keys, args, tx FROM flashback.events_local WHERE kind = 'command' AND (command IN ('FLUSHALL', 'FLUSHDB', 'SWAPDB') OR (command IN ('DEL', 'UNLINK') AND length(keys) >= 10) OR command = 'RENAME');

CREATE TABLE IF NOT EXISTS flashback.event_seqs_local (
  node LowCardinality(String),
  epoch UInt64,
  second DateTime,
  lo UInt64,
  hi UInt64
) ENGINE = MergeTree()
PARTITION BY toDate(second)
ORDER BY (node, epoch, second);

CREATE TABLE IF NOT EXISTS flashback.event_seqs AS flashback.event_seqs_local ENGINE = Distributed(flashback, flashback, event_seqs_local, cityHash64(node));

INSERT INTO flashback.event_seqs_local (node, epoch, second, lo, hi) SELECT node, epoch, time AS second, min(seq) AS lo, max(seq) AS hi FROM flashback.events_local WHERE (SELECT count() FROM system.tables WHERE database = 'flashback' AND name = 'event_seqs_mv') = 0 GROUP BY node, epoch, second;

CREATE MATERIALIZED VIEW IF NOT EXISTS flashback.event_seqs_mv TO flashback.event_seqs_local AS SELECT node, epoch, time AS second, min(seq) AS lo, max(seq) AS hi FROM flashback.events_local GROUP BY node, epoch, second;
