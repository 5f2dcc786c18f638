import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, closeSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ConfigError, ErrorCode, FlashbackError } from '../errors.js';

/** A server (redis-server, nats-server, clickhouse-server) we started as a process of its own. */
export interface ServerProcess {
  readonly pid: number;
  readonly host: string;
  /** The port clients use (ClickHouse: HTTP). */
  readonly port: number;
  /** Its data dir. */
  readonly dir: string;
  /** `redis://127.0.0.1:P`, `nats://127.0.0.1:P` or `http://127.0.0.1:P` (ClickHouse HTTP). */
  readonly url: string;
  /** Where the server and its stdout/stderr write. */
  readonly logFile: string;
  /** Stops the server; idempotent; resolves once the process is gone. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A server process exited, or did not become ready, while we started it. */
export class ServerStartError extends FlashbackError {
  /** True when the log says the port was taken: a launcher that picked the port itself retries with another. */
  readonly portInUse: boolean;
  /** The last lines of the server's log. */
  readonly logTail: string;
  constructor(message: string, options: ErrorOptions & { logTail: string }) {
    super(ErrorCode.Internal, message, options);
    this.logTail = options.logTail;
    this.portInUse = /address already in use/i.test(options.logTail);
  }
}

const extraBinDirs = ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin', '/sbin', '/bin'];

/**
 * The path of an executable named `name` on PATH or in the sbin/bin dirs (often not on a user's PATH); undefined if
 * none.
 */
export function findExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...(env.PATH ?? '').split(path.delimiter).filter(Boolean), ...extraBinDirs];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The executable for a launcher: `bin` when given (must exist), else the first of `names` found; throws ConfigError
 * naming the way out.
 */
export function resolveBinary(label: string, names: readonly string[], bin?: string): string {
  if (bin !== undefined) {
    const found = findExecutable(bin);
    if (!found)
      throw new ConfigError(
        `${label} binary "${bin}" is not an executable file; pass the path of ${label} or install it with deploy/install-servers.sh`,
      );
    return found;
  }
  for (const name of names) {
    const found = findExecutable(name);
    if (found) return found;
  }
  throw new ConfigError(
    `${label} not found (looked for ${names.join(', ')} on PATH and in ${extraBinDirs.join(', ')}); install it with deploy/install-servers.sh or pass its path`,
  );
}

/** The last `lines` lines of a log file ('' when it does not exist). */
export async function readLogTail(file: string, lines = 20): Promise<string> {
  const maxBytes = 16_384;
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buf = Buffer.alloc(size - start);
    await handle.read(buf, 0, buf.length, start);
    return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } finally {
    await handle.close();
  }
}

/** Whether `pid` is a running process (a zombie waiting to be reaped counts as gone). */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S …"; comm may contain spaces and parentheses, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no procfs (macOS): kill(0) is all we know
  }
}

async function waitForPidGone(pid: number, timeoutMs: number, exited?: Promise<unknown>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let done = false;
  void exited?.then(() => (done = true));
  while (Date.now() < deadline) {
    if (done || !isPidAlive(pid)) return true;
    await (exited ? Promise.race([delay(20), exited]) : delay(20));
  }
  return !isPidAlive(pid);
}

/**
 * Stops any process by pid — e.g. a detached restored redis-server started by an earlier
 * `flashback restore` — with SIGTERM, then SIGKILL after `timeoutMs`; resolves once it is gone.
 */
export async function stopPid(pid: number, options: { timeoutMs?: number } = {}): Promise<void> {
  const { timeoutMs = 10_000 } = options;
  if (!signal(pid, 'SIGTERM')) return;
  if (await waitForPidGone(pid, timeoutMs)) return;
  signal(pid, 'SIGKILL');
  if (!(await waitForPidGone(pid, 5_000)))
    throw new FlashbackError(
      ErrorCode.Internal,
      `process ${pid} is still running after SIGKILL; check it with ps -p ${pid}`,
    );
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Children that must not outlive us: sent SIGTERM if our process exits without stopping them. */
const attached = new Set<ChildProcess>();
let exitHookInstalled = false;
function attach(child: ChildProcess): void {
  attached.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of attached) c.kill('SIGTERM');
  });
}

/**
 * Sends `signal` to every server started with `processGroup` (not detached) that still runs, at once; returns their
 * pids. For a forced stop: the exit hook's SIGTERM would leave a slow-stopping server running after we are gone.
 */
export function killAttachedServers(signal: NodeJS.Signals = 'SIGKILL'): number[] {
  const pids: number[] = [];
  for (const c of attached) if (c.pid !== undefined && c.exitCode === null && c.kill(signal)) pids.push(c.pid);
  return pids;
}

