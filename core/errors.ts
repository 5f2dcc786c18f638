/** Error codes shared by every service; the API maps them to HTTP statuses. */
export const ErrorCode = {
  Config: 'CONFIG',
  Connection: 'CONNECTION',
  BadInput: 'BAD_INPUT',
  BadTime: 'BAD_TIME',
  UnknownNode: 'UNKNOWN_NODE',
  OutsideWindow: 'OUTSIDE_WINDOW',
  CaptureGap: 'CAPTURE_GAP',
  /** A restore server could not load the history to the asked instant (an event broke it). */
  BrokenEvent: 'BROKEN_EVENT',
  /**
   * A baseline object (RDB or tail) does not hash to the SHA-256 its node's agent published in the baseline record:
   * replaced in the shared bucket, or corrupt. Nothing of it was loaded.
   */
  BaselineMismatch: 'BASELINE_MISMATCH',
  TargetNotEmpty: 'TARGET_NOT_EMPTY',
  ReadOnlySql: 'READ_ONLY_SQL',
  Protocol: 'PROTOCOL',
  Storage: 'STORAGE',
  NotFound: 'NOT_FOUND',
  /** A server refused our credentials (wrong password, unknown user). */
  Auth: 'AUTH',
  /** A request or answer is over a size limit (body, SQL result, NATS max_payload). */
  TooLarge: 'TOO_LARGE',
  /** A limit of concurrent work is reached (SQL queries, restored instances); retry later. */
  Busy: 'BUSY',
  /** A restore job ran past its deadline. */
  Timeout: 'TIMEOUT',
  /** A restore job was cancelled (DELETE /restores/{id}). */
  Cancelled: 'CANCELLED',
  /** The thing is in a state that does not allow it (cancel a job that is done). */
  Conflict: 'CONFLICT',
  /** A request is not allowed: target outside the allow-list, a file outside the export dir, a scope too small. */
  Forbidden: 'FORBIDDEN',
  Internal: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Base of every error we raise: a code, a message that names the thing and the way out, and the original as `cause`.
 */
export class FlashbackError extends Error {
  readonly code: ErrorCode;
  /** True when retrying the same operation later may succeed (network, server restart). */
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions & { retryable?: boolean }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? false;
  }
}

/**
 * Bad flag, env var or config file value, or a right the source refuses (retryable: granting it at the source fixes
 * it without a restart).
 */
export class ConfigError extends FlashbackError {
  constructor(message: string, options?: ErrorOptions & { retryable?: boolean }) {
    super(ErrorCode.Config, message, options);
  }
}

/** A server (Redis, NATS, ClickHouse) could not be reached or dropped us. */
export class ConnectionError extends FlashbackError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.Connection, message, { ...options, retryable: true });
  }
}

/** Malformed input from a user: time, SQL, JSON, node id. */
export class InputError extends FlashbackError {
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** The captured history has a hole: nothing may be restored across it. */
export class CaptureGapError extends FlashbackError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.CaptureGap, message, options);
  }
}

/** A restore was asked for a cutoff no restorable window covers. */
export class RestoreWindowError extends FlashbackError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.OutsideWindow, message, options);
  }
}

/** Bytes from a server did not follow the protocol we expected. */
export class ProtocolError extends FlashbackError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.Protocol, message, options);
  }
}

/** Whether an error is worth retrying with backoff. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof FlashbackError) return err.retryable;
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(code)
  );
}

/** One line for a human: the message, and the cause's message when it adds something. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause && !err.message.includes(cause) ? `${err.message} (${cause})` : err.message;
}
