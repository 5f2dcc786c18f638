import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A gauge or counter for the Prometheus text format. */
export interface Metric {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  value: number;
  labels?: Record<string, string>;
}

/** Renders metrics in the Prometheus text exposition format. */
export function renderPrometheus(metrics: Metric[]): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const m of metrics) {
    if (!seen.has(m.name)) {
      seen.add(m.name);
      out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
    }
    const labels = m.labels
      ? `{${Object.entries(m.labels)
          .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
          .join(',')}}`
      : '';
    out.push(`${m.name}${labels} ${Number.isFinite(m.value) ? m.value : 0}`);
  }
  return out.join('\n') + '\n';
}

/**
 * `GET /health` (JSON, 200 when healthy, 503 otherwise) and `GET /metrics`
 * (Prometheus text) for a service that has no HTTP API of its own.
 */
export async function startHealthServer(
  port: number,
  providers: { health: () => { ok: boolean }; metrics: () => Metric[] },
  host = '127.0.0.1',
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      const h = providers.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(h));
    } else if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(renderPrometheus(providers.metrics()));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'try /health or /metrics' } }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
