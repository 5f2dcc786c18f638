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
  // Errors show the URL without its password: they reach logs and terminals.
  const shown = hidePassword(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new ConfigError(
      `${flag} "${shown}" is not a URL; expected redis://[user:password@]host:port[/db] or rediss://… for TLS`,
      { cause },
    );
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`${flag} "${shown}" has scheme "${u.protocol}"; expected redis:// or rediss://`);
  }
  if (!u.hostname) throw new ConfigError(`${flag} "${shown}" has no host; expected redis://host:port`);
  const port = u.port ? Number(u.port) : 6379;
  if (port < 1) throw new ConfigError(`${flag} "${shown}" has port ${u.port}; expected a port from 1 to 65535`);
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) {
    throw new ConfigError(`${flag} "${shown}" has database "${dbText}"; expected a number such as /0`);
  }
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch (cause) {
      throw new ConfigError(
        `${flag} "${shown}" has a malformed ${what} (a % not followed by two hex digits); percent-encode it`,
        { cause },
      );
    }
  };
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    username: u.username ? decode(u.username, 'user name') : undefined,
    password: u.password ? decode(u.password, 'password') : undefined,
    db: dbText === '' ? 0 : Number(dbText),
    tls: u.protocol === 'rediss:',
  };
}

/**
 * `url` with the password part of its user info replaced by `***` (also when the URL does not parse). The user info
 * runs to the last '@': a password holding a raw '@', '/', '#' or '?' is hidden whole, never shown in part.
 */
export function hidePassword(url: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url);
  if (!scheme) return url;
  const start = scheme[0].length;
  const at = url.lastIndexOf('@');
  if (at < start) return url;
  const colon = url.indexOf(':', start);
  if (colon < 0 || colon > at) return url;
  return `${url.slice(0, colon)}:***${url.slice(at)}`;
}

/** `host:port`, the default node id and what logs show (never the password). */
export function redisAddress(t: RedisTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** The URL without credentials, for logs and reports. */
export function redactedRedisUrl(t: RedisTarget): string {
  return `${t.tls ? 'rediss' : 'redis'}://${t.username ? `${t.username}${t.password ? ':***' : ''}@` : t.password ? ':***@' : ''}${redisAddress(t)}/${t.db}`;
}
