import { readFileSync } from 'node:fs';

let cached: string | undefined;

/**
 * This package's version from its package.json, found from the sources (`core/`) and from the build (`dist/core/`)
 * alike; `0.0.0-unknown` if neither is readable.
 */
export function packageVersion(): string {
  if (cached !== undefined) return cached;
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'redis-flashback' && pkg.version) return (cached = pkg.version);
    } catch {
      // not at this depth
    }
  }
  return (cached = '0.0.0-unknown');
}
