import { ConfigError } from '../errors.js';

/** Where and how to reach one Redis server. */
export interface RedisTarget {
  host: string;
  port: number;
  /** ACL user name (AUTH user pass); undefined for the default user. */
  username?: string;
  password?: string;
  /** Database in the URL path; capture ignores it (MONITOR sees every db). */
  db: number;
  /** `rediss://`: TLS, verified against Node's CAs (NODE_EXTRA_CA_CERTS adds yours). */
  tls: boolean;
}

/** Parses `redis://[user[:pass]@]host[:port][/db]` or `rediss://…`; throws ConfigError naming the flag. */
export function parseRedisUrl(url: string, flag = '--redis'): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new ConfigError(
      `${flag} "${url}" is not a URL; expected redis://[user:password@]host:port[/db] or rediss://… for TLS`,
      { cause },
    );
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`${flag} "${url}" has scheme "${u.protocol}"; expected redis:// or rediss://`);
  }
  if (!u.hostname) throw new ConfigError(`${flag} "${url}" has no host; expected redis://host:port`);
  const port = u.port ? Number(u.port) : 6379;
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0)
    throw new ConfigError(`${flag} "${url}" has database "${dbText}"; expected a number such as /0`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db,
    tls: u.protocol === 'rediss:',
  };
}

/** `host:port`, the default node id and what logs show (never the password). */
export function redisAddress(t: RedisTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** The URL without credentials, for logs and reports. */
export function redactedRedisUrl(t: RedisTarget): string {
  return `${t.tls ? 'rediss' : 'redis'}://${t.username ? `${t.username}:***@` : t.password ? ':***@' : ''}${redisAddress(t)}/${t.db}`;
}
