import { RespReader } from './resp.js';

/** A key in a logical database. */
export interface DbKey {
  db: number;
  key: Buffer;
}

/**
 * Stream keys whose consumer groups a replication tail carries only approximately. Redis 7.0 propagates a group
 * read (XREADGROUP, served at once or later) as `XCLAIM … LASTID id` without the group's entries-read counter, so
 * a replica — and a baseline made of RDB + tail — can hold another `entries-read` (and `lag`) than the master.
 * The agent reads these keys' state right after the baseline's marker; a restore from that baseline is exact from
 * there on (restorer/settled-baseline.ts). A key moved later in the tail (SWAPDB, MOVE, RENAME, COPY) is named
 * where it is at the tail's end.
 */
export function approximateGroupKeys(tail: Buffer): DbKey[] {
  const reader = new RespReader();
  reader.push(tail);
  const found = new Map<string, DbKey>();
  const add = (db: number, key: Buffer) => found.set(`${db}:${key.toString('hex')}`, { db, key });
  const take = (db: number, key: Buffer) => found.delete(`${db}:${key.toString('hex')}`);
  let db = 0;
  for (let v = reader.read(); v !== undefined; v = reader.read()) {
    if (!Array.isArray(v) || v.length < 2 || !v.every((x) => Buffer.isBuffer(x))) continue;
    const argv = v as Buffer[];
    const word = (i: number) => argv[i]?.toString('latin1').toUpperCase();
    const num = (i: number) => Number(argv[i]?.toString('latin1'));
    switch (word(0)) {
      case 'SELECT':
        db = num(1);
        break;
      case 'XCLAIM':
        if (argv.some((a, i) => i > 5 && a.length === 6 && a.toString('latin1').toUpperCase() === 'LASTID')) add(db, argv[1]!);
        break;
      case 'SWAPDB': {
        const [a, b] = [num(1), num(2)];
        const moved = [...found.values()];
        found.clear();
        for (const k of moved) add(k.db === a ? b : k.db === b ? a : k.db, k.key);
        break;
      }
      case 'MOVE':
        if (take(db, argv[1]!)) add(num(2), argv[1]!);
        break;
      case 'RENAME':
      case 'RENAMENX':
        if (argv.length >= 3 && take(db, argv[1]!)) add(db, argv[2]!);
        break;
      case 'COPY':
        if (argv.length >= 3 && found.has(`${db}:${argv[1]!.toString('hex')}`)) {
          const at = argv.findIndex((a, i) => i >= 3 && a.toString('latin1').toUpperCase() === 'DB');
          add(at > 0 ? num(at + 1) : db, argv[2]!);
        }
        break;
    }
  }
  return [...found.values()];
}
