import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrorCode, InputError, ProtocolError } from '../core/errors.js';

/** `--appenddirname` the restore server is started with (Redis 7.0's default). */
export const AOF_DIR_NAME = 'appendonlydir';
/** `--appendfilename` (Redis 7.0's default); the file names below derive from it as Redis derives them. */
export const AOF_FILE_NAME = 'appendonly.aof';
const BASE_NAME = `${AOF_FILE_NAME}.1.base.rdb`;
const INCR_NAME = `${AOF_FILE_NAME}.1.incr.aof`;
const MANIFEST_NAME = `${AOF_FILE_NAME}.manifest`;

/** The files of a multi-part AOF directory made by {@link createAofDir}. */
export interface AofDirPaths {
  /** The data dir to start redis-server in (`--dir`). */
  dir: string;
  /** `dir/appendonlydir`. */
  aofDir: string;
  /** `appendonly.aof.1.base.rdb`: the baseline RDB; listed in the manifest only when `base` was true. */
  baseRdbPath: string;
  /** `appendonly.aof.1.incr.aof`: RESP commands applied after the base (created empty). */
  incrPath: string;
  /** `appendonly.aof.manifest`. */
  manifestPath: string;
  /** Whether the manifest lists the base RDB. */
  hasBase: boolean;
}

/** Options of {@link createAofDir}. */
export interface CreateAofDirOptions {
  /**
   * List a base RDB in the manifest (write it with {@link writeBaseRdb} before loading). Without one the history starts
   * from an empty dataset: Redis 7.0 loads a manifest with only an incr file (checked on 7.0.15). @default true
   */
  base?: boolean;
}

/**
 * Creates `dir/appendonlydir` with a manifest exactly as Redis 7.0 writes one (`file appendonly.aof.1.base.rdb
 * seq 1 type b` / `file appendonly.aof.1.incr.aof seq 1 type i`, one per line) and an empty incr file.
 * Refuses a dir that already holds an AOF, so a restore never mixes with an old one.
 */
export async function createAofDir(dir: string, options: CreateAofDirOptions = {}): Promise<AofDirPaths> {
  const { base = true } = options;
  const aofDir = path.join(dir, AOF_DIR_NAME);
  await mkdir(aofDir, { recursive: true });
  const present = await readdir(aofDir);
  if (present.length > 0) {
    throw new InputError(
      ErrorCode.BadInput,
      `AOF dir ${aofDir} is not empty (${present.slice(0, 3).join(', ')}${present.length > 3 ? ' …' : ''}); restore into a new, empty directory`,
    );
  }
  const paths: AofDirPaths = {
    dir,
    aofDir,
    baseRdbPath: path.join(aofDir, BASE_NAME),
    incrPath: path.join(aofDir, INCR_NAME),
    manifestPath: path.join(aofDir, MANIFEST_NAME),
    hasBase: base,
  };
  await writeFile(paths.incrPath, '');
  const lines = [...(base ? [`file ${BASE_NAME} seq 1 type b`] : []), `file ${INCR_NAME} seq 1 type i`];
  await writeFile(paths.manifestPath, lines.map((l) => `${l}\n`).join(''));
  return paths;
}

/**
 * Bytes of an RDB: a Node stream, a web ReadableStream (e.g. a NATS object store get) or any async iterable of chunks.
 */
export type RdbSource = AsyncIterable<Uint8Array> | NodeJS.ReadableStream | ReadableStream<Uint8Array>;

/**
 * Streams an RDB to `file` (the base of an AOF dir). Checks the `REDIS0…` magic on the way, so a wrong object
 * fails here with a clear message rather than as a load error of redis-server.
 * @returns the number of bytes written.
 */
export async function writeBaseRdb(
  file: string,
  source: RdbSource,
  /** Called with the header's format version before anything is written; throws to refuse the RDB. */
  checkVersion?: (rdbVersion: number) => void,
): Promise<{ bytes: number }> {
  const counter = { bytes: 0 };
  const chunks = isWebStream(source)
    ? Readable.fromWeb(source as import('node:stream/web').ReadableStream<Uint8Array>)
    : source;
  const out = createWriteStream(file);
  try {
    await pipeline(checkRdbMagic(chunks as AsyncIterable<Uint8Array | string>, file, counter, checkVersion), out);
  } catch (err) {
    // A refused or broken RDB leaves no partial base behind for a later look to mistake for one. Only once the write
    // stream has closed: its open may still be under way and would create the file after the rm (seen under load).
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    await rm(file, { force: true });
    throw err;
  }
  return counter;
}

const RDB_MAGIC = Buffer.from('REDIS');
/** "REDIS" and 4 version digits. */
const RDB_HEADER_BYTES = 9;

async function* checkRdbMagic(
  source: AsyncIterable<Uint8Array | string>,
  file: string,
  counter: { bytes: number },
  checkVersion?: (rdbVersion: number) => void,
): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  for await (const c of source) {
    const b = typeof c === 'string' ? Buffer.from(c, 'latin1') : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    counter.bytes += b.length;
    if (head !== undefined) {
      head = Buffer.concat([head, b]);
      if (head.length < RDB_HEADER_BYTES) continue;
      assertRdbHeader(head, file);
      checkVersion?.(Number(head.toString('latin1', 5, RDB_HEADER_BYTES)));
      yield head;
      head = undefined;
      continue;
    }
    yield b;
  }
  if (head !== undefined) assertRdbHeader(head, file);
}

function assertRdbHeader(head: Buffer, file: string): void {
  const version = head.toString('latin1', 5, RDB_HEADER_BYTES);
  if (head.length < RDB_HEADER_BYTES || !head.subarray(0, 5).equals(RDB_MAGIC) || !/^\d{4}$/.test(version)) {
    const shown = JSON.stringify(head.toString('latin1', 0, Math.min(head.length, 16)));
    throw new ProtocolError(
      `baseline for ${file} is not an RDB (starts with ${shown}, expected "REDIS0…"); check that the baseline object is complete and not a tail`,
    );
  }
}

function isWebStream(s: RdbSource): boolean {
  return typeof (s as ReadableStream<Uint8Array>).getReader === 'function';
}
