export { restore } from './restore.js';
export type { RestoreReport, RestoreRequest, RestoreProgress, RestoreDeps } from './restore.js';
export { clickHouseEventStore } from './event-store.js';
export type { EventStore } from './event-store.js';
export { startRestorer } from './service.js';
export type { Restorer, RestorerOptions, RestorerStats } from './service.js';
