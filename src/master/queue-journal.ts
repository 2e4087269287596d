import fs from 'node:fs';
import path from 'node:path';
import { decode, encode } from '../protocol/codec.js';

/**
 * A write-ahead log of the items queued between the stages of one typology,
 * so a master killed with SIGKILL and started again loses nothing queued.
 *
 * Records, each `[u32 length][msgpack]`:
 *   ['put',   id, stage, run, count, payload]   items entered a stage's queue
 *   ['split', id, from, n, payload]            the first n items of `from` became chunk `id`
 *   ['del',   id]                               the chunk is done (its outputs were put first)
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

const COMPACT_BYTES = 64 * 1024 * 1024;

export class QueueJournal {
  private fd: number;
  private pending: Buffer[] = [];
  private callbacks: Array<() => void> = [];
  private scheduled = false;
  private nextId = 1;
  private bytes = 0;
  private readonly live = new Set<number>();

  private constructor(private readonly file: string) {
    this.fd = fs.openSync(file, 'a');
    this.bytes = fs.fstatSync(this.fd).size;
  }

  /** Opens (and first replays) the journal of one typology. */
  static open(dir: string, typology: string): { journal: QueueJournal; restored: RestoredChunk[] } {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${typology}.journal`);
    const restored = replay(file);
    // Start from a compact file holding just what is still queued.
    const tmp = `${file}.tmp`;
    const j0 = new QueueJournal(tmp);
    fs.ftruncateSync(j0.fd, 0);
    j0.bytes = 0;
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
    return { journal, restored };
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
    if (this.bytes > COMPACT_BYTES && this.live.size === 0) {
      // Nothing queued: start the file afresh instead of growing it forever.
      fs.ftruncateSync(this.fd, 0);
      this.bytes = 0;
    }
  }
}

/** Reads a journal and returns the chunks still queued; a torn last record is ignored. */
function replay(file: string): RestoredChunk[] {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return [];
  }
  const chunks = new Map<number, RestoredChunk>();
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
    }
  }
  return [...chunks.values()];
}
