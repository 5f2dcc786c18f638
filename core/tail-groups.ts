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
  const keys = new FollowedKeys();
  let db = 0;
  for (let v = reader.read(); v !== undefined; v = reader.read()) {
    if (!Array.isArray(v) || v.length < 2 || !v.every((x) => Buffer.isBuffer(x))) continue;
    const argv = v as Buffer[];
    const name = argv[0]!.toString('latin1').toUpperCase();
    if (name === 'SELECT') db = Number(argv[1]!.toString('latin1'));
    else if (name === 'XCLAIM' && argv.some((a, i) => i > 5 && a.length === 6 && a.toString('latin1').toUpperCase() === 'LASTID')) keys.add(db, argv[1]!);
    else keys.follow(db, argv);
  }
  return keys.list();
}

/** A set of keys kept where later commands move them: SWAPDB, MOVE, RENAME(NX), COPY (… DB n). */
export class FollowedKeys {
  private readonly found = new Map<string, DbKey>();

  add(db: number, key: Buffer): void {
    this.found.set(`${db}:${key.toString('hex')}`, { db, key });
  }

  /** Applies what `argv`, run in `db`, does to where the keys are. */
  follow(db: number, argv: readonly Buffer[]): void {
    if (this.found.size === 0) return;
    const word = (i: number) => argv[i]?.toString('latin1').toUpperCase();
    const num = (i: number) => Number(argv[i]?.toString('latin1'));
    const has = (key: Buffer) => this.found.has(`${db}:${key.toString('hex')}`);
    const take = (key: Buffer) => this.found.delete(`${db}:${key.toString('hex')}`);
    switch (word(0)) {
      case 'SWAPDB': {
        const [a, b] = [num(1), num(2)];
        const moved = [...this.found.values()];
        this.found.clear();
        for (const k of moved) this.add(k.db === a ? b : k.db === b ? a : k.db, k.key);
        break;
      }
      case 'MOVE':
        if (argv.length >= 3 && take(argv[1]!)) this.add(num(2), argv[1]!);
        break;
      case 'RENAME':
      case 'RENAMENX':
        if (argv.length >= 3 && take(argv[1]!)) this.add(db, argv[2]!);
        break;
      case 'COPY':
        if (argv.length >= 3 && has(argv[1]!)) {
          const at = argv.findIndex((a, i) => i >= 3 && a.toString('latin1').toUpperCase() === 'DB');
          this.add(at > 0 ? num(at + 1) : db, argv[2]!);
        }
        break;
    }
  }

  list(): DbKey[] {
    return [...this.found.values()];
  }
}
