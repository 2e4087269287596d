/**
 * How many items a stage process asks for at once. Slow functions get about
 * `threads` (one item per lease, so no item waits behind a slow neighbour);
 * fast ones get enough to cover ~25 ms of work, so per-message costs vanish.
 */
export class CreditPolicy {
  private perItemMs = Number.NaN;
  static readonly MAX = 4096;
  static readonly WINDOW_MS = 25;

  constructor(private readonly threads: number, private readonly floor = threads) {}

  /** Record that `n` items took `elapsedMs` of wall time in this process. */
  observe(n: number, elapsedMs: number): void {
    if (n <= 0) return;
    const sample = Math.max(elapsedMs, 0.001) / n;
    this.perItemMs = Number.isNaN(this.perItemMs) ? sample : this.perItemMs * 0.7 + sample * 0.3;
  }

  /** Items this process wants to hold (queued + working). */
  get target(): number {
    if (Number.isNaN(this.perItemMs)) return this.floor;
    const byTime = Math.ceil(CreditPolicy.WINDOW_MS / this.perItemMs);
    return Math.min(CreditPolicy.MAX, Math.max(this.floor, byTime));
  }

  /** Preferred lease size: whole target for fast work, one item per thread for slow work. */
  get leaseSize(): number {
    return Math.max(1, Math.floor(this.target / this.threads));
  }
}
