import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Objm, StorageType as ObjStorageType, type ObjectStore } from '@nats-io/obj';
import { ConfigError, ConnectionError, FlashbackError, ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';

export type { NatsConnection, ObjectStore };

/** JetStream stream holding every node's event batches and baseline records. */
export const EVENT_STREAM = 'FLASHBACK_EVENTS';
/**
 * Subjects of EVENT_STREAM: `flashback.events.<node>` (event batches), `flashback.baselines.<node>` (BaselineRecord
 * JSON).
 */
export const EVENT_STREAM_SUBJECTS = ['flashback.events.>', 'flashback.baselines.>'] as const;
/** Object store holding baseline RDBs and tails. */
export const BASELINE_BUCKET = 'flashback-baselines';
/** Durable pull consumer of the sink on EVENT_STREAM. */
export const SINK_DURABLE = 'flashback-sink';

const DAY_MS = 86_400_000;

export interface NatsOptions {
  /** Server URL(s): `nats://host:port`, `host:port`, or several separated by commas. */
  url: string;
  /** Client name shown by the server's monitoring (`flashback-agent n1`). */
  name: string;
  /** Time to wait for the first connection, ms. @default 5_000 */
  connectTimeoutMs?: number;
  /**
   * Shortest reconnect delay, ms; the delay grows with the outage (about half of it) up to `maxReconnectDelayMs`, with
   * ±50 % jitter. Reconnects never stop. @default 250
   */
  reconnectDelayMs?: number;
  /** Upper bound of the reconnect delay, ms. @default 10_000 */
  maxReconnectDelayMs?: number;
  /** Receives one log line per status change (disconnect, reconnect, server error). @default no logging */
  logger?: Logger;
  /** Credentials and TLS. @default none (a server without authorization) */
  auth?: NatsAuthOptions;
}

/**
 * How a service proves who it is to NATS, and how it checks the server (docs/security.md). Give one of `credsFile`
 * (a JWT `.creds` file of an operator-mode deployment) or `user` + `password` (what `flashback up` generates).
 */
export interface NatsAuthOptions {
  /** Path of a `.creds` file (user JWT + nkey seed). */
  credsFile?: string;
  user?: string;
  password?: string;
  /** CA file to verify the server's TLS certificate (a `tls://` URL, or a server that requires TLS). */
  tlsCaFile?: string;
  /** Client certificate, for servers that verify clients (mutual TLS). */
  tlsCertFile?: string;
  /** Key of `tlsCertFile`. */
  tlsKeyFile?: string;
  /**
   * Prefix of this client's reply subjects. A server with per-user permissions lets each user subscribe only to its
   * own prefix, so no one reads another service's replies (KV values, stored messages). @default `_INBOX_<user>` with
   * a user, else `_INBOX`
   */
  inboxPrefix?: string;
}

/** The reply-subject prefix of a user: what {@link connectNats} uses and what the server config allows it. */
export function inboxPrefixOf(user: string): string {
  return `_INBOX_${user.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** A NATS URL list for messages: any `user:password@` replaced by `***@`. */
export function redactNatsUrl(url: string): string {
  return url.replace(/([a-z][a-z0-9+.-]*:\/\/|^|,\s*)[^/@,\s]*@/gi, '$1***@');
}

/** The nats.js connection options of `auth` (reads the creds file); ConfigError names a missing piece or file. */
export function natsAuthConnectOptions(auth: NatsAuthOptions = {}): Partial<ConnectionOptions> {
  const out: Partial<ConnectionOptions> = {};
  if (auth.credsFile !== undefined && auth.user !== undefined)
    throw new ConfigError('give NATS either a creds file (--nats-creds) or a user (--nats-user), not both');
  if (auth.credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(auth.credsFile);
    } catch (cause) {
      throw new ConfigError(`cannot read the NATS creds file ${auth.credsFile}; check --nats-creds`, { cause });
    }
    out.authenticator = credsAuthenticator(creds);
  }
  if (auth.user !== undefined) {
    if (auth.password === undefined)
      throw new ConfigError(
        `NATS user "${auth.user}" has no password; set FLASHBACK_NATS_PASSWORD or FLASHBACK_NATS_PASSWORD_FILE`,
      );
    out.user = auth.user;
    out.pass = auth.password;
  } else if (auth.password !== undefined) {
    throw new ConfigError('a NATS password was given without a user; add --nats-user');
  }
  if (auth.tlsCaFile !== undefined || auth.tlsCertFile !== undefined || auth.tlsKeyFile !== undefined) {
    if ((auth.tlsCertFile === undefined) !== (auth.tlsKeyFile === undefined))
      throw new ConfigError('a NATS client certificate needs its key: give both --nats-tls-cert and --nats-tls-key');
    out.tls = { caFile: auth.tlsCaFile, certFile: auth.tlsCertFile, keyFile: auth.tlsKeyFile };
  }
  const inboxPrefix = auth.inboxPrefix ?? (auth.user !== undefined ? inboxPrefixOf(auth.user) : undefined);
  if (inboxPrefix !== undefined) out.inboxPrefix = inboxPrefix;
  return out;
}

/** Splits and validates a NATS URL list; throws ConfigError naming the bad entry. */
export function parseNatsServers(url: string): string[] {
  const servers = url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (servers.length === 0)
    throw new ConfigError('NATS URL is empty; use nats://host:port (for example nats://127.0.0.1:4222)');
  for (const s of servers) {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `nats://${s}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      // The parser's own error repeats the input, password included: it is not kept as the cause.
      throw new ConfigError(
        `NATS URL "${redactNatsUrl(s)}" is malformed; use nats://host:port (for example nats://127.0.0.1:4222)`,
      );
    }
    if (!['nats:', 'tls:'].includes(u.protocol) || u.hostname === '' || (u.pathname !== '' && u.pathname !== '/')) {
      throw new ConfigError(
        `NATS URL "${redactNatsUrl(s)}" is not a NATS server address; use nats://host:port or tls://host:port`,
      );
    }
    if (u.username !== '' || u.password !== '')
      throw new ConfigError(
        `NATS URL "${redactNatsUrl(s)}" holds credentials; pass them with --nats-user and FLASHBACK_NATS_PASSWORD(_FILE) instead, which stay out of logs and ps`,
      );
  }
  return servers;
}

