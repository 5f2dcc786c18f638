/**
 * Per-node agent lag for bench/scale.ts, read the way Prometheus reads it: the `flashback_agent_lag_seconds` histogram
 * of each agent's GET /metrics text (agent/metrics.ts), scraped before and after the load, and the difference's
 * quantiles interpolated within buckets as `histogram_quantile` does.
 */
import { median, round } from './report.js';

/** One sample line of the Prometheus text format. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The sample lines of a Prometheus text exposition (comments and blank lines skipped). */
export function parsePrometheus(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** A histogram: cumulative bucket counts by upper bound (ascending, +Inf last), sum and count. */
export interface Histogram {
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
  /** Values of the `node` label on the family's samples (each sample's; '' when a sample has none). */
  nodeLabels: string[];
}

/** The histogram `name` in `samples` (one series: the agent's registry has one per process). */
export function histogramOf(samples: readonly PromSample[], name: string): Histogram {
  const family = samples.filter(
    (s) => s.name === `${name}_bucket` || s.name === `${name}_sum` || s.name === `${name}_count`,
  );
  if (family.length === 0) throw new Error(`no ${name} in the metrics`);
  const buckets = family
    .filter((s) => s.name === `${name}_bucket`)
    .map((s) => ({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), count: s.value }))
    .sort((a, b) => a.le - b.le);
  return {
    buckets,
    sum: family.find((s) => s.name === `${name}_sum`)?.value ?? 0,
    count: family.find((s) => s.name === `${name}_count`)?.value ?? 0,
    nodeLabels: family.map((s) => s.labels.node ?? ''),
  };
}

/** `after − before`: the samples observed between two scrapes of one histogram. */
export function histogramDelta(after: Histogram, before: Histogram): Histogram {
  return {
    buckets: after.buckets.map((b) => ({
      le: b.le,
      count: b.count - (before.buckets.find((x) => x.le === b.le)?.count ?? 0),
    })),
    sum: after.sum - before.sum,
    count: after.count - before.count,
    nodeLabels: after.nodeLabels,
  };
}

/**
 * Quantile `q` of a histogram as Prometheus's `histogram_quantile` computes it: linear within the bucket the rank falls
 * in (from 0 for the first bucket); in the +Inf bucket, the highest finite bound. NaN without samples.
 */
export function histogramQuantile(h: Histogram, q: number): number {
  if (h.count <= 0) return Number.NaN;
  const rank = q * h.count;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      if (b.count === prevCount) return b.le;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / (b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** One node's lag over the load and whether its history reached ClickHouse. */
export interface NodeLag {
  node: string;
  /** From the histogram's difference over the load, ms (interpolated within buckets). */
  p50Ms: number;
  p99Ms: number;
  /** sum / count over the load, ms (exact). */
  meanMs: number;
  samples: number;
  /** Every sample of flashback_agent_lag_seconds carries node="<this node>". */
  labelled: boolean;
  /** Highest per-second p99 of agent.stats() (the agent's own reservoir), ms; agents in this process only. */
  maxIntervalP99Ms?: number;
  /** Seconds from the start of the load until ClickHouse held every SET of this node. */
  storedAfterS: number;
  /** SETs of this node in ClickHouse (distinct seqs) and how many redis-benchmark sent. */
  setsStored: number;
  setsSent: number;
  /** Every seq of the node's one epoch, from its first to the agent's last, is in ClickHouse once (no hole). */
  seqsComplete: boolean;
}

/** The lag figures of one node from its scrapes before and after the load. */
export function lagFromScrapes(
  node: string,
  before: string,
  after: string,
): Omit<NodeLag, 'storedAfterS' | 'setsStored' | 'setsSent' | 'seqsComplete'> {
  const name = 'flashback_agent_lag_seconds';
  const a = histogramOf(parsePrometheus(after), name);
  const d = histogramDelta(a, histogramOf(parsePrometheus(before), name));
  return {
    node,
    p50Ms: round(histogramQuantile(d, 0.5) * 1000, 1),
    p99Ms: round(histogramQuantile(d, 0.99) * 1000, 1),
    meanMs: d.count > 0 ? round((d.sum / d.count) * 1000, 1) : Number.NaN,
    samples: d.count,
    labelled: a.nodeLabels.length > 0 && a.nodeLabels.every((l) => l === node),
  };
}

/** A gauge's value in a scrape (the first sample of that name). */
export function gaugeOf(text: string, name: string): number | undefined {
  return parsePrometheus(text).find((s) => s.name === name)?.value;
}

/** `min / median / max` of a figure over the nodes, with the worst node named. */
export function lagSummary(nodes: readonly NodeLag[]): string {
  const by = (f: (n: NodeLag) => number) => {
    const xs = nodes.map(f);
    return `${round(Math.min(...xs), 1)} / ${round(median(xs), 1)} / ${round(Math.max(...xs), 1)}`;
  };
  const worst = nodes.reduce((w, n) => (n.p99Ms > w.p99Ms ? n : w), nodes[0]!);
  const complete = nodes.filter((n) => n.setsStored === n.setsSent && n.seqsComplete).length;
  const labelled = nodes.filter((n) => n.labelled).length;
  const interval = nodes.every((n) => n.maxIntervalP99Ms !== undefined)
    ? `; worst 1-s p99 of agent.stats() min / median / max ${by((n) => n.maxIntervalP99Ms!)} ms`
    : '';
  return (
    `agent lag p99 over the load, min / median / max of ${nodes.length} node${nodes.length > 1 ? 's' : ''}: ${by((n) => n.p99Ms)} ms (worst ${worst.node}); ` +
    `p50 ${by((n) => n.p50Ms)} ms; mean ${by((n) => n.meanMs)} ms; ${by((n) => n.samples)} samples (one per group of events emitted)${interval}; ` +
    `every SET and every seq in ClickHouse: ${complete}/${nodes.length} nodes; ` +
    `last node's SETs all stored ${round(Math.max(...nodes.map((n) => n.storedAfterS)), 2)} s after the load began (first node ${round(Math.min(...nodes.map((n) => n.storedAfterS)), 2)} s); ` +
    `flashback_agent_lag_seconds labelled with its node: ${labelled}/${nodes.length}`
  );
}

/** `node p99` for every node, for a note under the table. */
export function perNodeList(nodes: readonly NodeLag[]): string {
  return nodes.map((n) => `${n.node} ${n.p99Ms}`).join(', ');
}
