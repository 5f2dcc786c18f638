import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './stack.js';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'flashback-dev.js');

/** Options of {@link spawnAgent}. */
export interface AgentProcessOptions {
  redisUrl: string;
  natsUrl: string;
  nodeId: string;
  /** Capture mode. @default 'replication' */
  source?: 'replication' | 'monitor';
  /** Where the agent's stdout and stderr (its pino log) go; one file per process (it is truncated). */
  logFile: string;
  /** More `flashback agent` flags. @default [] */
  args?: string[];
}

/** A `flashback agent` running as a process of its own (`node bin/flashback-dev.js agent …`, the TypeScript sources), so a test can kill -9 it. */
export interface AgentProcess {
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code or signal once the process is gone. */
  readonly exited: Promise<number | NodeJS.Signals>;
  /** Sends `signal` (SIGKILL by default) and resolves once the process is gone; idempotent. */
  kill(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
  /** The agent's log lines (pino JSON) parsed, with lines that are not JSON as `{ msg: line }`. */
  log(): Promise<{ msg?: string; [field: string]: unknown }[]>;
  /** Waits until the log holds a line whose `msg` is `msg`; fails early if the process exits. */
  waitForLog(msg: string, timeoutMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
// A test that crashes before its after() still must not leave agents behind.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Starts `flashback agent` as a child, without the caller's FLASHBACK_* environment. */
export function spawnAgent(o: AgentProcessOptions): AgentProcess {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLASHBACK_')));
  const out = openSync(o.logFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      [
        BIN,
        'agent',
        '--redis',
        o.redisUrl,
        '--nats',
        o.natsUrl,
        '--node-id',
        o.nodeId,
        '--source',
        o.source ?? 'replication',
        ...(o.args ?? []),
      ],
      { env: { ...env, FLASHBACK_LOG_LEVEL: 'debug' }, stdio: ['ignore', out, out] },
    );
  } finally {
    closeSync(out);
  }
  if (child.pid === undefined) throw new Error(`could not start the agent process for ${o.nodeId}`);
  live.add(child);
  const pid = child.pid;
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve(signal ?? code ?? -1);
    }),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const log = async () =>
    (await readFile(o.logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        try {
          return JSON.parse(line) as { msg?: string };
        } catch {
          return { msg: line };
        }
      });
  return {
    pid,
    logFile: o.logFile,
    exited,
    async kill(signal = 'SIGKILL') {
      if (!gone) child.kill(signal);
      return exited;
    },
    log,
    async waitForLog(msg, timeoutMs = 30_000) {
      const found = await waitFor(
        `"${msg}" in the log of agent process ${pid} (${o.logFile})`,
        async () => ((await log()).some((l) => l.msg === msg) ? 'logged' : gone ? 'exited' : undefined),
        timeoutMs,
      );
      if (found === 'exited') throw new Error(`agent process ${pid} exited before logging "${msg}"; see ${o.logFile}`);
    },
  };
}
