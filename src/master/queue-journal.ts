import fs from 'node:fs';
import path from 'node:path';
import { decode, encode } from '../protocol/codec.js';

/**
 * A write-ahead log of one typology's runs and of the items queued between
 * its stages, so a master killed with SIGKILL and started again loses nothing
 * queued, resumes hydrants that were mid-tick, and keeps its run counts.
 *
 * Records, each `[u32 length][msgpack]`:
 *   ['put',   id, stage, run, count, payload]   items entered a stage's queue
 *   ['split', id, from, n, payload]            the first n items of `from` became chunk `id`
 *   ['del',   id]                               the chunk is done (its outputs were put first)
 *   ['run',   run, state]                       a run started (state: counts, hydrants)
 *   ['emit',  run, hydrant, n]                  a hydrant's items were taken (after their 'put')
 *   ['tick',  run, hydrant]                     that hydrant's tick is over
 *   ['acct',  run, out, dropped, failed]        counts of a finished lease
 *   ['end',   run]                              the run finished
 *
 * Writes are buffered for one event-loop turn and then written in one
 * `writeSync` (the OS has them even if the process dies); callers that must
 * not acknowledge before the write (hydrant emits) use `afterWrite`.
 */
export interface RestoredChunk {
  id: number;
  stage: string;
  run: number;
  count: number;
  items: unknown[];
}

/** A run as the journal knows it. */
export interface JournaledRun {
  id: number;
  version: number;
  fireTime: number;
  startedAt: number;
  in: number;
  out: number;
  dropped: number;
  failed: number;
  /** Per hydrant (by index): items taken so far, and whether its tick is over. */
  hydrants: Array<{ emitted: number; done: boolean }>;
}

const COMPACT_BYTES = 64 * 1024 * 1024;

export class QueueJournal {
  private fd: number;
  private pending: Buffer[] = [];
  private callbacks: Array<() => void> = [];
  private scheduled = false;
  private nextId = 1;
  private bytes = 0;
  private readonly live = new Set<number>();
  private readonly activeRuns = new Set<number>();

  private constructor(private readonly file: string) {
    this.fd = fs.openSync(file, 'a');
    this.bytes = fs.fstatSync(this.fd).size;
  }

