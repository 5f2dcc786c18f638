import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { describeError, ErrorCode, FlashbackError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/** HTTP status of each of our error codes; anything else is 500. */
const STATUS: Partial<Record<string, ContentfulStatusCode>> = {
  [ErrorCode.BadInput]: 400,
  [ErrorCode.BadTime]: 400,
  [ErrorCode.ReadOnlySql]: 400,
  [ErrorCode.Config]: 400,
  [ErrorCode.UnknownNode]: 404,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.TargetNotEmpty]: 409,
  [ErrorCode.OutsideWindow]: 422,
  [ErrorCode.CaptureGap]: 422,
  [ErrorCode.BrokenEvent]: 422,
  [ErrorCode.BaselineMismatch]: 422,
  [ErrorCode.Connection]: 503,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.TooLarge]: 413,
  [ErrorCode.Busy]: 429,
  [ErrorCode.Auth]: 400,
};

/** The HTTP status for one of our error codes. */
export function statusOf(code: string): ContentfulStatusCode {
  return STATUS[code] ?? 500;
}

/** The one error body: `{ "error": { "code", "message" } }`. */
export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/** Codes of answers that are not our errors (auth, routing, hono's own 4xx). */
export const HttpErrorCode = { Unauthorized: 'UNAUTHORIZED', Forbidden: 'FORBIDDEN', TooLarge: 'TOO_LARGE' } as const;

/**
 * The app's `onError`: our errors by code; hono's HTTPExceptions (malformed
 * JSON, body limits) as BAD_INPUT with their status; anything else 500 with
 * a generic message (the details go to the log, not to the client).
 */
export function errorHandler(logger: Logger) {
  return (err: Error, c: Context) => {
    if (err instanceof FlashbackError) {
      const status = statusOf(err.code);
      if (status >= 500) logger.error({ err: describeError(err), code: err.code, path: c.req.path }, 'request failed');
      return c.json(errorBody(err.code, describeError(err)), status);
    }
    if (err instanceof HTTPException) {
      const status = err.status as ContentfulStatusCode;
      const code =
        status === 401
          ? HttpErrorCode.Unauthorized
          : status === 403
            ? HttpErrorCode.Forbidden
            : status === 404
              ? ErrorCode.NotFound
              : status < 500
                ? ErrorCode.BadInput
                : ErrorCode.Internal;
      const message = /malformed json/i.test(err.message)
        ? 'the request body is not valid JSON; send Content-Type: application/json and a JSON object'
        : err.message || 'bad request';
      return c.json(errorBody(code, message), status);
    }
    logger.error({ err: describeError(err), stack: err.stack, path: c.req.path }, 'unexpected error');
    return c.json(
      errorBody(
        ErrorCode.Internal,
        `internal error while serving ${c.req.method} ${c.req.path}; the API's log has the details`,
      ),
      500,
    );
  };
}

/** zod issues as one line: `path: message; path: message`. */
export function describeIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues
    .map((i) => (i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
}
