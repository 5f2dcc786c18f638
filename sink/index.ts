export { startSink } from './sink.js';
export type { Sink, SinkHealth, SinkOptions, SinkStats } from './sink.js';
export { baselineToRow, eventToRow, parseBaselineRecord } from './rows.js';