/**
 * Connects to NATS. The first connection must succeed (ConnectionError naming
 * the URL otherwise); after that the client reconnects forever with jittered
 * exponential backoff, so a NATS restart never ends a service.
 */
export async function connectNats(o: NatsOptions): Promise<NatsConnection> {
  const { url, name, connectTimeoutMs = 5_000, reconnectDelayMs = 250, maxReconnectDelayMs = 10_000, logger } = o;
  const servers = parseNatsServers(url);
  const authOptions = natsAuthConnectOptions(o.auth);
  // The client calls the delay handler on every turn of its dial loop, also while it merely waits,
  // so the delay is a function of the time since the connection was lost, not of a call count:
  // about half the outage so far (exponential in effect), jittered, within the bounds.
  let lostAt: number | undefined;
  let nc: NatsConnection;
  try {
    nc = await connect({
      ...authOptions,
      servers,
      name,
      timeout: connectTimeoutMs,
      maxReconnectAttempts: -1,
      reconnectDelayHandler: () => {
        const now = Date.now();
        lostAt ??= now;
        const base = Math.min(maxReconnectDelayMs, Math.max(reconnectDelayMs, (now - lostAt) / 2));
        return Math.round(base * (0.5 + Math.random()));
      },
    });
  } catch (cause) {
    if (/authorization|authentication/i.test(String((cause as Error | null)?.message)))
      throw new ConfigError(
        `NATS at ${url} refused our credentials${o.auth?.user ? ` (user "${o.auth.user}")` : ''}; check --nats-user and FLASHBACK_NATS_PASSWORD(_FILE), or --nats-creds`,
        { cause },
      );
    throw new ConnectionError(`cannot connect to NATS at ${url}; is nats-server -js running there?`, { cause });
  }
  lostAt = undefined;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'reconnect') lostAt = undefined;
      if (!logger) continue;
      switch (s.type) {
        case 'disconnect':
          logger.warn({ server: s.server }, 'NATS disconnected; reconnecting');
          break;
        case 'reconnect':
          logger.info({ server: s.server }, 'NATS reconnected');
          break;
        case 'error':
          logger.error({ err: s.error }, 'NATS server error');
          break;
        case 'staleConnection':
          logger.warn('NATS connection stale; reconnecting');
          break;
        case 'ldm':
          logger.warn({ server: s.server }, 'NATS server entering lame duck mode');
          break;
        default:
          break;
      }
    }
  })().catch(() => {});
  return nc;
}

/** A JetStream manager, or a clear error when the server runs without JetStream. */
export async function natsJetStreamManager(nc: NatsConnection): Promise<JetStreamManager> {
  try {
    return await jetstreamManager(nc);
  } catch (cause) {
    throw translateNatsError(cause, `NATS at ${nc.getServer()}`);
  }
}

/**
 * Maps a NATS/JetStream error to ours once, keeping the original as cause:
 * JetStream missing → ConfigError; timeouts, disconnects → ConnectionError (retryable).
 */
