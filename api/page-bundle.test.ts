// The timeline page is bundled at build time (dist/web/, written by `npm run build`), and served from there; run
// from the sources, with no such files, the same bundle is made in memory.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { pageBundle, readPage, writePage } from './page-bundle.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('the build writes the page bundle; the API serves the written files, not a new bundle', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fb-page-'));
  dirs.push(dir);
  assert.equal(await readPage(dir), undefined, 'no bundle written yet: nothing to read');
  const names = await writePage(dir);
  assert.deepEqual(names.sort(), ['docs.css', 'docs.js', 'timeline.css', 'timeline.js']);
  const written = (await readPage(dir))!;
  assert.ok(written.get('timeline.js')!.body.length > 10_000, 'the chart library is bundled in');
  assert.equal(written.get('timeline.css')!.type, 'text/css');
  // What is served is what the build wrote (marked here), not a fresh esbuild run.
  await writeFile(path.join(dir, 'timeline.js'), 'export const built = true;');
  const served = await pageBundle(dir);
  assert.equal(Buffer.from(served.get('timeline.js')!.body).toString(), 'export const built = true;');
});
