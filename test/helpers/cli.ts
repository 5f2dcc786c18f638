import { spawn } from 'node:child_process';

/** Runs `bin/flashback-dev.js` (the TypeScript sources) with `args` in a child, without the caller's FLASHBACK_* environment. */
export function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLASHBACK_')));
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['bin/flashback-dev.js', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
