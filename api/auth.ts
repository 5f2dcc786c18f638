import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { ConfigError } from '../core/errors.js';
import { errorBody, HttpErrorCode } from './errors.js';

/**
 * Tokens from `FLASHBACK_API_TOKENS` (comma-separated) or a flag; empty
 * entries are dropped. No token at all is a ConfigError: the API never runs open.
 */
export function parseApiTokens(text: string | readonly string[] | undefined): string[] {
  const list = (typeof text === 'string' ? text.split(',') : [...(text ?? [])])
    .map((t) => t.trim())
    .filter((t) => t !== '');
  if (list.length === 0)
    throw new ConfigError(
      'no API token configured; set FLASHBACK_API_TOKENS=token1,token2 (or --tokens); clients send Authorization: Bearer <token>',
    );
  return list;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer-token auth for every route except `open` ones: no token → 401,
 * a token that matches none → 403, both with the JSON error body. Tokens are
 * compared by digest in constant time and never logged.
 */
export function bearerAuth(tokens: readonly string[], open: readonly string[] = ['/health']): MiddlewareHandler {
  const digests = tokens.map(digest);
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
    if (!digests.some((x) => timingSafeEqual(x, d))) {
      c.header('WWW-Authenticate', 'Bearer realm="flashback", error="invalid_token"');
      return c.json(
        errorBody(
          HttpErrorCode.Forbidden,
          "the bearer token is not one of the API tokens; check FLASHBACK_API_TOKEN against the server's FLASHBACK_API_TOKENS",
        ),
        403,
      );
    }
    return next();
  };
}
