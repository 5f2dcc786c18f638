import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { MiddlewareHandler } from 'hono';
import { ConfigError } from '../core/errors.js';
import { errorBody, HttpErrorCode } from './errors.js';

/**
 * What a token may do; each scope includes the ones before it:
 * - `read`: history, SQL, windows, events, nodes, metrics, the OpenAPI document;
 * - `restore`: also restore jobs (`/restores`: create, list, read, cancel);
 * - `admin`: also restored instances (`/instances`) and anything else.
 */
export type Scope = 'read' | 'restore' | 'admin';

const RANK: Record<Scope, number> = { read: 1, restore: 2, admin: 3 };

/** One accepted token and its scope. */
export interface ApiToken {
  token: string;
  scope: Scope;
}

/**
 * One token entry: `read:TOKEN`, `restore:TOKEN`, `admin:TOKEN`, or a bare `TOKEN`, which is admin (the token
 * `flashback up` makes, and every token configured before scopes existed).
 */
export function parseApiToken(entry: string): ApiToken {
  const m = /^([a-z]+):(.+)$/.exec(entry);
  if (!m) return { token: entry, scope: 'admin' };
  if (!(m[1]! in RANK))
    throw new ConfigError(
      `an API token has the unknown scope "${m[1]}"; write read:TOKEN, restore:TOKEN, admin:TOKEN, or TOKEN alone for admin`,
    );
  return { token: m[2]!, scope: m[1] as Scope };
}

/**
 * Tokens from `FLASHBACK_API_TOKENS` (comma-separated entries of {@link parseApiToken}), a file of them
 * (`FLASHBACK_API_TOKENS_FILE`: entries separated by commas or lines) or a flag; empty entries are dropped. No token
 * at all is a ConfigError: the API never runs open. A token named twice with two scopes is refused.
 */
export function parseApiTokens(text: string | readonly (string | ApiToken)[] | undefined): ApiToken[] {
  const entries = typeof text === 'string' ? text.split(/[,\n]/) : [...(text ?? [])];
  const list = entries
    .map((t) => (typeof t === 'string' ? t.trim() : t))
    .filter((t) => t !== '')
    .map((t) => (typeof t === 'string' ? parseApiToken(t) : t));
  if (list.length === 0)
    throw new ConfigError(
      'no API token configured; set FLASHBACK_API_TOKENS=token1,read:token2 (or FLASHBACK_API_TOKENS_FILE, or --tokens); clients send Authorization: Bearer <token>',
    );
  const seen = new Map<string, Scope>();
  for (const t of list) {
    const before = seen.get(t.token);
    if (before !== undefined && before !== t.scope)
      throw new ConfigError(`one API token is given twice, with scopes ${before} and ${t.scope}; give each token once`);
    seen.set(t.token, t.scope);
  }
  return list;
}

/** The tokens of `FLASHBACK_API_TOKENS`, else of the file `FLASHBACK_API_TOKENS_FILE`, else undefined. */
export function apiTokensFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.FLASHBACK_API_TOKENS !== undefined && env.FLASHBACK_API_TOKENS.trim() !== '') return env.FLASHBACK_API_TOKENS;
  const file = env.FLASHBACK_API_TOKENS_FILE;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read FLASHBACK_API_TOKENS_FILE ${file}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * The scope a request needs: `/instances` admin, `/restores` and `/timeline/values` restore, other reads (GET,
 * `POST /sql`) read.
 */
export function requiredScope(method: string, path: string): Scope {
  const under = (p: string) => path === p || path.startsWith(`${p}/`);
  if (under('/instances')) return 'admin';
  // A value lookup of the timeline page runs a restore into a scratch instance.
  if (under('/restores') || under('/timeline/values')) return 'restore';
  if (method === 'GET' || method === 'HEAD' || (method === 'POST' && path === '/sql')) return 'read';
  // A route added later that changes something is admin-only until it is given a scope here.
  return 'admin';
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer-token auth for every route except `open` ones: no token → 401, a token that matches none → 403, a token
 * whose scope is below the route's ({@link requiredScope}) → 403 naming the scope needed; each with the JSON error
 * body. Tokens are compared by digest in constant time and never logged.
 */
export function bearerAuth(
  tokens: readonly (string | ApiToken)[],
  open: readonly string[] = ['/health'],
): MiddlewareHandler {
  const known = parseApiTokens(tokens).map((t) => ({ digest: digest(t.token), scope: t.scope }));
  return async (c, next) => {
    if (open.includes(c.req.path)) return next();
    const header = c.req.header('authorization');
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) {
      c.header('WWW-Authenticate', 'Bearer realm="flashback"');
      return c.json(
        errorBody(
          HttpErrorCode.Unauthorized,
          'this endpoint needs a token: send Authorization: Bearer <token> (one of FLASHBACK_API_TOKENS)',
        ),
        401,
      );
    }
    const d = digest(m[1]!);
    // Every entry is compared, so the time taken does not tell which one matched.
    let scope: Scope | undefined;
    for (const k of known) if (timingSafeEqual(k.digest, d)) scope ??= k.scope;
    if (scope === undefined) {
      c.header('WWW-Authenticate', 'Bearer realm="flashback", error="invalid_token"');
      return c.json(
        errorBody(
          HttpErrorCode.Forbidden,
          "the bearer token is not one of the API tokens; check FLASHBACK_API_TOKEN against the server's FLASHBACK_API_TOKENS",
        ),
        403,
      );
    }
    const needed = requiredScope(c.req.method, c.req.path);
    if (RANK[scope] < RANK[needed]) {
      c.header('WWW-Authenticate', `Bearer realm="flashback", error="insufficient_scope", scope="${needed}"`);
      return c.json(
        {
          error: {
            code: HttpErrorCode.Forbidden,
            message: `${c.req.method} ${c.req.path} needs a token of scope "${needed}"${needed === 'admin' ? '' : ' (or admin)'}; this token's scope is "${scope}" (scopes: read < restore < admin)`,
            scope: needed,
          },
        },
        403,
      );
    }
    return next();
  };
}
