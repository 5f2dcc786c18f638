/** A key in a logical database. */
export interface DbKey {
  db: number;
  key: Buffer;
}

const upper = (argv: readonly Buffer[], i: number) => argv[i]?.toString('latin1').toUpperCase();
const num = (argv: readonly Buffer[], i: number) => Number(argv[i]?.toString('latin1'));

/** SWAPDB's two dbs; undefined for any other command. */
export function swappedDbs(argv: readonly Buffer[]): [number, number] | undefined {
  return upper(argv, 0) === 'SWAPDB' ? [num(argv, 1), num(argv, 2)] : undefined;
}

/** The other db a write puts its keys in: MOVE key db, COPY src dst DB n; undefined otherwise (COPY without DB too). */
export function targetDb(argv: readonly Buffer[]): number | undefined {
  const name = upper(argv, 0);
  if (name === 'MOVE') return num(argv, 2);
  if (name === 'COPY') {
    for (let i = 3; i < argv.length - 1; i++) if (upper(argv, i) === 'DB') return num(argv, i + 1);
  }
  return undefined;
}

/** A set of keys kept where later commands move them: SWAPDB, MOVE, RENAME(NX), COPY (… DB n). */
export class FollowedKeys {
  private readonly found = new Map<string, DbKey>();

  get size(): number {
    return this.found.size;
  }

  add(db: number, key: Buffer): void {
    this.found.set(`${db}:${key.toString('hex')}`, { db, key });
  }

  /** Applies what `argv`, run in `db`, does to where the keys are. */
  follow(db: number, argv: readonly Buffer[]): void {
    if (this.found.size === 0 || argv.length < 3) return;
    const id = (key: Buffer) => `${db}:${key.toString('hex')}`;
    const swap = swappedDbs(argv);
    if (swap) {
      const [a, b] = swap;
      const moved = [...this.found.values()];
      this.found.clear();
      for (const k of moved) this.add(k.db === a ? b : k.db === b ? a : k.db, k.key);
      return;
    }
    switch (upper(argv, 0)) {
      case 'MOVE':
        if (this.found.delete(id(argv[1]!))) this.add(targetDb(argv)!, argv[1]!);
        break;
      case 'RENAME':
      case 'RENAMENX':
        if (this.found.delete(id(argv[1]!))) this.add(db, argv[2]!);
        break;
      case 'COPY':
        if (this.found.has(id(argv[1]!))) this.add(targetDb(argv) ?? db, argv[2]!);
        break;
    }
  }

  list(): DbKey[] {
    return [...this.found.values()];
  }
}
