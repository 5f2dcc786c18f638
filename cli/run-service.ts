import type { Logger } from '../core/log.js';

/**
 * Keeps a long-running service alive until SIGINT or SIGTERM, then closes it
 * (which flushes what it holds). A second signal exits at once.
 */
export async function runUntilSignal(service: { close(): Promise<void> }, logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, 'stopping: flushing what is in hand');
      service.close().then(resolve, (err: unknown) => {
        logger.error({ err: String(err) }, 'error while stopping');
        resolve();
      });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}
