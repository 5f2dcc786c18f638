/**
 * Index of XADD's id argument when it is generated (`*` or `<ms>-*`, after NOMKSTREAM, Redis 8.2's KEEPREF / DELREF /
 * ACKED and MAXLEN/MINID [=|~] n [LIMIT c]); -1 otherwise.
 */
export function autoIdIndex(args: Buffer[]): number {
  let i = 2;
  for (;;) {
    const a = args[i]?.toString('latin1').toUpperCase();
    if (a === undefined) return -1;
    if (a === 'NOMKSTREAM' || a === 'KEEPREF' || a === 'DELREF' || a === 'ACKED') i++;
    else if (a === 'MAXLEN' || a === 'MINID') {
      i++;
      const op = args[i]?.toString('latin1');
      if (op === '=' || op === '~') i++;
      i++;
      if (args[i]?.toString('latin1').toUpperCase() === 'LIMIT') i += 2;
    } else return a === '*' || a.endsWith('-*') ? i : -1;
  }
}
