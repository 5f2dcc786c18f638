#!/usr/bin/env node
// Runs the compiled JavaScript (dist/, built by `npm ci` through the prepare script, or `npm run build`).
import { existsSync } from 'node:fs';
import module from 'node:module';

// Node 22.1+: V8 keeps compiled code of our modules and dependencies between runs (a third off `--help`).
module.enableCompileCache?.();

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'flashback: dist/cli/main.js is missing; build it with `npm run build` (or run the sources: node bin/flashback-dev.js)\n',
  );
  process.exit(1);
}
const { hideArgvSecrets } = await import(new URL('../dist/cli/ps-title.js', import.meta.url).href);
hideArgvSecrets();
const { runCli } = await import(main.href);
process.exitCode = await runCli(process.argv.slice(2));
