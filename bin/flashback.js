#!/usr/bin/env node
// Runs the TypeScript sources through tsx, so a checkout works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../cli/main.ts');
process.exitCode = await runCli(process.argv.slice(2));
