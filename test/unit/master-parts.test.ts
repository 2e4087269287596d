import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decode, encode, findUntransferable } from '../../src/protocol/codec.js';
import { EdgeQueue, chunkPayload } from '../../src/master/edge-queue.js';
import { leastLoaded } from '../../src/master/placement.js';
import { QueueJournal } from '../../src/master/queue-journal.js';
import { RunBook } from '../../src/master/runs.js';
import { CreditPolicy } from '../../src/stage/credit.js';

describe('EdgeQueue', () => {
  it('hands out whole chunks, splits only when a lease is smaller, and keeps order', () => {
    const q = new EdgeQueue(100);
    q.push({ run: 1, count: 3, payload: encode([1, 2, 3]) });
    q.push({ run: 2, count: 2, payload: encode([4, 5]) });
    expect(q.size).toBe(5);
    const a = q.take(2)!;
    expect(decode(chunkPayload(a))).toEqual([1, 2]);
    expect(a.run).toBe(1);
    const b = q.take(10)!;
    expect(decode(chunkPayload(b))).toEqual([3]);
    const c = q.take(10)!;
    expect(decode(chunkPayload(c))).toEqual([4, 5]);
    expect(q.empty).toBe(true);
  });

  it('puts a lost lease back at the front', () => {
    const q = new EdgeQueue(100);
    q.push({ run: 1, count: 1, payload: encode(['b']) });
    q.unshift({ run: 1, count: 1, payload: encode(['a']) });
    expect(decode(chunkPayload(q.take(1)!))).toEqual(['a']);
    expect(decode(chunkPayload(q.take(1)!))).toEqual(['b']);
  });

  it('reports full at capacity', () => {
    const q = new EdgeQueue(2);
    q.push({ run: 1, count: 2, payload: encode([1, 2]) });
    expect(q.full).toBe(true);
  });
});

describe('placement', () => {
  it('picks the worker with the fewest threads, then fewest processes, then the oldest', () => {
    const ws = [
      { id: 'a', threads: 10, processes: 1, joinedAt: 1 },
      { id: 'b', threads: 5, processes: 3, joinedAt: 2 },
      { id: 'c', threads: 5, processes: 2, joinedAt: 3 },
      { id: 'd', threads: 5, processes: 2, joinedAt: 0 },
    ];
    expect(leastLoaded(ws)?.id).toBe('d');
    expect(leastLoaded([])).toBeUndefined();
  });
});

describe('RunBook', () => {
  it('finishes a run only when every hydrant returned and no item is left', () => {
    const book = new RunBook();
    const r = { id: 1, typology: 't', version: 1, fireTime: 0, startedAt: 0, in: 2, out: 0, dropped: 0, failed: 0, live: 2, hydrants: [{ emitted: 2, done: false, crashes: 0 }], errors: [] };
    book.start(r);
    expect(book.settle(1, 5)).toBeUndefined();
    r.hydrants[0]!.done = true;
    expect(book.settle(1, 5)).toBeUndefined();
    r.live = 0;
    expect(book.settle(1, 5)?.finishedAt).toBe(5);
    expect(book.inProgress).toBe(0);
  });
});

describe('CreditPolicy', () => {
  it('asks for about `threads` items when work is slow and for many when it is fast', () => {
    const slow = new CreditPolicy(5);
    slow.observe(5, 2000);
    expect(slow.target).toBe(5);
    expect(slow.leaseSize).toBe(1);
    const fast = new CreditPolicy(1);
    fast.observe(1000, 1);
    expect(fast.target).toBe(CreditPolicy.MAX);
  });
});

describe('findUntransferable', () => {
  it('accepts plain data and names what cannot cross a process', () => {
    expect(findUntransferable({ a: [1, 'x', null, new Date(), Buffer.from('b')] })).toBeUndefined();
    expect(findUntransferable({ a: { f: () => 1 } })).toBe('item.a.f is a function');
    expect(findUntransferable(new Map())).toMatch(/instance of Map/);
  });
});

describe('QueueJournal', () => {
  it('restores what was queued and not done, including split-off leases', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rezina-journal-'));
    try {
      const { journal } = QueueJournal.open(dir, 't');
      const a = journal.put('s1', 1, 4, encode([1, 2, 3, 4]));
      const b = journal.put('s1', 1, 1, encode([9]));
      const lease = journal.split(a, 2, encode([1, 2]));
      journal.del(lease);
      journal.del(b);
      journal.put('s2', 1, 1, encode([10]));
      journal.close();
      const { journal: again, restored } = QueueJournal.open(dir, 't');
      again.close();
      const byStage = Object.fromEntries(restored.map((c) => [c.stage, c.items]));
      expect(byStage).toEqual({ s1: [3, 4], s2: [10] });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('restores open runs with their counts and where each hydrant was', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rezina-journal-'));
    try {
      const { journal } = QueueJournal.open(dir, 't');
      journal.run({ id: 7, version: 1, fireTime: 1, startedAt: 1, in: 0, out: 0, dropped: 0, failed: 0, hydrants: [{ emitted: 0, done: false }] });
      journal.put('s', 7, 3, encode([1, 2, 3]));
      journal.emit(7, 0, 3);
      journal.account(7, 2, 1, 0);
      journal.run({ id: 8, version: 1, fireTime: 2, startedAt: 2, in: 0, out: 0, dropped: 0, failed: 0, hydrants: [] });
      journal.end(8);
      journal.close();
      const { journal: again, runs } = QueueJournal.open(dir, 't');
      again.close();
      expect(runs).toEqual([{ id: 7, version: 1, fireTime: 1, startedAt: 1, in: 3, out: 2, dropped: 1, failed: 0, hydrants: [{ emitted: 3, done: false }] }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ignores a torn last record', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rezina-journal-'));
    try {
      const { journal } = QueueJournal.open(dir, 't');
      journal.put('s', 1, 1, encode(['x']));
      journal.close();
      fs.appendFileSync(path.join(dir, 't.journal'), Buffer.from([0, 0, 0, 50, 1, 2]));
      const { journal: again, restored } = QueueJournal.open(dir, 't');
      again.close();
      expect(restored.map((c) => c.items)).toEqual([['x']]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
