import { api, ApiError, forgetToken, saveToken, savedToken } from './api.js';
import { byId } from './dom.js';

/**
 * Resolves once the tab has a token the API accepts: the saved one, or one typed into the token dialog (checked with
 * GET /nodes; a refused one is said so and asked again). Never puts the token in a URL.
 */
export async function ensureToken(): Promise<void> {
  const saved = savedToken();
  if (saved !== null) {
    try {
      await api('/nodes', { token: saved });
      return;
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 401 && e.status !== 403)) throw e;
      forgetToken();
    }
  }
  await askToken('');
}

/** Shows the token dialog (with `message`, e.g. why the last token failed) until the API accepts a token. */
export function askToken(message: string): Promise<void> {
  const dialog = byId('token-dialog');
  const form = byId<HTMLFormElement>('token-form');
  const input = byId<HTMLInputElement>('token-input');
  const error = byId('token-error');
  error.textContent = message;
  dialog.hidden = false;
  input.value = '';
  input.focus();
  return new Promise((resolve) => {
    const submit = async (ev: Event) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (token === '') return;
      error.textContent = 'checking…';
      try {
        await api('/nodes', { token });
      } catch (e) {
        error.textContent =
          e instanceof ApiError && (e.status === 401 || e.status === 403)
            ? 'The API refused this token: it is not one of its FLASHBACK_API_TOKENS.'
            : `The API did not answer: ${(e as Error).message}`;
        input.select();
        return;
      }
      saveToken(token);
      input.value = '';
      error.textContent = '';
      dialog.hidden = true;
      form.removeEventListener('submit', submit);
      resolve();
    };
    form.addEventListener('submit', submit);
  });
}
