import type { Backend } from '../backends/types.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { CreditPolicy } from './credit.js';
import type { Send } from './notch-runner.js';
import type { Failure } from '../protocol/messages.js';
import { encode } from '../protocol/codec.js';

export interface BoccaRunnerOptions {
  mode: 'stream' | 'batch';
  threads: number;
  batchSize: number;
  lingerMs: number;
}

interface Lease {
  id: number;
  run: number;
  items: unknown[];
}

const MAX_BACKOFF_MS = 5000;
/** A write the backend refuses (not a connection problem) is tried this often before the batch is split. */
const REFUSED_WRITE_ATTEMPTS = 4;

/**
 * Feeds leased items to a backend. A lease is acknowledged only after its
 * items are written; a failing write is retried with backoff until it
 * succeeds (a database that is down loses nothing: its items stay leased,
 * credit stops, and back-pressure reaches the hydrant).
 */
export class BoccaRunner {
  private readonly credit: CreditPolicy;
  private held = 0;
  private granted = 0;
  private active = 0;
  private readonly waiting: Lease[] = [];
  private lingerTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private closed = false;
  private onIdle?: () => void;

  constructor(
    private readonly backend: Backend,
    private readonly opts: BoccaRunnerOptions,
    private readonly send: Send,
    /** Lines the stdout backend produced during the last write; sent to the master before p.done. */
    private readonly takeLines: () => string[],
    private readonly log: Logger,
  ) {
    this.credit = new CreditPolicy(opts.threads, opts.mode === 'batch' ? Math.max(opts.threads, opts.batchSize) : opts.threads);
  }

  initialCredit(): { credit: number; leaseSize: number } {
    this.granted = this.credit.target;
    return { credit: this.granted, leaseSize: this.leaseSize() };
  }

  onLease(id: number, run: number, items: unknown[]): void {
    this.held += items.length;
    this.granted -= items.length;
    this.waiting.push({ id, run, items });
    this.pump();
  }

  drain(): Promise<void> {
    this.draining = true;
    this.pump(true);
    if (this.held === 0) return Promise.resolve();
    return new Promise((resolve) => (this.onIdle = resolve));
  }

  close(): void {
    this.closed = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
  }

  private leaseSize(): number {
    return this.opts.mode === 'batch' ? Math.max(1, Math.min(this.opts.batchSize, this.credit.target)) : this.credit.leaseSize;
  }

  private pump(force = false): void {
    while (this.waiting.length > 0 && this.active < this.opts.threads) {
      if (this.opts.mode === 'stream') {
        this.writeLeases([this.waiting.shift()!]);
        continue;
      }
      const queued = this.waiting.reduce((n, l) => n + l.items.length, 0);
      if (queued < this.opts.batchSize && !force && !this.draining) {
        if (!this.lingerTimer) this.lingerTimer = setTimeout(() => {
          this.lingerTimer = undefined;
          this.pump(true);
        }, this.opts.lingerMs);
        return;
      }
      const take: Lease[] = [];
      let n = 0;
      while (this.waiting.length > 0 && (n < this.opts.batchSize || take.length === 0)) {
        const l = this.waiting.shift()!;
        take.push(l);
        n += l.items.length;
      }
      if (this.lingerTimer) {
        clearTimeout(this.lingerTimer);
        this.lingerTimer = undefined;
      }
      this.writeLeases(take);
      force = false;
    }
  }

  private writeLeases(leases: Lease[]): void {
    this.active++;
    const items = leases.length === 1 ? leases[0]!.items : leases.flatMap((l) => l.items);
    const started = performance.now();
    void this.writeResilient(items, leases[0]!.run).then((failed) => {
      this.active--;
      this.credit.observe(items.length, performance.now() - started);
      const lines = this.takeLines();
      if (lines.length > 0) this.send({ k: 'p.stdout', n: lines.length }, Buffer.from(lines.join('\n') + '\n'));
      let offset = 0;
      for (const l of leases) {
        const mine = failed.filter((f) => f.index >= offset && f.index < offset + l.items.length);
        offset += l.items.length;
        this.held -= l.items.length;
        const credit = this.draining ? 0 : this.topUp();
        const failures: Failure[] = mine.map((f) => ({ error: f.error, attempts: f.attempts }));
        const frames: Buffer[] = [Buffer.alloc(0)];
        if (mine.length > 0) frames.push(encode(mine.map((f) => items[f.index])));
        this.send({ k: 'p.done', lease: l.id, out: l.items.length - mine.length, dropped: 0, failures, credit, leaseSize: this.leaseSize() }, ...frames);
      }
      if (this.draining && this.held === 0) this.onIdle?.();
      this.pump();
    });
  }

  /**
   * Writes until it succeeds. A backend that cannot be reached is retried with
   * backoff for as long as it takes (nothing is lost); a write the backend
   * refuses is retried a few times, then the batch is halved until the items
   * it refuses are found: those become dead letters, the rest is written.
   */
  private async writeResilient(items: unknown[], run: number): Promise<Array<{ index: number; error: string; attempts: number }>> {
    let backoff = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.backend.write(items);
        if (attempt > 1) this.log.info({ run, attempt }, 'bocca write succeeded after retrying');
        return [];
      } catch (err) {
        if (this.closed) throw err;
        this.takeLines(); // a failed write's partial lines would be printed twice
        const e = err as { code?: string; retryable?: boolean };
        const unreachable = e.code === 'E_BACKEND_UNREACHABLE';
        const retry = unreachable || (e.retryable !== false && attempt < REFUSED_WRITE_ATTEMPTS);
        if (retry) {
          this.log.warn({ run, attempt, items: items.length, err: describeError(err), retryInMs: backoff }, 'bocca write failed; retrying');
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
          continue;
        }
        if (items.length === 1) {
          this.log.error({ run, err: describeError(err), attempts: attempt }, 'bocca refused an item; dead-lettered');
          return [{ index: 0, error: describeError(err), attempts: attempt }];
        }
        const mid = items.length >> 1;
        const left = await this.writeResilient(items.slice(0, mid), run);
        const right = await this.writeResilient(items.slice(mid), run);
        return [...left, ...right.map((f) => ({ ...f, index: f.index + mid }))];
      }
    }
  }

  private topUp(): number {
    const want = Math.max(0, this.credit.target - this.held - this.granted);
    this.granted += want;
    return want;
  }
}
