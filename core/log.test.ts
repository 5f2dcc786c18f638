// Log lines: JSON without repeated keys when not a terminal, one human line on a terminal.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, prettyLine } from './log.js';

function capture(isTTY: boolean): { stream: Writable & { isTTY: boolean }; lines: string[] } {
  const lines: string[] = [];
  const stream = Object.assign(
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }),
    { isTTY },
  );
  return { stream, lines };
}

test('JSON lines name each key once: a child service and a call-site node override the outer ones', () => {
  const { stream, lines } = capture(false);
  const log = createLogger('up', { env: {}, stream });
  log.child({ service: 'agent' }).child({ node: 'a' }).info({ node: 'b', events: 3 }, 'started');
  assert.equal(lines.length, 1);
  const text = lines[0]!;
  assert.equal(text.match(/"service"/g)?.length, 1, text);
  assert.equal(text.match(/"node"/g)?.length, 1, text);
  const entry = JSON.parse(text) as Record<string, unknown>;
  assert.equal(entry.service, 'agent');
  assert.equal(entry.node, 'b');
  assert.equal(entry.events, 3);
  assert.equal(entry.msg, 'started');
});

test('a terminal gets one human line: time, level, service, message, fields; the error stack indented', () => {
  const { stream, lines } = capture(true);
  const log = createLogger('sink', { env: { FLASHBACK_LOG_LEVEL: 'debug' }, stream });
  log.info({ events: 512, url: 'http://127.0.0.1:8123' }, 'stored batch');
  log.debug({ why: 'two words' }, 'detail');
  assert.match(
    lines[0]!,
    /^\d\d:\d\d:\d\d\.\d{3} \x1b\[32mINFO \x1b\[0m sink: stored batch events=512 url=http:\/\/127\.0\.0\.1:8123\n$/,
  );
  assert.match(lines[1]!, /DEBUG.* sink: detail why="two words"\n$/);
  const err = prettyLine(
    JSON.stringify({
      level: 50,
      time: 0,
      service: 'api',
      msg: 'failed',
      err: { message: 'boom', stack: 'Error: boom\n    at x' },
    }),
    false,
  );
  assert.match(err, /^\d\d:\d\d:\d\d\.000 ERROR api: failed\n {4}Error: boom\n {8}at x\n$/);
});

test('FLASHBACK_LOG_FORMAT overrides the terminal guess', () => {
  const { stream, lines } = capture(true);
  createLogger('api', { env: { FLASHBACK_LOG_FORMAT: 'json' }, stream }).warn('careful');
  assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, 'careful');
});
