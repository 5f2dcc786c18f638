import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, InputError } from './errors.js';

/**
 * RDB files written by restore jobs (`rdb` of `POST /restores`) go into one export dir (`--export-dir`) under a
 * plain file name: no path, no `..`, no hidden name, nothing that leaves the dir.
 */

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** `name` when it is a plain file name, else InputError BAD_INPUT naming the rule. */
export function checkExportName(name: string): string {
  if (!NAME.test(name) || name.includes('..'))
    throw new InputError(
      ErrorCode.BadInput,
      `rdb "${name.length > 80 ? `${name.slice(0, 80)}…` : name}" is not a plain file name: a restore job writes only into the restorer's export dir, so give a name of letters, digits, '.', '_' and '-' (starting with a letter or digit, no '..', no '/'), e.g. "orders-2026-08-03.rdb"`,
    );
  return name;
}

/**
 * The path of export `name` in `dir`; refuses (InputError BAD_INPUT) a name whose entry in the dir is a symlink or
 * not a regular file. An existing regular file is replaced (written beside it, then renamed over it).
 */
export async function exportPath(dir: string, name: string): Promise<string> {
  const file = path.join(path.resolve(dir), checkExportName(name));
  try {
    const st = await lstat(file);
    if (st.isSymbolicLink() || !st.isFile())
      throw new InputError(
        ErrorCode.BadInput,
        `rdb "${name}" is ${st.isSymbolicLink() ? 'a symlink' : 'not a regular file'} in the export dir; a restore job never writes through one: pick another name`,
      );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return file;
}
