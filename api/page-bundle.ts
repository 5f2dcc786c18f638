import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, FlashbackError } from '../core/errors.js';

/*
 * The timeline page's bundle (web/timeline.ts and web/docs.ts with their CSS and uPlot), made by esbuild at build
 * time: `npm run build` (so `npm ci`) writes it to dist/web/, and the built API serves those files. Run from the
 * sources (tsx: tests, bin/flashback-dev.js) there is no dist/web/, and the same build runs in memory on first use.
 */

/** One bundled file. */
export interface Asset {
  type: string;
  body: Uint8Array;
}

/** The repository's web/ folder, from the sources (api/) or the build (dist/api/). */
export function webDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'web');
    if (existsSync(path.join(candidate, 'timeline.ts'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new FlashbackError(
    ErrorCode.Internal,
    `the page sources (web/timeline.ts) are not found above ${fileURLToPath(import.meta.url)}; install from the repository, web/ included`,
  );
}

/** dist/web/ of a build: next to dist/api/ (this module, built). */
export function builtPageDir(): string {
  return path.join(path.dirname(path.dirname(fileURLToPath(import.meta.url))), 'web');
}

const typeOf = (name: string) => (name.endsWith('.css') ? 'text/css' : 'text/javascript');

/** Bundles the page with esbuild (minified ESM, no CDN: everything from node_modules). */
export async function buildPage(): Promise<Map<string, Asset>> {
  const { build } = await import('esbuild');
  const dir = webDir();
  const out = await build({
    entryPoints: { timeline: path.join(dir, 'timeline.ts'), docs: path.join(dir, 'docs.ts') },
    absWorkingDir: path.dirname(dir),
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    outdir: '/ui',
    logLevel: 'silent',
    legalComments: 'none',
  });
  const files = new Map<string, Asset>();
  for (const f of out.outputFiles) files.set(path.basename(f.path), { type: typeOf(f.path), body: f.contents });
  return files;
}

/** Writes the bundle to `dir` (the build step). */
export async function writePage(dir: string): Promise<string[]> {
  const files = await buildPage();
  await mkdir(dir, { recursive: true });
  for (const [name, asset] of files) await writeFile(path.join(dir, name), asset.body);
  return [...files.keys()];
}

/** The bundle written to `dir`, or undefined when there is none (a run from the sources). */
export async function readPage(dir: string): Promise<Map<string, Asset> | undefined> {
  if (!existsSync(path.join(dir, 'timeline.js'))) return undefined;
  const files = new Map<string, Asset>();
  for (const name of await readdir(dir))
    if (/\.(js|css)$/.test(name)) files.set(name, { type: typeOf(name), body: await readFile(path.join(dir, name)) });
  return files;
}

let bundle: Promise<Map<string, Asset>> | undefined;

/** The page's files: the build's, else bundled once per process; a failed bundle is tried again next time. */
export function pageBundle(prebuilt = builtPageDir()): Promise<Map<string, Asset>> {
  bundle ??= (async () => (await readPage(prebuilt)) ?? (await buildPage()))().catch((err: unknown) => {
    bundle = undefined;
    throw new FlashbackError(ErrorCode.Internal, `the timeline page did not build: ${(err as Error).message}`, {
      cause: err,
    });
  });
  return bundle;
}

// `node dist/api/page-bundle.js`: the build step (package.json "build") writes dist/web/.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const dir = builtPageDir();
  const names = await writePage(dir);
  process.stdout.write(`page bundle: ${names.join(', ')} in ${dir}\n`);
}
