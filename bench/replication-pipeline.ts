/**
 * Replication-mode pipeline throughput on one core: a replication stream of SETs (with a time anchor every 100
 * entries, as under load) held in memory and fed in 64 KiB chunks, as the agent's replica link reads it. Rows: RESP
 * parsing alone (the baseline, the least the agent must do), + the stream assembler (events, seqs, anchor times, tx),
 * + the JetStream batch encoding. NATS itself is not in it: capture-overhead measures the whole agent against a live
 * source. Run alone: `node --import tsx bench/replication-pipeline.ts [--quick]`.
 */
import { ANCHOR_CHANNEL } from '../core/bus/baseline.js';
import { encodeBatch } from '../core/bus/event-codec.js';
import type { FlashbackEvent } from '../core/bus/event.js';
import { CommandTable } from '../core/redis/command-table.js';
import { RawRedis } from '../core/redis/raw-redis.js';
import { parseRedisUrl } from '../core/redis/redis-url.js';
import { encodeCommand, RespReader } from '../core/redis/resp.js';
import { startRedisServer } from '../core/servers/redis-server.js';
import { StreamAssembler } from '../agent/replication/stream-assembler.js';
import { round, runIfMain, type BenchResult, type BenchSize } from './report.js';

const CHUNK_BYTES = 64 * 1024;
const ROUNDS = 5;

type Stage = 'parse' | 'assemble' | 'encode';

function buildChunks(entries: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < entries; i++) {
    parts.push(encodeCommand(['SET', `key:${i % 100_000}`, `value-${i}`]));
    if (i % 100 === 99)
      parts.push(encodeCommand(['PUBLISH', ANCHOR_CHANNEL, `1796000000.${String(i % 1_000_000).padStart(6, '0')}`]));
  }
  const stream = Buffer.concat(parts);
  const out: Buffer[] = [];
  for (let o = 0; o < stream.length; o += CHUNK_BYTES) out.push(stream.subarray(o, o + CHUNK_BYTES));
  return out;
}

/** One pass; returns the entries (parse) or events (assemble, encode) it produced. */
function pass(chunks: Buffer[], table: CommandTable, stage: Stage): number {
  const reader = new RespReader();
  let pending: FlashbackEvent[] = [];
  let n = 0;
  const assembler = new StreamAssembler({
    node: 'bench',
    epoch: 1,
    table,
    lastSeq: 0,
    emit: (events) => {
      n += events.length;
      if (stage !== 'encode') return;
      for (const e of events) pending.push(e);
      if (pending.length >= 2_000) {
        encodeBatch({ node: 'bench', epoch: 1, events: pending });
        pending = [];
      }
    },
    wantAnchor: () => undefined,
    serverNowUs: () => 2e15,
  });
  for (const c of chunks) {
    reader.push(c);
    let v;
    while ((v = reader.readCommand()) !== undefined) {
      if (stage === 'parse') n++;
      else assembler.push(v as Buffer[], reader.consumed);
    }
  }
  return n;
}

export async function benchReplicationPipeline(size: BenchSize): Promise<BenchResult> {
  const entries = size === 'quick' ? 200_000 : 1_000_000;
  // The command table of the installed server: key specs as the agent gets them.
  const redis = await startRedisServer();
  let table: CommandTable;
  try {
    const conn = await RawRedis.connect(parseRedisUrl(redis.url));
    table = await CommandTable.load(conn);
    conn.close();
  } finally {
    await redis.stop();
  }
  const chunks = buildChunks(entries);
  const best = (stage: Stage): number => {
    let ms = Infinity;
    for (let r = 0; r <= ROUNDS; r++) {
      const t0 = process.hrtime.bigint();
      pass(chunks, table, stage);
      const t = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r > 0) ms = Math.min(ms, t);
    }
    return ms;
  };
  const parseMs = best('parse');
  const rows = (['parse', 'assemble', 'encode'] as const).map((stage) => {
    const ms = stage === 'parse' ? parseMs : best(stage);
    return {
      stage:
        stage === 'parse' ? 'RESP parse (baseline)' : stage === 'assemble' ? '+ stream assembler' : '+ batch encoding',
      entries,
      'best ms': round(ms, 1),
      'entries/s': Math.round(entries / (ms / 1000)),
      'x baseline time': round(ms / parseMs),
    };
  });
  return {
    name: 'Replication pipeline (one core, 64 KiB chunks, an anchor every 100 entries)',
    rows,
    notes: [
      'Best of 5 rounds after a warm-up; the NATS publish and the socket are not in it (capture-overhead has the whole agent).',
    ],
  };
}

await runIfMain(import.meta.url, benchReplicationPipeline);
