import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { swaggerUI } from '@hono/swagger-ui';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { pageBundle, webDir } from '../page-bundle.js';

/*
 * The pages: the timeline at `/` (sources in web/, bundled at build time: api/page-bundle.ts) and the
 * API reference at `/docs` (Swagger UI, served from the swagger-ui-dist package). Pages and assets hold no data, so
 * they need no token; the page asks for one and sends it on each API call.
 */

/** Swagger UI's files this page uses, from the installed swagger-ui-dist. */
const SWAGGER_FILES: Record<string, string> = {
  'swagger-ui.css': 'text/css',
  'swagger-ui-bundle.js': 'text/javascript',
};
const swaggerDir = () => path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** No inline scripts, no other origins: a page that shows history cannot be made to send it elsewhere. */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

function secured(c: Context): void {
  c.header('Content-Security-Policy', CSP);
  c.header('X-Content-Type-Options', 'nosniff');
  c.header('Referrer-Policy', 'no-referrer');
  c.header('Cache-Control', 'no-cache');
}

const TOKEN_DIALOG = `<div id="token-dialog" class="modal" hidden>
  <form id="token-form" class="card">
    <h2>API token</h2>
    <p>The reference is read from <code>/openapi.json</code>, which needs one of the API's tokens. It stays in this tab.</p>
    <input id="token-input" type="password" autocomplete="off" placeholder="token" required />
    <button id="token-submit" type="submit">Open</button>
    <p id="token-error" class="error" role="alert"></p>
  </form>
</div>`;

/**
 * `GET /` (the timeline), `GET /ui/*` (its bundle), `GET /docs` (Swagger UI) and its assets. Register before the auth
 * middleware: these answer without a token.
 */
export function registerUiRoutes(app: OpenAPIHono): void {
  let indexHtml: Promise<string> | undefined;
  app.get('/', async (c) => {
    indexHtml ??= readFile(path.join(webDir(), 'index.html'), 'utf8');
    secured(c);
    return c.html(await indexHtml);
  });

  app.get('/ui/:file', async (c) => {
    const asset = (await pageBundle()).get(c.req.param('file'));
    if (!asset) return c.notFound();
    secured(c);
    return c.body(asset.body as Uint8Array<ArrayBuffer>, 200, { 'Content-Type': `${asset.type}; charset=utf-8` });
  });

  const docs = swaggerUI({
    url: '/openapi.json',
    title: 'redis-flashback · API reference',
    baseUrl: '/docs/assets',
    manuallySwaggerUIHtml: (asset) =>
      `<link rel="stylesheet" href="${asset.css[0]}" /><link rel="stylesheet" href="/ui/docs.css" />
<header><h1>redis-flashback <span>API reference</span></h1><nav><a href="/">timeline</a></nav></header>
${TOKEN_DIALOG}
<div id="swagger-ui"></div>
<script src="${asset.js[0]}"></script>
<script type="module" src="/ui/docs.js"></script>`,
  });
  app.get('/docs', async (c, next) => {
    secured(c);
    return docs(c, next);
  });

  app.get('/docs/assets/swagger-ui-dist/:file', async (c) => {
    const file = c.req.param('file');
    const type = SWAGGER_FILES[file];
    if (!type) return c.notFound();
    secured(c);
    c.header('Cache-Control', 'max-age=86400');
    return c.body(await readFile(path.join(swaggerDir(), file)), 200, { 'Content-Type': `${type}; charset=utf-8` });
  });
}
