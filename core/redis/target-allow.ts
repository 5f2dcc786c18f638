import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { ConfigError, ErrorCode, FlashbackError } from '../errors.js';
import { parseRedisUrl, redactedRedisUrl } from './redis-url.js';

/**
 * Which hosts a restore may write to (`--target-allow`): the API checks a job's target before queueing it and the
 * restorer checks it again before connecting, so a forged job on the bus is refused as well.
 *
 * Entries, comma-separated: an IP (`10.0.0.5`, `::1`), a CIDR (`10.0.0.0/8`), a host name (`redis.internal`, matched
 * as written, case-insensitive), each optionally with a port (`10.0.0.5:6379`, `[::1]:6379`, `redis.internal:6380`),
 * or `*` for any host. A target named by a host name that no name entry matches is resolved, and every address it
 * resolves to must be allowed by an IP or CIDR entry.
 */
export interface TargetAllowList {
  /** The entries as given (for messages). */
  readonly entries: readonly string[];
  /** Whether `host:port` may be written to; `host` is a name or an address. */
  allows(host: string, port: number): Promise<boolean>;
}

/** The default: loopback only. */
export const DEFAULT_TARGET_ALLOW = ['127.0.0.0/8', '::1'] as const;

interface Entry {
  text: string;
  port?: number;
  any?: true;
  name?: string;
  list?: net.BlockList;
}

/** Parses `--target-allow` entries; ConfigError naming the entry that is not one of the accepted forms. */
export function parseTargetAllow(spec: string | readonly string[] | undefined): TargetAllowList {
  const texts = (
    spec === undefined ? [...DEFAULT_TARGET_ALLOW] : typeof spec === 'string' ? spec.split(',') : [...spec]
  )
    .flatMap((t) => t.split(','))
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (texts.length === 0)
    throw new ConfigError(
      `--target-allow is empty; name the hosts restores may write to (e.g. 127.0.0.0/8,::1, the default), or '*' for any`,
    );
  const entries = texts.map(parseEntry);
  return {
    entries: texts,
    async allows(host, port) {
      const h = unbracket(host).toLowerCase();
      const portOk = (e: Entry) => e.port === undefined || e.port === port;
      if (entries.some((e) => portOk(e) && (e.any || (e.name !== undefined && e.name === h)))) return true;
      const ipEntries = entries.filter((e) => e.list && portOk(e));
      if (ipEntries.length === 0) return false;
      let addresses: string[];
      if (net.isIP(h)) addresses = [h];
      else {
        try {
          addresses = (await lookup(h, { all: true, verbatim: true })).map((a) => a.address);
        } catch {
          return false;
        }
      }
      return (
        addresses.length > 0 &&
        addresses.every((a) => {
          const [addr, family] = normalize(a);
          return ipEntries.some((e) => e.list!.check(addr, family));
        })
      );
    },
  };
}

/**
 * Refuses a restore target outside the allow-list with FlashbackError FORBIDDEN naming the redacted URL and the
 * flag; a URL that does not parse is a ConfigError (its password hidden).
 */
export async function assertTargetAllowed(url: string, allow: TargetAllowList, flag = 'target'): Promise<void> {
  const t = parseRedisUrl(url, flag);
  if (await allow.allows(t.host, t.port)) return;
  throw new FlashbackError(
    ErrorCode.Forbidden,
    `${flag} ${redactedRedisUrl(t)} is not on the restore target allow-list (${allow.entries.join(', ')}); restore into an allowed host, or have the operator add it with --target-allow on the API and the restorer`,
  );
}

function parseEntry(text: string): Entry {
  const bad = () =>
    new ConfigError(
      `--target-allow entry "${text}" is not an IP, CIDR or host name (each optionally with :port) or '*'; e.g. 127.0.0.0/8,::1,10.0.0.5:6379,redis.internal`,
    );
  if (text === '*') return { text, any: true };
  let host = text;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (!net.isIP(text) && !/^[^/]+\/\d+$/.test(text) && /^[^:]+:\d+$/.test(text)) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    port = Number(text.slice(i + 1));
  }
  if (port !== undefined && !(port >= 1 && port <= 65_535)) throw bad();
  const cidr = /^(.+)\/(\d{1,3})$/.exec(host);
  if (cidr) {
    const family = net.isIP(cidr[1]!);
    const prefix = Number(cidr[2]);
    if (family === 0 || prefix > (family === 4 ? 32 : 128)) throw bad();
    const list = new net.BlockList();
    list.addSubnet(cidr[1]!, prefix, family === 4 ? 'ipv4' : 'ipv6');
    return { text, port, list };
  }
  if (net.isIP(host)) {
    const list = new net.BlockList();
    const [addr, family] = normalize(host);
    list.addAddress(addr, family);
    return { text, port, list };
  }
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(host)) throw bad();
  return { text, port, name: host.toLowerCase().replace(/\.$/, '') };
}

function unbracket(host: string): string {
  return host.replace(/^\[|\]$/g, '');
}

/** An address and its family, an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is. */
function normalize(address: string): [string, 'ipv4' | 'ipv6'] {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return [mapped[1]!, 'ipv4'];
  return [address, net.isIP(address) === 6 ? 'ipv6' : 'ipv4'];
}
