export { buildApp } from './app.js';
export { parseApiTokens } from './auth.js';
export { natsJobClient } from './deps.js';
export type { ApiDeps, ApiStore, JobClient } from './deps.js';
export { startApi } from './server.js';
export type { Api, ApiOptions } from './server.js';
