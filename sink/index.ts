export { startSink } from './sink.js';
export type { Sink, SinkOptions } from './sink.js';
export type { SinkHealth, SinkStats } from './metrics.js';
export { baselineToRow, eventToRow, parseBaselineRecord } from './rows.js';
