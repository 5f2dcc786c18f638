/** The page's way to the API: the bearer token (kept in sessionStorage for this tab, never in a URL) and JSON calls. */

const TOKEN_KEY = 'flashback-token';

/** The token of this tab's session, if one was accepted. */
export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps an accepted token for this tab's session. */
export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** Forgets the token (the API refused it, or the user signs out). */
export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An API answer other than 2xx, with the API's `{error:{code,message}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the API says the token is missing (401) or unknown (403 without a scope): the page asks again. */
let onAuthFailure: (e: ApiError) => void = () => undefined;
export function whenTokenRefused(handler: (e: ApiError) => void): void {
  onAuthFailure = handler;
}

/** A JSON request with the session's token (or `token`); non-2xx answers throw ApiError. */
export async function api<T>(path: string, init: { method?: string; body?: unknown; token?: string } = {}): Promise<T> {
  const token = init.token ?? savedToken() ?? '';
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
  });
  const text = await res.text();
  const body = text === '' ? {} : (JSON.parse(text) as unknown);
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string; scope?: string } }).error;
    const e = new ApiError(res.status, err?.code ?? 'HTTP', err?.message ?? `${res.status} ${res.statusText}`);
    // A valid token whose scope is too low (the 403 names the scope needed) stays: its caller shows why; only a
    // missing or unknown token makes the page ask again.
    const refused = res.status === 401 || (res.status === 403 && err?.scope === undefined);
    if (refused && init.token === undefined) onAuthFailure(e);
    throw e;
  }
  return body as T;
}

/** Query string from defined values. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}
