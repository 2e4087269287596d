import { encode, findUntransferable, previewItem } from '../protocol/codec.js';
import type { Failure } from '../protocol/messages.js';
import type { Logger } from '../log.js';
import { CreditPolicy } from './credit.js';
import { invoke, isThenable, type InvokeOptions, type Outcome } from './invoke.js';

export type Send = (header: object, ...payloads: Buffer[]) => void;

interface Lease {
  id: number;
  run: number;
  items: unknown[];
  results: unknown[];
  failures: Failure[];
  failedItems: unknown[];
  remaining: number;
  startedAt: number;
}

export interface NotchRunnerOptions extends InvokeOptions {
  stage: string;
  threads: number;
  maxItemBytes: number;
}

/**
 * Runs one notch function over leased items, `threads` at a time.
 * Outputs go back in one p.done per lease, in the lease's order;
 * undefined/null outputs are dropped (the notch is a filter).
 */
export class NotchRunner {
  private readonly pending: Array<{ lease: Lease; index: number }> = [];
  private active = 0;
  private held = 0;
  private granted = 0;
  private readonly credit: CreditPolicy;
  private draining = false;
  private onIdle?: () => void;

  constructor(
    private readonly fn: (item: unknown) => unknown,
    private readonly opts: NotchRunnerOptions,
    private readonly send: Send,
    private readonly log: Logger,
  ) {
    this.credit = new CreditPolicy(opts.threads);
  }

  /** First credit, sent with p.ready. */
  initialCredit(): { credit: number; leaseSize: number } {
    this.granted = this.credit.target;
    return { credit: this.granted, leaseSize: this.credit.leaseSize };
  }

  onLease(id: number, run: number, items: unknown[]): void {
    const lease: Lease = { id, run, items, results: new Array(items.length), failures: [], failedItems: [], remaining: items.length, startedAt: performance.now() };
    this.held += items.length;
    this.granted -= items.length;
    if (items.length === 0) return this.finish(lease);
    for (let i = 0; i < items.length; i++) this.pending.push({ lease, index: i });
    this.pump();
  }

  /** Stop asking for work; resolves when every held item is done. */
  drain(): Promise<void> {
    this.draining = true;
    if (this.held === 0) return Promise.resolve();
    return new Promise((resolve) => (this.onIdle = resolve));
  }

  private pump(): void {
    while (this.pending.length > 0 && this.active < this.opts.threads) {
      const { lease, index } = this.pending.shift()!;
      const outcome = invoke(this.fn, [lease.items[index]], this.opts);
      if (isThenable(outcome)) {
        this.active++;
        (outcome as Promise<Outcome>).then((o) => {
          this.active--;
          this.settle(lease, index, o);
          this.pump();
        });
      } else {
        this.settle(lease, index, outcome);
      }
    }
  }

  private settle(lease: Lease, index: number, o: Outcome): void {
    if (o.ok) {
      lease.results[index] = o.value;
    } else {
      lease.results[index] = undefined;
      lease.failures.push({ error: o.error, attempts: o.attempts, at: o.at });
      lease.failedItems.push(lease.items[index]);
      this.log.warn({ stage: this.opts.stage, run: lease.run, item: previewItem(lease.items[index]), err: o.error, at: o.at, attempts: o.attempts }, 'item failed');
    }
    if (--lease.remaining === 0) this.finish(lease);
  }

  private finish(lease: Lease): void {
    const outputs: unknown[] = [];
    const sources: number[] = [];
    for (let i = 0; i < lease.results.length; i++) {
      const v = lease.results[i];
      if (v === undefined || v === null) continue; // dropped, or failed (counted in failures)
      const bad = findUntransferable(v, 'output');
      if (bad) {
        this.fail(lease, i, `cannot send the output of stage "${this.opts.stage}" to the next stage: ${bad}`);
        continue;
      }
      outputs.push(v);
      sources.push(i);
    }
    let payload = outputs.length > 0 ? encode(outputs) : undefined;
    if (payload && payload.length > this.opts.maxItemBytes) {
      // Fail just the oversized items; the rest go on.
      const kept: unknown[] = [];
      for (let j = 0; j < outputs.length; j++) {
        const size = encode(outputs[j]).length;
        if (size > this.opts.maxItemBytes) {
          this.fail(lease, sources[j]!, `output of stage "${this.opts.stage}" is ${size} bytes, over the ${this.opts.maxItemBytes}-byte item limit`);
        } else kept.push(outputs[j]);
      }
      outputs.length = 0;
      outputs.push(...kept);
      payload = kept.length > 0 ? encode(kept) : undefined;
    }
    const dropped = lease.items.length - outputs.length - lease.failures.length;
    this.credit.observe(lease.items.length, performance.now() - lease.startedAt);
    this.held -= lease.items.length;
    const credit = this.draining ? 0 : this.topUp();
    const frames: Buffer[] = [payload ?? Buffer.alloc(0)];
    if (lease.failures.length > 0) frames.push(encode(lease.failedItems.map((it) => (findUntransferable(it) ? previewItem(it) : it))));
    this.send(
      { k: 'p.done', lease: lease.id, out: outputs.length, dropped, failures: lease.failures, credit, leaseSize: this.credit.leaseSize },
      ...frames,
    );
    if (this.draining && this.held === 0) this.onIdle?.();
  }

  private fail(lease: Lease, index: number, error: string): void {
    lease.failures.push({ error, attempts: 1 });
    lease.failedItems.push(lease.items[index]);
    this.log.warn({ stage: this.opts.stage, run: lease.run, item: previewItem(lease.items[index]), err: error }, 'item failed');
  }

  /** Credit to hand back so that held + granted reaches the current target. */
  private topUp(): number {
    const want = Math.max(0, this.credit.target - this.held - this.granted);
    this.granted += want;
    return want;
  }
}