  /** Opens (and first replays) the journal of one typology. */
  static open(dir: string, typology: string): { journal: QueueJournal; restored: RestoredChunk[]; runs: JournaledRun[] } {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${typology}.journal`);
    const { chunks: restored, runs } = replay(file);
    // Start from a compact file holding just what is still queued.
    const tmp = `${file}.tmp`;
    const j0 = new QueueJournal(tmp);
    fs.ftruncateSync(j0.fd, 0);
    j0.bytes = 0;
    for (const r of runs) j0.run(r);
    for (const c of restored) {
      c.id = j0.nextId++;
      j0.live.add(c.id);
      j0.append(['put', c.id, c.stage, c.run, c.count, encode(c.items)]);
    }
    j0.flushNow();
    fs.closeSync(j0.fd);
    fs.renameSync(tmp, file);
    const journal = new QueueJournal(file);
    journal.nextId = j0.nextId;
    for (const id of j0.live) journal.live.add(id);
    for (const id of j0.activeRuns) journal.activeRuns.add(id);
    return { journal, restored, runs };
  }

  run(r: JournaledRun): void {
    this.activeRuns.add(r.id);
    this.append(['run', r.id, r]);
  }

  emit(run: number, hydrant: number, n: number): void {
    this.append(['emit', run, hydrant, n]);
  }

  tickOver(run: number, hydrant: number): void {
    this.append(['tick', run, hydrant]);
  }

  account(run: number, out: number, dropped: number, failed: number): void {
    if (out || dropped || failed) this.append(['acct', run, out, dropped, failed]);
  }

  end(run: number): void {
    if (!this.activeRuns.delete(run)) return;
    this.append(['end', run]);
  }

  put(stage: string, run: number, count: number, payload: Buffer): number {
    const id = this.nextId++;
    this.live.add(id);
    this.append(['put', id, stage, run, count, payload]);
    return id;
  }

  split(from: number, n: number, payload: Buffer): number {
    const id = this.nextId++;
    this.live.add(id);
    this.append(['split', id, from, n, payload]);
    return id;
  }

  del(id: number): void {
    if (!this.live.delete(id)) return;
    this.append(['del', id]);
  }

  /** Runs `fn` once everything appended so far is written. */
  afterWrite(fn: () => void): void {
    this.callbacks.push(fn);
    this.schedule();
  }

  close(): void {
    this.flushNow();
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
  }

  /** Delete the journal (typology removed and drained). */
  destroy(): void {
    this.close();
    fs.rmSync(this.file, { force: true });
  }

  private append(record: unknown[]): void {
    const body = encode(record);
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(body.length, 0);
    this.pending.push(len, body);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flushNow());
  }

  private flushNow(): void {
    this.scheduled = false;
    if (this.pending.length > 0) {
      const buf = Buffer.concat(this.pending);
      this.pending = [];
      fs.writeSync(this.fd, buf);
      this.bytes += buf.length;
    }
    const cbs = this.callbacks;
    this.callbacks = [];
    for (const cb of cbs) cb();
    if (this.bytes > COMPACT_BYTES && this.live.size === 0 && this.activeRuns.size === 0) {
      // Nothing queued, no run open: start the file afresh instead of growing it forever.
      fs.ftruncateSync(this.fd, 0);
      this.bytes = 0;
    }
  }
}

/** Reads a journal: the chunks still queued and the runs not finished; a torn last record is ignored. */
function replay(file: string): { chunks: RestoredChunk[]; runs: JournaledRun[] } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return { chunks: [], runs: [] };
  }
  const chunks = new Map<number, RestoredChunk>();
  const runs = new Map<number, JournaledRun>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt32BE(off);
    if (off + 4 + len > buf.length) break;
    let rec: unknown[];
    try {
      rec = decode(buf.subarray(off + 4, off + 4 + len)) as unknown[];
    } catch {
      break;
    }
    off += 4 + len;
    const [kind, id] = rec as [string, number];
    if (kind === 'put') {
      const [, , stage, run, count, payload] = rec as [string, number, string, number, number, Buffer];
      chunks.set(id, { id, stage, run, count, items: decode(payload) as unknown[] });
    } else if (kind === 'split') {
      const [, , from, n, payload] = rec as [string, number, number, number, Buffer];
      const parent = chunks.get(from);
      if (!parent) continue;
      parent.items.splice(0, n);
      parent.count -= n;
      if (parent.count <= 0) chunks.delete(from);
      chunks.set(id, { id, stage: parent.stage, run: parent.run, count: n, items: decode(payload) as unknown[] });
    } else if (kind === 'del') {
      chunks.delete(id);
    } else if (kind === 'run') {
      runs.set(id, { ...(rec[2] as JournaledRun), hydrants: (rec[2] as JournaledRun).hydrants.map((h) => ({ ...h })) });
    } else if (kind === 'emit') {
      const r = runs.get(id);
      const h = r?.hydrants[rec[2] as number];
      if (r && h) {
        h.emitted += rec[3] as number;
        r.in += rec[3] as number;
      }
    } else if (kind === 'tick') {
      const h = runs.get(id)?.hydrants[rec[2] as number];
      if (h) h.done = true;
    } else if (kind === 'acct') {
      const r = runs.get(id);
      if (r) {
        r.out += rec[2] as number;
        r.dropped += rec[3] as number;
        r.failed += rec[4] as number;
      }
    } else if (kind === 'end') {
      runs.delete(id);
    }
  }
  return { chunks: [...chunks.values()], runs: [...runs.values()] };
}
