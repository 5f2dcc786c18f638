import { readFileSync } from 'node:fs';
import { ConfigError, ConnectionError, ErrorCode, FlashbackError } from '../core/errors.js';
import type { InstanceRecord, RestoreJobRequest, RestoreJobStatus } from '../core/bus/restore-jobs.js';
import type { HistoryEvent } from '../core/store/key-history.js';
import type { RestoreWindow } from '../core/store/windows.js';
import type { VerifiedStretchJson } from '../core/store/verifications.js';

/** A window as the API returns it (times also as text). */
export type ApiWindow = RestoreWindow & { from: string; to: string; verified?: VerifiedStretchJson[] };

/** An event of `GET /events`: the history event as the store reads it. */
export type ApiEvent = HistoryEvent;

/** Answer of `POST /restores`. */
export interface RestoreAccepted {
  id: string;
  state: 'queued';
  cutoff: { epoch: number; seq: number; tsUs: number; time: string; baselineSeq: number };
}

/** Options of {@link ApiClient.waitForRestore}. */
export interface WaitOptions {
  /** Called with each status seen. */
  onStatus?: (s: RestoreJobStatus) => void;
  /** Time between polls, ms. @default 250 */
  pollMs?: number;
  /** Give up after this long, ms. @default 3_600_000 */
  timeoutMs?: number;
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/**
 * A small client of the flashback HTTP API. Error answers become
 * FlashbackErrors with the server's code and message, so the CLI reports
 * them exactly as it reports local failures.
 */
export class ApiClient {
  private readonly base: string;

  /**
   * @param baseUrl `http://host:port` of `flashback api`
   * @param token one of the server's FLASHBACK_API_TOKENS
   */
  constructor(
    baseUrl: string,
    private readonly token: string | undefined,
  ) {
    let u: URL;
    try {
      u = new URL(baseUrl);
    } catch (cause) {
      throw new ConfigError(`API URL "${baseUrl}" is malformed; use http://host:port (env FLASHBACK_API_URL)`, {
        cause,
      });
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new ConfigError(`API URL "${baseUrl}" is not http(s); use http://host:port`);
    this.base = u.origin + u.pathname.replace(/\/+$/, '');
  }

  /** Any route; throws the server's error as a FlashbackError. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (cause) {
      throw new ConnectionError(
        `cannot reach the flashback API at ${this.base}: ${(cause as Error).cause instanceof Error ? ((cause as Error).cause as Error).message : (cause as Error).message}; is \`flashback api\` running there?`,
        { cause },
      );
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const e = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      const message =
        typeof e?.message === 'string' ? e.message : `${method} ${path} answered ${res.status} ${res.statusText}`;
      const code =
        typeof e?.code === 'string' && KNOWN_CODES.has(e.code)
          ? (e.code as ErrorCode)
          : res.status === 401 || res.status === 403
            ? ErrorCode.Config
            : res.status >= 500
              ? ErrorCode.Internal
              : ErrorCode.BadInput;
      const hint = res.status === 401 ? ' (set --token or FLASHBACK_API_TOKEN)' : '';
      throw new FlashbackError(code, message + hint, { retryable: res.status === 503 });
    }
    if (parsed === undefined && text !== '') return text as T;
    return parsed as T;
  }

  /** `GET /nodes/{node}/windows`, or every node's windows. */
  async windows(node?: string): Promise<ApiWindow[]> {
    if (node !== undefined)
      return (await this.request<{ windows: ApiWindow[] }>('GET', `/nodes/${encodeURIComponent(node)}/windows`))
        .windows;
    const { nodes } = await this.request<{ nodes: { node: string }[] }>('GET', '/nodes');
    const all: ApiWindow[] = [];
    for (const n of nodes) all.push(...(await this.windows(n.node)));
    return all;
  }

  /** `GET /events`. */
  async history(q: {
    node?: string;
    key?: string;
    since?: string;
    until?: string;
    limit?: number;
  }): Promise<ApiEvent[]> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    return (await this.request<{ events: ApiEvent[] }>('GET', `/events?${params}`)).events;
  }

  /** `POST /restores`. */
  createRestore(req: RestoreJobRequest): Promise<RestoreAccepted> {
    return this.request<RestoreAccepted>('POST', '/restores', req);
  }

  /** `DELETE /restores/{id}`: cancels a queued or running job. */
  cancelRestore(id: string): Promise<RestoreJobStatus> {
    return this.request<RestoreJobStatus>('DELETE', `/restores/${encodeURIComponent(id)}`);
  }

  /** `GET /restores/{id}`. */
  getRestore(id: string): Promise<RestoreJobStatus> {
    return this.request<RestoreJobStatus>('GET', `/restores/${encodeURIComponent(id)}`);
  }

  /**
   * Polls a job until it is done (resolves with its status, report included)
   * or failed (throws its error as a FlashbackError with the job's code).
   */
  async waitForRestore(id: string, o: WaitOptions = {}): Promise<RestoreJobStatus> {
    const { onStatus, pollMs = 250, timeoutMs = 3_600_000 } = o;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.getRestore(id);
      onStatus?.(s);
      if (s.state === 'done') return s;
      if (s.state === 'failed') {
        const code = s.error && KNOWN_CODES.has(s.error.code) ? (s.error.code as ErrorCode) : ErrorCode.Internal;
        throw new FlashbackError(code, `restore job ${id} failed: ${s.error?.message ?? 'no reason recorded'}`);
      }
      if (Date.now() > deadline)
        throw new FlashbackError(
          ErrorCode.Internal,
          `restore job ${id} is still ${s.state} after ${Math.round(timeoutMs / 1000)} s; check it later with GET /restores/${id}`,
        );
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** `GET /instances`. */
  async instances(): Promise<InstanceRecord[]> {
    return (await this.request<{ instances: InstanceRecord[] }>('GET', '/instances')).instances;
  }

  /** `DELETE /instances/{id}`. */
  async stopInstance(id: string): Promise<InstanceRecord> {
    return (await this.request<{ stopped: InstanceRecord }>('DELETE', `/instances/${encodeURIComponent(id)}`)).stopped;
  }
}

/** Shared `--api` / `--token` flags (env FLASHBACK_API_URL / FLASHBACK_API_TOKEN). */
export const apiOptions = {
  api: {
    type: 'string',
    describe: 'go through the flashback API at this URL instead of ClickHouse/NATS directly (env FLASHBACK_API_URL)',
  },
  token: { type: 'string', describe: 'bearer token for --api (env FLASHBACK_API_TOKEN)' },
} as const;

/**
 * The API client when `--api` (or FLASHBACK_API_URL) is set, else undefined
 * (local mode). yargs' FLASHBACK_ env prefix maps FLASHBACK_API to --api, so
 * the documented FLASHBACK_API_URL / FLASHBACK_API_TOKEN are read here.
 * `--api-url` and `--api-token` are aliases of `--api` and `--token` (they were accepted and ignored before);
 * `--api`/`--token` win when both are given (yargs also maps FLASHBACK_API_URL onto `--api-url`).
 */
export function apiClientFrom(
  args: { api?: string; token?: string; apiUrl?: string; apiToken?: string },
  env: NodeJS.ProcessEnv = process.env,
): ApiClient | undefined {
  const url = args.api ?? args.apiUrl ?? env.FLASHBACK_API_URL;
  if (!url) return undefined;
  return new ApiClient(url, args.token ?? args.apiToken ?? env.FLASHBACK_API_TOKEN ?? localToken());
}

/** The token `flashback up` stored in its default data dir, when the CLI runs beside it. */
function localToken(): string | undefined {
  try {
    return readFileSync('.flashback/api-token', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
