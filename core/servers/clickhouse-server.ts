import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.js';
import { resolveBinary, retryOnPortInUse, spawnServer, urlHost, type ServerProcess } from './server-process.js';

/** How to start a clickhouse-server. */
export interface ClickHouseServerOptions {
  /**
   * `clickhouse-server` (Debian's 18.16) or the single `clickhouse` binary of current releases (run as `clickhouse
   * server`). @default whichever is found first, in that order, on PATH or in /usr/sbin, /usr/bin …
   */
  bin?: string;
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /**
   * HTTP port (the one clients and `url` use). @default a free port (retried with another if it gets taken meanwhile)
   */
  httpPort?: number;
  /** Native TCP port (clickhouse-client). @default a free port */
  tcpPort?: number;
  /** Data dir: data, tmp, config, users and logs. @default a new temp dir, removed on stop() */
  dir?: string;
  /** Server time zone, so DateTime columns read the same on every machine. @default 'UTC' */
  timezone?: string;
  /** Keep running after our process exits. @default false */
  detached?: boolean;
  /** Own process group, stopped with us (see SpawnServerSpec.processGroup). @default false */
  processGroup?: boolean;
  /** How long to wait for GET /ping to answer "Ok.". @default 30_000 */
  readyTimeoutMs?: number;
  /**
   * Passwords and limits of the server's users (docs/security.md). @default none: user `default` without a password
   * from loopback, full rights (tests)
   */
  users?: ClickHouseUsers;
}

/** The users `flashback up` creates: an admin, the API's own reader, and the reader of users' SQL. */
export interface ClickHouseUsers {
  /** Password of `default`, the admin (the sink and the restorer write with it). */
  adminPassword: string;
  /** Password of {@link CLICKHOUSE_API_USER}: readonly=2 (no writes, no DDL; settings may change), for the API's own queries. */
  apiPassword: string;
  /** Password of {@link CLICKHOUSE_SQL_USER}: readonly=1 and the limits of {@link sqlLimits}, for `POST /sql`. */
  sqlPassword: string;
  /** Limits of {@link CLICKHOUSE_SQL_USER}'s profile. */
  sqlLimits?: SqlProfileLimits;
}

/** Limits of the read-only SQL profile; the server enforces them, a query cannot change them (readonly=1). */
export interface SqlProfileLimits {
  /** @default 30 */
  maxExecutionSeconds?: number;
  /** @default 10_000 */
  maxResultRows?: number;
  /** @default 16 MiB */
  maxResultBytes?: number;
  /** Memory one query may use. @default 1 GiB */
  maxMemoryBytes?: number;
  /** Queries of this user running at once. @default 4 */
  maxConcurrentQueries?: number;
}

/** The API's own queries (history, windows): reads only. */
export const CLICKHOUSE_API_USER = 'flashback_api';
/** Users' SQL through the API: reads only, bounded by the server. */
export const CLICKHOUSE_SQL_USER = 'flashback_sql';

/** A running clickhouse-server. */
export interface ClickHouseServerProcess extends ServerProcess {
  /** Native TCP port. */
  readonly tcpPort: number;
  /** `SELECT version()`, e.g. `18.16.1`; undefined if the query failed. */
  readonly version?: string;
}

/**
 * Starts clickhouse-server with a config of its own in `dir` (root element `<yandex>`, which 18.16
 * needs and current releases still accept): listening on `host` only, no interserver port, user
 * `default` without password from loopback only. Resolves once it logged "Ready for connections"
 * and GET /ping answers "Ok.".
 */
