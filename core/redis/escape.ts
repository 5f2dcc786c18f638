/**
 * Per byte: 0 = printable as-is, 1 = needs an escape. Same set as Redis's
 * sdscatrepr under the C locale (isprint: 0x20–0x7e), plus `\` and `"`.
 */
const NEEDS_ESCAPE = new Uint8Array(256).map((_, b) => (b < 0x20 || b > 0x7e || b === 0x5c || b === 0x22 ? 1 : 0));

const ESCAPES: string[] = Array.from({ length: 256 }, (_, b) => {
  switch (b) {
    case 0x5c:
      return '\\\\';
    case 0x22:
      return '\\"';
    case 0x0a:
      return '\\n';
    case 0x0d:
      return '\\r';
    case 0x09:
      return '\\t';
    case 0x07:
      return '\\a';
    case 0x08:
      return '\\b';
    default:
      return `\\x${b.toString(16).padStart(2, '0')}`;
  }
});

/**
 * Bytes → readable text for display columns: printable ASCII as-is; `\\` `\"`
 * `\n` `\r` `\t` `\a` `\b`; other bytes `\xHH` (lower-case hex). This is what
 * Redis's sdscatrepr prints (MONITOR, redis-cli), without the surrounding
 * quotes. Never used on the replay path: it is for people and SQL columns.
 */
export function readableBytes(b: Buffer): string {
  const n = b.length;
  let i = 0;
  while (i < n && NEEDS_ESCAPE[b[i]] === 0) i++;
  if (i === n) return b.toString('latin1', 0, n);
  // Runs of printable bytes are sliced whole: one string per run, not per byte.
  let out = b.toString('latin1', 0, i);
  while (i < n) {
    out += ESCAPES[b[i]];
    let j = ++i;
    while (j < n && NEEDS_ESCAPE[b[j]] === 0) j++;
    if (j > i) out += b.toString('latin1', i, j);
    i = j;
  }
  return out;
}
