import type { Logger } from '../core/log.js';
import { killAttachedServers } from '../core/servers/server-process.js';

/** How long a service may take to stop after SIGINT/SIGTERM (`--stop-timeout`, FLASHBACK_STOP_TIMEOUT), ms. */
export const stopSettings = { timeoutMs: 10_000 };

/** A service as {@link runUntilSignal} sees it: `stats()` (when it has one) says what was still in hand. */
export interface StoppableService {
  close(): Promise<void>;
  stats?(): object;
}

/**
 * Keeps a long-running service alive until SIGINT or SIGTERM, then closes it (which flushes what it holds). The
 * close gets {@link stopSettings}.timeoutMs: past it, or at a second signal, the process exits anyway, logging what
 * the service still held, and the servers it started (nats-server, clickhouse-server under `up`) are killed with it.
 */
export async function runUntilSignal(service: StoppableService, logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const forced = (why: string, code: number) => {
      const killed = killAttachedServers('SIGKILL');
      logger.error(
        { ...held(service), serversKilled: killed.length ? killed : undefined },
        `${why}: exiting without finishing the stop; what is listed was not flushed`,
      );
      process.exit(code);
    };
    const onSignal = (signal: NodeJS.Signals) => {
      // `on`, not `once`: with no listener left, a second signal would kill us by default, children orphaned.
      if (stopping) return forced(`second ${signal}`, 130);
      stopping = true;
      const { timeoutMs } = stopSettings;
      logger.info({ signal, timeoutMs }, 'stopping: flushing what is in hand');
      const timer = setTimeout(() => forced(`not stopped after ${timeoutMs} ms (--stop-timeout)`, 1), timeoutMs);
      timer.unref();
      const deadline = Date.now() + timeoutMs;
      service.close().then(
        () => {
          clearTimeout(timer);
          // Closed, but a handle a library left open (a reconnect timer, a socket) must not keep the process alive.
          setTimeout(
            () => {
              logger.warn('stopped, but something still held the process open; exiting');
              process.exit(process.exitCode ?? 0);
            },
            Math.max(1_000, deadline - Date.now()),
          ).unref();
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          logger.error({ err: String(err) }, 'error while stopping');
          resolve();
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** The service's stats, for the log line of a forced stop; nothing if it has none or they fail. */
function held(service: StoppableService): object {
  try {
    return service.stats ? { stats: service.stats() } : {};
  } catch {
    return {};
  }
}
