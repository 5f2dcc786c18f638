import type { Options } from 'yargs';

/** Shared flags; each also reads FLASHBACK_<NAME> (yargs .env). */
export const natsOption = {
  type: 'string',
  default: 'nats://127.0.0.1:4222',
  describe: 'NATS server with JetStream (env FLASHBACK_NATS)',
} satisfies Options;

export const clickhouseOption = {
  type: 'string',
  default: 'http://127.0.0.1:8123',
  describe: 'ClickHouse HTTP URL, http://[user:password@]host:port (env FLASHBACK_CLICKHOUSE)',
} satisfies Options;

export const healthPortOption = {
  type: 'number',
  describe: 'serve GET /health and /metrics on this port (127.0.0.1)',
} satisfies Options;
