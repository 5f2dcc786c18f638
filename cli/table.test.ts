// printTable: aligned columns, cell rendering (strings, JSON, empty for null), 80-char cap with …, the row count line.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { printTable } from './table.js';

function render(header: string[], rows: unknown[][]): string {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString('utf8')));
  printTable(header, rows, out);
  out.end();
  return text;
}

describe('printTable', () => {
  it('aligns columns to the widest cell, two spaces apart, no trailing spaces', () => {
    const text = render(
      ['node', 'seq', 'ok'],
      [
        ['n1', 7, true],
        ['node-long', 12_345, null],
      ],
    );
    assert.equal(
      text,
      [
        'node       seq    ok',
        '---------  -----  ----',
        'n1         7      true',
        'node-long  12345',
        '(2 rows)',
        '',
      ].join('\n'),
    );
  });

  it('prints objects as JSON, undefined as empty, and says "1 row"', () => {
    const text = render(['a', 'b'], [[{ x: [1, 'y'] }, undefined]]);
    assert.equal(text, ['a              b', '-------------  -', '{"x":[1,"y"]}', '(1 row)', ''].join('\n'));
  });

  it('cuts cells longer than 80 characters with …', () => {
    const long = 'x'.repeat(100);
    const lines = render(['v'], [[long]]).split('\n');
    assert.equal(lines[1], '-'.repeat(80));
    assert.equal(lines[2], `${'x'.repeat(79)}…`);
  });

  it('prints the header and "(0 rows)" for no rows', () => {
    assert.equal(render(['a', 'bb'], []), 'a  bb\n-  --\n(0 rows)\n');
  });
});
