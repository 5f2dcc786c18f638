import { existsSync, readFileSync } from 'node:fs';
import { chmod, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isPidAlive } from '../core/servers/server-process.js';

/** What `flashback up` tells the CLI commands run beside it, in `<data dir>/context.json` (mode 600). */
export interface StackContext {
  /** The API of the stack. */
  apiUrl: string;
  /** File holding the API token (the token itself is never in the context). */
  tokenFile?: string;
  /** ClickHouse HTTP URL (may carry credentials: the file is mode 600). */
  clickhouseUrl: string;
  natsUrl: string;
  /** Pid of the `flashback up` that wrote it; a context whose pid is gone is stale. */
  pid: number;
  /** The data dir, absolute. */
  dataDir: string;
}

/** The context file's name inside a data dir. */
export const CONTEXT_FILE = 'context.json';

/** Writes the context (mode 600: it may name a ClickHouse password); returns a function that removes it. */
export async function writeContext(ctx: StackContext): Promise<() => Promise<void>> {
  const file = path.join(ctx.dataDir, CONTEXT_FILE);
  await writeFile(file, JSON.stringify(ctx, null, 2) + '\n', { mode: 0o600 });
  // writeFile's mode applies only when it creates the file.
  await chmod(file, 0o600);
  return () => rm(file, { force: true });
}

/** A context found on disk, and whether its `up` still runs. */
export interface FoundContext {
  context: StackContext;
  file: string;
  running: boolean;
}

/**
 * The context of a local stack: `$FLASHBACK_DATA_DIR/context.json` when that is set, else the nearest
 * `.flashback/context.json` from `cwd` upwards (the default `--data-dir` of `up`). Undefined when there is none.
 */
export function findContext(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): FoundContext | undefined {
  const candidates: string[] = [];
  if (env.FLASHBACK_DATA_DIR) candidates.push(path.resolve(cwd, env.FLASHBACK_DATA_DIR, CONTEXT_FILE));
  else {
    for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
      candidates.push(path.join(dir, '.flashback', CONTEXT_FILE));
      if (path.dirname(dir) === dir) break;
    }
  }
  for (const file of candidates) {
    if (!existsSync(file)) continue;
    let context: StackContext;
    try {
      context = JSON.parse(readFileSync(file, 'utf8')) as StackContext;
    } catch {
      continue;
    }
    if (typeof context.apiUrl !== 'string' || typeof context.pid !== 'number') continue;
    return { context, file, running: isPidAlive(context.pid) };
  }
  return undefined;
}

/** The token in the context's token file, if readable. */
export function contextToken(ctx: StackContext): string | undefined {
  if (!ctx.tokenFile) return undefined;
  try {
    return readFileSync(ctx.tokenFile, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
