import { FollowedKeys, type DbKey } from './key-moves.js';
import { RespReader } from './resp.js';

export type { DbKey };

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
  const keys = new FollowedKeys();
  let db = 0;
  for (let v = reader.read(); v !== undefined; v = reader.read()) {
    if (!Array.isArray(v) || v.length < 2 || !v.every((x) => Buffer.isBuffer(x))) continue;
    const argv = v as Buffer[];
    const name = argv[0]!.toString('latin1').toUpperCase();
    if (name === 'SELECT') db = Number(argv[1]!.toString('latin1'));
    else if (
      name === 'XCLAIM' &&
      argv.some((a, i) => i > 5 && a.length === 6 && a.toString('latin1').toUpperCase() === 'LASTID')
    )
      keys.add(db, argv[1]!);
    else keys.follow(db, argv);
  }
  return keys.list();
}
