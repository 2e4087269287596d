import { decode, encode } from '../protocol/codec.js';

/** Items of one run, as they travel: an encoded payload, or decoded once it had to be split. */
export interface Chunk {
  run: number;
  count: number;
  payload?: Buffer;
  items?: unknown[];
  /** Id in the queue journal, when the typology persists its queues. */
  jid?: number;
  /** Set on a chunk just split off another: the parent's journal id. */
  parentJid?: number;
  /** How many stage processes crashed while holding these items. */
  crashes?: number;
}

export function chunkPayload(c: Chunk): Buffer {
  return c.payload ?? encode(c.items!);
}

/**
 * The queue in front of one stage. It counts items, not messages; its
 * capacity is a soft bound the dispatcher respects (upstream work is not
 * handed out while the queue is full), so it can exceed the bound by at most
 * what was already in flight.
 */
export class EdgeQueue {
  private chunks: Chunk[] = [];
  private head = 0;
  size = 0;

  constructor(readonly capacity: number) {}

  get full(): boolean {
    return this.size >= this.capacity;
  }

  get empty(): boolean {
    return this.size === 0;
  }

  push(chunk: Chunk): void {
    if (chunk.count === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.count;
  }

  /** Put items back at the front (a lease whose process died). */
  unshift(chunk: Chunk): void {
    if (chunk.count === 0) return;
    if (this.head > 0) this.chunks[--this.head] = chunk;
    else this.chunks.unshift(chunk);
    this.size += chunk.count;
  }

  /** The chunk at the front, without taking it. */
  peek(): Chunk | undefined {
    return this.size === 0 ? undefined : this.chunks[this.head];
  }

  /** Takes up to `max` items of one run from the front. */
  take(max: number): Chunk | undefined {
    if (this.size === 0 || max <= 0) return undefined;
    const first = this.chunks[this.head]!;
    if (first.count <= max) {
      this.chunks[this.head++] = undefined as unknown as Chunk;
      if (this.head > 1024 && this.head * 2 > this.chunks.length) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
      this.size -= first.count;
      return first;
    }
    if (!first.items) {
      first.items = decode(first.payload!) as unknown[];
      first.payload = undefined;
    }
    const items = first.items.splice(0, max);
    first.count -= max;
    this.size -= max;
    return { run: first.run, count: max, items, parentJid: first.jid, crashes: first.crashes };
  }

  /** Removes everything (typology deleted); returns the chunks. */
  clear(): Chunk[] {
    const out = this.chunks.slice(this.head);
    this.chunks = [];
    this.head = 0;
    this.size = 0;
    return out;
  }
}
