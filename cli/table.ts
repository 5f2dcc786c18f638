/** Prints rows as an aligned text table on stdout (values JSON-encoded when not plain). */
export function printTable(header: string[], rows: unknown[][], out: NodeJS.WritableStream = process.stdout): void {
  const cell = (v: unknown) => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  const text = rows.map((r) => r.map(cell));
  const widths = header.map((h, i) => Math.min(80, Math.max(h.length, ...text.map((r) => (r[i] ?? '').length))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => {
        const w = widths[i]!;
        const s = c.length > w ? c.slice(0, w - 1) + '…' : c;
        return s.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  out.write(line(header) + '\n');
  out.write(widths.map((w) => '-'.repeat(w)).join('  ') + '\n');
  for (const r of text) out.write(line(r) + '\n');
  out.write(`(${rows.length} row${rows.length === 1 ? '' : 's'})\n`);
}