export function translateNatsError(err: unknown, what: string): FlashbackError {
  if (err instanceof FlashbackError) return err;
  const name = (err as Error | null)?.constructor?.name ?? '';
  const msg = err instanceof Error ? err.message : String(err);
  if (name === 'JetStreamNotEnabled' || /jetstream is not enabled/i.test(msg)) {
    return new ConfigError(`${what} has no JetStream; start nats-server with -js (and a -sd storage dir)`, {
      cause: err,
    });
  }
  if (err instanceof JetStreamApiError) {
    return new FlashbackError(ErrorCode.Storage, `${what} rejected the request: ${msg}`, { cause: err });
  }
  return new ConnectionError(`${what} did not answer: ${msg}; check that nats-server is running and reachable`, {
    cause: err,
  });
}

/** Stream config of EVENT_STREAM for the given retention and JetStream replicas (1, or 3 on a cluster). */
export function eventStreamConfig(
  maxAgeMs: number,
  duplicateWindowMs: number,
  replicas = 1,
): Partial<StreamConfig> & { name: string } {
  return {
    name: EVENT_STREAM,
    subjects: [...EVENT_STREAM_SUBJECTS],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: maxAgeMs * 1_000_000,
    duplicate_window: duplicateWindowMs * 1_000_000,
    num_replicas: replicas,
    // Direct gets by subject (`$JS.API.DIRECT.GET.FLASHBACK_EVENTS.flashback.events.<node>`) let a server's
    // permissions give an agent its own node's last message and nothing else (agent/replication/resume.ts).
    allow_direct: true,
  };
}

/**
 * Creates EVENT_STREAM, or updates its retention and duplicate window when it
 * exists (idempotent; every service may call it at start-up).
 */
export async function ensureEventStream(
  nc: NatsConnection,
  o: {
    /** How long the stream keeps messages, ms. @default 7 days */
    maxAgeMs?: number;
    /** Window in which a repeated Nats-Msg-Id is dropped, ms. @default 120_000 */
    duplicateWindowMs?: number;
    /**
     * JetStream replicas of the stream (docs/scale.md): 3 on a 3-server cluster. A stream that exists keeps its own
     * count unless this is given. @default 1 for a new stream
     */
    replicas?: number;
  } = {},
): Promise<void> {
  const { maxAgeMs = 7 * DAY_MS, duplicateWindowMs = 120_000, replicas } = o;
  checkReplicas(replicas);
  if (!(maxAgeMs > 0) || !(duplicateWindowMs > 0) || duplicateWindowMs > maxAgeMs) {
    throw new ConfigError(
      `stream retention ${maxAgeMs} ms / duplicate window ${duplicateWindowMs} ms is invalid; both must be > 0 and the window no longer than the retention`,
    );
  }
  const jsm = await natsJetStreamManager(nc);
  try {
    let current: StreamConfig | undefined;
    try {
      current = (await jsm.streams.info(EVENT_STREAM)).config;
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    }
    // A service started without --replicas must not scale an R3 stream down when it updates the retention.
    const config = eventStreamConfig(maxAgeMs, duplicateWindowMs, replicas ?? current?.num_replicas ?? 1);
    // Only an update that changes something is sent: services without the right to change the stream (every one
    // but the admin on a server with permissions, docs/security.md) start against a stream the admin set up.
    if (!current) await jsm.streams.add(config);
    else if (
      current.max_age !== config.max_age ||
      current.duplicate_window !== config.duplicate_window ||
      current.allow_direct !== true ||
      current.num_replicas !== config.num_replicas ||
      EVENT_STREAM_SUBJECTS.some((s) => !current.subjects.includes(s))
    )
      await jsm.streams.update(EVENT_STREAM, config);
  } catch (cause) {
    throw translateNatsError(cause, `stream ${EVENT_STREAM} on NATS at ${nc.getServer()}`);
  }
}

/**
 * Creates or opens the baseline object store (file storage; idempotent). `replicas` applies when it is created (an
 * existing bucket keeps its own). @default 1 replica
 */
export async function ensureBaselineStore(nc: NatsConnection, o: { replicas?: number } = {}): Promise<ObjectStore> {
  checkReplicas(o.replicas);
  await natsJetStreamManager(nc);
  const objm = new Objm(nc);
  try {
    return await objm.create(BASELINE_BUCKET, { storage: ObjStorageType.File, replicas: o.replicas ?? 1 });
  } catch (cause) {
    // Two services creating it at once: the loser's add is refused ("subjects overlap with an existing stream", seen
    // in a loaded test run); the store the winner made is the one wanted.
    const made = await objm.open(BASELINE_BUCKET).catch(() => undefined);
    if (made) return made;
    throw translateNatsError(cause, `object store ${BASELINE_BUCKET} on NATS at ${nc.getServer()}`);
  }
}

/** JetStream allows 1 to 5 replicas; an even count buys no more failures tolerated than the odd one below it. */
export function checkReplicas(replicas: number | undefined): void {
  if (replicas !== undefined && !(Number.isInteger(replicas) && replicas >= 1 && replicas <= 5))
    throw new ConfigError(`JetStream replicas ${replicas} is invalid; use 1 to 5 (3 on a 3-server cluster)`);
}