/** What a launcher tells {@link spawnServer}. */
export interface SpawnServerSpec {
  /** Name for messages, e.g. `redis-server`. */
  name: string;
  /** Executable path (see {@link resolveBinary}). */
  bin: string;
  /** Its full argument list. */
  args: readonly string[];
  /** Interface it binds; reported as `ServerProcess.host`. */
  host: string;
  /** Port clients use; reported as `ServerProcess.port` and named in errors. */
  port: number;
  /** Its data dir, also the working directory of the process. */
  dir: string;
  /** Reported as `ServerProcess.url`. */
  url: string;
  /** Receives the process's stdout and stderr (the server may log there too). */
  logFile: string;
  /** Keep running after our process exits (own process group, not waited for). */
  detached: boolean;
  /**
   * Own process group, but still stopped when our process exits: a terminal's Ctrl-C then reaches only us, and we
   * stop the server after what depends on it has flushed (flashback up). @default false
   */
  processGroup?: boolean;
  /** How long `probe` may take to say yes before the start fails. */
  readyTimeoutMs: number;
  /**
   * Resolves true once the server serves requests; called repeatedly until it does or the deadline passes.
   * `signal` aborts when this attempt is abandoned: release its sockets then.
   */
  probe: (pid: number, signal: AbortSignal) => Promise<boolean>;
  /** Asks the server to exit cleanly; SIGTERM is sent when absent or when it throws. */
  shutdown?: () => Promise<void>;
  /** Remove `dir` once the process is gone (the launcher created it). */
  removeDir: boolean;
  /** How long stop() waits for a clean exit before SIGKILL. @default 10_000 */
  stopTimeoutMs?: number;
  /** The process's environment. @default process.env */
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts a server process and resolves once `probe` says it is ready; rejects with ServerStartError (log tail included)
 * if it exits or times out first.
 */
export async function spawnServer(spec: SpawnServerSpec): Promise<ServerProcess> {
  const { name, bin, args, dir, logFile, detached, readyTimeoutMs, probe } = spec;
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(bin, args, {
      cwd: dir,
      detached: detached || spec.processGroup === true,
      stdio: ['ignore', logFd, logFd],
      env: spec.env ?? process.env,
    });
  } finally {
    closeSync(logFd);
  }
  let exitInfo: string | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, sig) => {
      exitInfo = sig ? `was killed by ${sig}` : `exited with code ${code}`;
      attached.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = err;
      exitInfo ??= `could not be started (${err.message})`;
      resolve();
    });
  });
  if (detached) child.unref();
  else attach(child);

  const where = `${name} on ${spec.host}:${spec.port} (dir ${dir})`;
  const fail = async (what: string, cause?: unknown): Promise<never> => {
    if (child.pid !== undefined && exitInfo === undefined) {
      child.kill('SIGKILL');
      await waitForPidGone(child.pid, 5_000, exited);
    }
    const logTail = await readLogTail(logFile);
    if (spec.removeDir) rmSync(dir, { recursive: true, force: true });
    const shown = logTail ? `; last lines of its log:\n${logTail}` : '';
    throw new ServerStartError(`${where} ${what}${shown}`, { cause: cause ?? spawnError, logTail });
  };

  const deadline = Date.now() + readyTimeoutMs;
  let lastProbeError: unknown;
  for (;;) {
    if (exitInfo !== undefined) return fail(`${exitInfo} before it was ready`);
    // A probe may hang (something else holds the port and never answers): bound it, and stop waiting when the process
    // exits.
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(), 2_000);
    try {
      const aborted = new Promise<never>((_, reject) =>
        attempt.signal.addEventListener('abort', () => reject(new Error('probe timed out')), { once: true }),
      );
      if (await Promise.race([probe(child.pid!, attempt.signal), aborted, exited.then(() => false)])) break;
    } catch (err) {
      lastProbeError = err;
    } finally {
      clearTimeout(timer);
      attempt.abort();
    }
    if (exitInfo !== undefined) return fail(`${exitInfo} before it was ready`);
    if (Date.now() >= deadline)
      return fail(
        `was not ready after ${readyTimeoutMs} ms; raise readyTimeoutMs if it loads a large dataset`,
        lastProbeError,
      );
    await Promise.race([delay(50), exited]);
  }

  const pid = child.pid!;
  const stopTimeoutMs = spec.stopTimeoutMs ?? 10_000;
  let stopping: Promise<void> | undefined;
  const doStop = async (): Promise<void> => {
    if (exitInfo === undefined) {
      try {
        if (!spec.shutdown) throw new Error('no shutdown command');
        await spec.shutdown();
      } catch {
        child.kill('SIGTERM');
      }
      if (!(await waitForPidGone(pid, stopTimeoutMs, exited))) {
        child.kill('SIGKILL');
        if (!(await waitForPidGone(pid, 5_000, exited)))
          throw new FlashbackError(
            ErrorCode.Internal,
            `${where} (pid ${pid}) is still running after SIGKILL; check it with ps -p ${pid}`,
          );
      }
    }
    attached.delete(child);
    if (spec.removeDir) rmSync(dir, { recursive: true, force: true });
  };
  const stop = (): Promise<void> => (stopping ??= doStop());
  return {
    pid,
    host: spec.host,
    port: spec.port,
    dir,
    url: spec.url,
    logFile,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Runs `start` until it does not fail for a taken port, at most `attempts` times.
 * Only for launchers that picked their ports themselves: a port the caller named is never swapped.
 */
export async function retryOnPortInUse<T>(start: () => Promise<T>, portsPicked: boolean, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start();
    } catch (err) {
      if (!(portsPicked && err instanceof ServerStartError && err.portInUse && i < attempts)) throw err;
    }
  }
}

/** `[host]` for IPv6 literals, for URLs. */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
