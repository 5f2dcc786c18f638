/** /docs: Swagger UI over /openapi.json, with the tab's token on every request (the reference itself needs one). */
import './style.css';
import { savedToken } from './api.js';
import { ensureToken } from './token-prompt.js';

declare const SwaggerUIBundle: (o: Record<string, unknown>) => unknown;

await ensureToken();
SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  requestInterceptor: (req: { headers: Record<string, string> }) => {
    req.headers.Authorization = `Bearer ${savedToken() ?? ''}`;
    return req;
  },
});
