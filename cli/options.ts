import { readFileSync } from 'node:fs';
import type { Options } from 'yargs';
import type { NatsAuthOptions } from '../core/bus/nats.js';
import { ConfigError } from '../core/errors.js';
import type { ClickHouseAuth } from '../core/store/clickhouse.js';

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
  describe: 'serve GET /health and /metrics on this port (see --health-host)',
} satisfies Options;

export const healthHostOption = {
  type: 'string',
  default: '127.0.0.1',
  describe:
    'address the health port binds to; 0.0.0.0 lets a Prometheus on another machine scrape it (env FLASHBACK_HEALTH_HOST)',
} satisfies Options;

/** NATS credential and TLS flags of every service (docs/security.md); each also reads FLASHBACK_<NAME>. */
export const natsAuthOptions = {
  'nats-user': { type: 'string', describe: 'NATS user (env FLASHBACK_NATS_USER)' },
  'nats-password': {
    type: 'string',
    describe: 'NATS password; prefer env FLASHBACK_NATS_PASSWORD or FLASHBACK_NATS_PASSWORD_FILE (flags show in ps)',
  },
  'nats-password-file': {
    type: 'string',
    describe: 'file holding the NATS password (env FLASHBACK_NATS_PASSWORD_FILE)',
  },
  'nats-creds': {
    type: 'string',
    describe: 'NATS .creds file (JWT + nkey seed) instead of a user (env FLASHBACK_NATS_CREDS)',
  },
  'nats-tls-ca': { type: 'string', describe: 'CA file to verify the NATS server (env FLASHBACK_NATS_TLS_CA)' },
  'nats-tls-cert': { type: 'string', describe: 'client certificate for NATS mutual TLS (env FLASHBACK_NATS_TLS_CERT)' },
  'nats-tls-key': { type: 'string', describe: 'key of --nats-tls-cert (env FLASHBACK_NATS_TLS_KEY)' },
} satisfies Record<string, Options>;

/** ClickHouse credential flags of the services that use ClickHouse. */
export const clickhouseAuthOptions = {
  'clickhouse-user': { type: 'string', describe: 'ClickHouse user (env FLASHBACK_CLICKHOUSE_USER)' },
  'clickhouse-password': {
    type: 'string',
    describe:
      'ClickHouse password; prefer env FLASHBACK_CLICKHOUSE_PASSWORD or FLASHBACK_CLICKHOUSE_PASSWORD_FILE (flags show in ps)',
  },
  'clickhouse-password-file': {
    type: 'string',
    describe: 'file holding the ClickHouse password (env FLASHBACK_CLICKHOUSE_PASSWORD_FILE)',
  },
} satisfies Record<string, Options>;

/** The API's second ClickHouse user, for users' SQL (a readonly=1 profile with limits). */
export const clickhouseSqlAuthOptions = {
  'clickhouse-sql-user': {
    type: 'string',
    describe: 'ClickHouse user POST /sql runs as: a readonly profile with limits (env FLASHBACK_CLICKHOUSE_SQL_USER)',
  },
  'clickhouse-sql-password': {
    type: 'string',
    describe: 'its password; prefer env FLASHBACK_CLICKHOUSE_SQL_PASSWORD(_FILE)',
  },
  'clickhouse-sql-password-file': {
    type: 'string',
    describe: 'file holding it (env FLASHBACK_CLICKHOUSE_SQL_PASSWORD_FILE)',
  },
} satisfies Record<string, Options>;

type Maybe = string | undefined;

/** A secret from its flag/env value or from its file (`*_FILE`, trailing newline dropped); ConfigError names the flag. */
export function secretFrom(value: Maybe, file: Maybe, flag: string): string | undefined {
  if (value !== undefined && file !== undefined) throw new ConfigError(`give --${flag} or --${flag}-file, not both`);
  if (file === undefined) return value;
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (cause) {
    throw new ConfigError(`cannot read --${flag}-file ${file}; check the path and its mode`, { cause });
  }
}

/** NATS credentials from parsed {@link natsAuthOptions}; undefined when none was given. */
export function natsAuthFrom(a: {
  natsUser?: Maybe;
  natsPassword?: Maybe;
  natsPasswordFile?: Maybe;
  natsCreds?: Maybe;
  natsTlsCa?: Maybe;
  natsTlsCert?: Maybe;
  natsTlsKey?: Maybe;
}): NatsAuthOptions | undefined {
  const auth: NatsAuthOptions = {
    user: a.natsUser,
    password: secretFrom(a.natsPassword, a.natsPasswordFile, 'nats-password'),
    credsFile: a.natsCreds,
    tlsCaFile: a.natsTlsCa,
    tlsCertFile: a.natsTlsCert,
    tlsKeyFile: a.natsTlsKey,
  };
  const given = Object.fromEntries(Object.entries(auth).filter(([, v]) => v !== undefined)) as NatsAuthOptions;
  return Object.keys(given).length === 0 ? undefined : given;
}

/** ClickHouse credentials from parsed {@link clickhouseAuthOptions}; undefined when none was given. */
export function clickhouseAuthFrom(a: {
  clickhouseUser?: Maybe;
  clickhousePassword?: Maybe;
  clickhousePasswordFile?: Maybe;
}): ClickHouseAuth | undefined {
  const password = secretFrom(a.clickhousePassword, a.clickhousePasswordFile, 'clickhouse-password');
  if (a.clickhouseUser === undefined && password === undefined) return undefined;
  return { user: a.clickhouseUser, password };
}

/** The API's SQL user from parsed {@link clickhouseSqlAuthOptions}; undefined when none was given. */
export function clickhouseSqlAuthFrom(a: {
  clickhouseSqlUser?: Maybe;
  clickhouseSqlPassword?: Maybe;
  clickhouseSqlPasswordFile?: Maybe;
}): ClickHouseAuth | undefined {
  const password = secretFrom(a.clickhouseSqlPassword, a.clickhouseSqlPasswordFile, 'clickhouse-sql-password');
  if (a.clickhouseSqlUser === undefined) {
    if (password !== undefined)
      throw new ConfigError('a ClickHouse SQL password was given without --clickhouse-sql-user');
    return undefined;
  }
  return { user: a.clickhouseSqlUser, password };
}
