import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { PROMETHEUS_CONTENT_TYPE, renderRegistries } from './metrics/exposition.js';
import { processRegistry } from './metrics/process-metrics.js';

/** What a health endpoint serves. */
export interface HealthProviders {
  /** `GET /health`: 200 when `ok`, else 503; the whole object is the JSON body (it says why when not ok). */
  health: () => { ok: boolean };
  /** `GET /metrics`: these registries (the service's own), after the process's default metrics and build info. */
  metrics: () => Registry[];
}

/**
 * `GET /health` (JSON, 200 when healthy, 503 otherwise) and `GET /metrics`
 * (Prometheus text) for a service that has no HTTP API of its own. Binds to
 * loopback unless `host` says otherwise (`--health-host 0.0.0.0` for a
 * Prometheus on another machine).
 */
export async function startHealthServer(
  port: number,
  providers: HealthProviders,
  host = '127.0.0.1',
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '').split('?')[0];
    if (url === '/health') {
      const h = providers.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(h));
    } else if (url === '/metrics') {
      renderRegistries([processRegistry(), ...providers.metrics()]).then(
        (text) => {
          res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'METRICS_FAILED', message: String(err) } }));
        },
      );
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
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // A scraper's keep-alive connection must not hold a stopping service.
        server.closeAllConnections();
      }),
  };
}