export async function startClickHouseServer(o: ClickHouseServerOptions = {}): Promise<ClickHouseServerProcess> {
  const { host = '127.0.0.1', timezone = 'UTC', detached = false, readyTimeoutMs = 30_000 } = o;
  const bin = resolveBinary('clickhouse-server', ['clickhouse-server', 'clickhouse'], o.bin);
  // Current releases ship one multi-call binary: `clickhouse server …`.
  const subcommand = path.basename(bin) === 'clickhouse' ? ['server'] : [];
  return retryOnPortInUse(
    async () => {
      const port = o.httpPort ?? (await freePort(host));
      let tcpPort = o.tcpPort ?? (await freePort(host));
      while (tcpPort === port) tcpPort = await freePort(host);
      const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'flashback-clickhouse-'));
      const logFile = path.join(dir, 'clickhouse-server.log');
      const configFile = path.join(dir, 'config.xml');
      for (const sub of ['data', 'tmp', 'user_files', 'format_schemas', 'access', 'user_scripts'])
        mkdirSync(path.join(dir, sub), { recursive: true });
      writeFileSync(configFile, serverConfig({ host, port, tcpPort, dir, logFile, timezone }));
      const usersFile = path.join(dir, 'users.xml');
      // Mode 600 before the first byte: it holds password hashes.
      writeFileSync(usersFile, usersConfig(o.users), { mode: 0o600 });
      chmodSync(usersFile, 0o600);
      const url = `http://${urlHost(host)}:${port}`;
      const server = await spawnServer({
        name: 'clickhouse-server',
        bin,
        args: [...subcommand, `--config-file=${configFile}`],
        host,
        port,
        dir,
        url,
        logFile,
        detached,
        processGroup: o.processGroup,
        readyTimeoutMs,
        removeDir: o.dir === undefined,
        // It waits for open keep-alive connections (up to keep_alive_timeout) before it exits.
        stopTimeoutMs: 15_000,
        probe: async (_pid, signal) => {
          // The log is ours alone, so this tells our server from another one that took the port.
          // `connection: close` everywhere here: an idle keep-alive socket of ours would delay its shutdown.
          const log = await readFile(logFile, 'utf8').catch(() => '');
          if (!log.includes('Ready for connections')) return false;
          const res = await fetch(`${url}/ping`, { headers: { connection: 'close' }, signal });
          return res.ok && (await res.text()).trim() === 'Ok.';
        },
      });
      const login: Record<string, string> = o.users
        ? { 'x-clickhouse-user': 'default', 'x-clickhouse-key': o.users.adminPassword }
        : {};
      const version = await fetch(`${url}/?query=${encodeURIComponent('SELECT version()')}`, {
        headers: { connection: 'close', ...login },
        signal: AbortSignal.timeout(5_000),
      })
        .then(async (res) => (res.ok ? (await res.text()).trim() : undefined))
        .catch(() => undefined);
      return Object.assign(server, { tcpPort, version });
    },
    o.httpPort === undefined || o.tcpPort === undefined,
  );
}

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function serverConfig(c: {
  host: string;
  port: number;
  tcpPort: number;
  dir: string;
  logFile: string;
  timezone: string;
}): string {
  const sub = (name: string) => xml(path.join(c.dir, name) + '/');
  return `<?xml version="1.0"?>
<yandex>
    <logger>
        <!-- information, not less: readiness is read from the "Ready for connections" line -->
        <level>information</level>
        <log>${xml(c.logFile)}</log>
        <errorlog>${xml(path.join(c.dir, 'clickhouse-server.err.log'))}</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>${xml(c.host)}</listen_host>
    <http_port>${c.port}</http_port>
    <tcp_port>${c.tcpPort}</tcp_port>
    <path>${sub('data')}</path>
    <tmp_path>${sub('tmp')}</tmp_path>
    <user_files_path>${sub('user_files')}</user_files_path>
    <format_schema_path>${sub('format_schemas')}</format_schema_path>
    <access_control_path>${sub('access')}</access_control_path>
    <user_scripts_path>${sub('user_scripts')}</user_scripts_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>${xml(c.timezone)}</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
</yandex>
`;
}

function usersConfig(users: ClickHouseUsers | undefined): string {
  const loopback = `<networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>`;
  const hash = (pw: string) => createHash('sha256').update(pw).digest('hex');
  const user = (name: string, password: string | undefined, profile: string) => `        <${name}>
            ${password === undefined ? '<password></password>' : `<password_sha256_hex>${hash(password)}</password_sha256_hex>`}
            ${loopback}
            <profile>${profile}</profile>
            <quota>default</quota>
        </${name}>`;
  const l = users?.sqlLimits ?? {};
  const readers = users
    ? `
        <${CLICKHOUSE_API_USER}>
            <readonly>2</readonly>
        </${CLICKHOUSE_API_USER}>
        <${CLICKHOUSE_SQL_USER}>
            <readonly>1</readonly>
            <max_execution_time>${l.maxExecutionSeconds ?? 30}</max_execution_time>
            <max_result_rows>${l.maxResultRows ?? 10_000}</max_result_rows>
            <max_result_bytes>${l.maxResultBytes ?? 16 * 1024 * 1024}</max_result_bytes>
            <result_overflow_mode>throw</result_overflow_mode>
            <max_memory_usage>${l.maxMemoryBytes ?? 1024 * 1024 * 1024}</max_memory_usage>
            <max_concurrent_queries_for_user>${l.maxConcurrentQueries ?? 4}</max_concurrent_queries_for_user>
            <output_format_json_quote_64bit_integers>1</output_format_json_quote_64bit_integers>
        </${CLICKHOUSE_SQL_USER}>`
    : '';
  return `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>${readers}
    </profiles>
    <users>
${user('default', users?.adminPassword, 'default')}${
    users
      ? `
${user(CLICKHOUSE_API_USER, users.apiPassword, CLICKHOUSE_API_USER)}
${user(CLICKHOUSE_SQL_USER, users.sqlPassword, CLICKHOUSE_SQL_USER)}`
      : ''
  }
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
`;
}
