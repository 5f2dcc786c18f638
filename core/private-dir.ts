import { chmod, lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from './errors.js';

/**
 * Makes `dir` a directory only this process's user can enter (mode 700) and returns its absolute path: created if
 * missing; refused (ConfigError) when it is a symlink, not a directory, or owned by another user (who could read or
 * swap what we write there, e.g. a dir pre-made in /tmp).
 * @param what names the dir in messages (`instances dir`, `export dir`).
 */
export async function ensurePrivateDir(dir: string, what: string): Promise<string> {
  const abs = path.resolve(dir);
  await mkdir(abs, { recursive: true, mode: 0o700 });
  const st = await lstat(abs);
  if (st.isSymbolicLink() || !st.isDirectory())
    throw new ConfigError(
      `${what} ${abs} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}; give a real directory of this user`,
    );
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new ConfigError(
      `${what} ${abs} belongs to uid ${st.uid}, not to this process's uid ${uid}: its owner could read or replace what is written there; use a directory of your own`,
    );
  if ((st.mode & 0o077) !== 0) await chmod(abs, 0o700);
  return abs;
}
