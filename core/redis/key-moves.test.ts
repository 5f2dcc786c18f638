// Key moves: SWAPDB/MOVE/COPY argv helpers and FollowedKeys tracking keys through SWAPDB, MOVE, RENAME(NX), COPY.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FollowedKeys, swappedDbs, targetDb } from './key-moves.js';

const argv = (...a: (string | Buffer)[]) => a.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x, 'latin1')));
const bin = Buffer.from([0x00, 0xff, 0x0a]);
/** The followed keys as sortable `db:key` strings (key bytes in hex). */
const listed = (f: FollowedKeys) =>
  f
    .list()
    .map((k) => `${k.db}:${k.key.toString('hex')}`)
    .sort();
const id = (db: number, key: string | Buffer) =>
  `${db}:${(Buffer.isBuffer(key) ? key : Buffer.from(key)).toString('hex')}`;

describe('swappedDbs', () => {
  it('gives the two dbs of SWAPDB, any letter case', () => {
    assert.deepEqual(swappedDbs(argv('SWAPDB', '0', '7')), [0, 7]);
    assert.deepEqual(swappedDbs(argv('swapdb', '12', '3')), [12, 3]);
  });

  it('is undefined for other commands', () => {
    assert.equal(swappedDbs(argv('MOVE', 'k', '1')), undefined);
    assert.equal(swappedDbs([]), undefined);
  });
});

describe('targetDb', () => {
  it('reads MOVE key db and COPY … DB n wherever DB stands among the options', () => {
    assert.equal(targetDb(argv('MOVE', 'k', '4')), 4);
    assert.equal(targetDb(argv('move', 'k', '9')), 9);
    assert.equal(targetDb(argv('COPY', 'a', 'b', 'DB', '2')), 2);
    assert.equal(targetDb(argv('COPY', 'a', 'b', 'REPLACE', 'db', '5')), 5);
    assert.equal(targetDb(argv('COPY', 'a', 'b', 'DB', '6', 'REPLACE')), 6);
  });

  it('is undefined for COPY in the same db, a dangling DB, key names "DB", and other commands', () => {
    assert.equal(targetDb(argv('COPY', 'a', 'b')), undefined);
    assert.equal(targetDb(argv('COPY', 'a', 'b', 'REPLACE')), undefined);
    assert.equal(targetDb(argv('COPY', 'a', 'b', 'DB')), undefined);
    assert.equal(targetDb(argv('COPY', 'DB', 'DB')), undefined);
    assert.equal(targetDb(argv('RENAME', 'a', 'b')), undefined);
  });
});

describe('FollowedKeys', () => {
  it('holds each (db, key) once, binary keys by their bytes', () => {
    const f = new FollowedKeys();
    f.add(0, Buffer.from('k'));
    f.add(0, Buffer.from('k'));
    f.add(1, Buffer.from('k'));
    f.add(0, bin);
    assert.equal(f.size, 3);
    assert.deepEqual(listed(f), [id(0, bin), id(0, 'k'), id(1, 'k')].sort());
  });

  it('SWAPDB exchanges the two dbs and leaves the others, whatever db it runs in', () => {
    const f = new FollowedKeys();
    f.add(0, Buffer.from('a'));
    f.add(1, Buffer.from('b'));
    f.add(2, Buffer.from('c'));
    f.follow(9, argv('SWAPDB', '0', '1'));
    assert.deepEqual(listed(f), [id(1, 'a'), id(0, 'b'), id(2, 'c')].sort());
  });

  it('MOVE takes a followed key of the current db to the target db', () => {
    const f = new FollowedKeys();
    f.add(0, bin);
    f.follow(1, argv('MOVE', bin, '5'));
    assert.deepEqual(listed(f), [id(0, bin)], 'a key of another db does not move');
    f.follow(0, argv('MOVE', bin, '5'));
    assert.deepEqual(listed(f), [id(5, bin)]);
  });

  it('RENAME and RENAMENX follow the key to its new name in the same db', () => {
    const f = new FollowedKeys();
    f.add(3, Buffer.from('old'));
    f.follow(3, argv('RENAME', 'other', 'x'));
    assert.deepEqual(listed(f), [id(3, 'old')]);
    f.follow(3, argv('rename', 'old', 'mid'));
    assert.deepEqual(listed(f), [id(3, 'mid')]);
    f.follow(3, argv('RENAMENX', 'mid', bin));
    assert.deepEqual(listed(f), [id(3, bin)]);
  });

  it('COPY keeps the source and adds the copy, in the same db or the DB option', () => {
    const f = new FollowedKeys();
    f.add(0, Buffer.from('src'));
    f.follow(0, argv('COPY', 'src', 'dst'));
    assert.deepEqual(listed(f), [id(0, 'dst'), id(0, 'src')].sort());
    f.follow(0, argv('COPY', 'src', 'far', 'DB', '8', 'REPLACE'));
    assert.deepEqual(listed(f), [id(0, 'dst'), id(0, 'src'), id(8, 'far')].sort());
    f.follow(8, argv('COPY', 'nope', 'x'));
    assert.equal(f.size, 3);
  });

  it('ignores other commands, short argv and an empty set', () => {
    const f = new FollowedKeys();
    f.follow(0, argv('SWAPDB', '0', '1'));
    assert.equal(f.size, 0);
    f.add(0, Buffer.from('k'));
    f.follow(0, argv('SET', 'k', 'v'));
    f.follow(0, argv('DEL', 'k'));
    f.follow(0, argv('MOVE', 'k'));
    assert.deepEqual(listed(f), [id(0, 'k')]);
  });

  it('follows a chain of moves in order', () => {
    const f = new FollowedKeys();
    f.add(0, Buffer.from('k'));
    f.follow(0, argv('RENAME', 'k', 'k2'));
    f.follow(0, argv('MOVE', 'k2', '1'));
    f.follow(0, argv('SWAPDB', '1', '2'));
    f.follow(2, argv('COPY', 'k2', 'k3', 'DB', '0'));
    assert.deepEqual(listed(f), [id(0, 'k3'), id(2, 'k2')].sort());
  });
});
