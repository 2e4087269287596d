import { encode, findUntransferable, previewItem } from '../protocol/codec.js';
import { EMIT_WINDOW } from '../protocol/messages.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Send } from './notch-runner.js';
import { userFrame } from './invoke.js';

const CHUNK_ITEMS = 512;
const CHUNK_LINGER_MS = 10;

/**
 * Calls the hydrant function on every tick and streams what it returns
 * (array, iterable, async iterable or a single value) to the master in
 * chunks, at most EMIT_WINDOW chunks ahead of the master's acknowledgements:
 * a full first queue slows the hydrant instead of growing memory.
 */
export class HydrantRunner {
  private seq = 0;
  private readonly unacked = new Set<number>();
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly fn: (...args: unknown[]) => unknown,
    private readonly args: unknown[],
    private readonly stage: string,
    private readonly maxItemBytes: number,
    private readonly send: Send,
    private readonly log: Logger,
  ) {}

  onAck(seq: number): void {
    this.unacked.delete(seq);
    while (this.unacked.size < EMIT_WINDOW && this.waiters.length > 0) this.waiters.shift()!();
  }

  /**
   * One tick. `skip` > 0 resumes a tick whose earlier process died (or whose
   * master restarted): the function runs again and its first `skip` items,
   * already taken, are not sent twice. This assumes the hydrant yields the
   * same items in the same order for the same tick, as a listing does.
   */
  async tick(run: number, skip = 0): Promise<void> {
    let count = 0;
    let toSkip = skip;
    // Items that could not be sent: counted as failed in the run, first reason kept.
    let rejected = 0;
    let rejectedWhy: string | undefined;
    let chunk: unknown[] = [];
    const flush = async () => {
      if (chunk.length === 0) return;
      const items = chunk;
      chunk = [];
      while (this.unacked.size >= EMIT_WINDOW) await new Promise<void>((r) => this.waiters.push(r));
      let payload = encode(items);
      if (payload.length > this.maxItemBytes) {
        const kept = items.filter((item) => {
          const size = encode(item).length;
          if (size <= this.maxItemBytes) return true;
          count--;
          rejected++;
          rejectedWhy ??= `an item is ${size} bytes, over the ${this.maxItemBytes}-byte limit`;
          this.log.warn({ stage: this.stage, run, size }, `hydrant item skipped: ${size} bytes is over the ${this.maxItemBytes}-byte item limit`);
          return false;
        });
        if (kept.length === 0) return;
        payload = encode(kept);
        items.length = 0;
        items.push(...kept);
      }
      const seq = ++this.seq;
      this.unacked.add(seq);
      this.send({ k: 'p.emit', run, seq, n: items.length }, payload);
    };
    const add = async (item: unknown) => {
      if (item === undefined || item === null) return;
      const bad = findUntransferable(item);
      if (bad) {
        this.log.warn({ stage: this.stage, run, item: previewItem(item) }, `hydrant item skipped: ${bad}`);
        rejected++;
        rejectedWhy ??= bad;
        return;
      }
      if (toSkip > 0) {
        toSkip--;
        return;
      }
      chunk.push(item);
      count++;
      if (chunk.length >= CHUNK_ITEMS) await flush();
    };
    try {
      let result = this.fn(...this.args);
      if (result && typeof (result as PromiseLike<unknown>).then === 'function') result = await result;
      if (result !== null && typeof result === 'object' && Symbol.asyncIterator in (result as object)) {
        let last = Date.now();
        for await (const item of result as AsyncIterable<unknown>) {
          await add(item);
          // Slow generators should not hold finished items back.
          if (Date.now() - last >= CHUNK_LINGER_MS) {
            await flush();
            last = Date.now();
          }
        }
      } else if (result !== null && typeof result === 'object' && Symbol.iterator in (result as object) && !ArrayBuffer.isView(result)) {
        for (const item of result as Iterable<unknown>) await add(item);
      } else {
        await add(result);
      }
      await flush();
      this.send({ k: 'p.tickDone', run, count, rejected, error: rejectedWhy && `${rejected} item(s) could not be sent: ${rejectedWhy}` });
    } catch (err) {
      await flush();
      const at = userFrame(err);
      this.log.error({ stage: this.stage, run, err: describeError(err), at }, 'hydrant failed');
      this.send({ k: 'p.tickDone', run, count, rejected, error: at ? `${describeError(err)} (at ${at})` : describeError(err) });
    }
  }
}
