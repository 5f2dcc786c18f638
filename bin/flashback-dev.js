#!/usr/bin/env node
// Runs the TypeScript sources through tsx (a dev dependency): what tests spawn, so they never run a stale dist/.
import { register } from 'tsx/esm/api';

register();
const { hideArgvSecrets } = await import('../cli/ps-title.ts');
hideArgvSecrets();
const { runCli } = await import('../cli/main.ts');
process.exitCode = await runCli(process.argv.slice(2));
