/**
 * Run accounting. A run is everything one tick produced; it is finished when
 * every hydrant has returned and each item reached the bocca, was dropped, or
 * failed. `live` counts items that exist somewhere (queued or leased):
 * +n when a hydrant emits, +out−in when a stage finishes a lease.
 */
export interface RunRecord {
  id: number;
  typology: string;
  version: number;
  fireTime: number;
  startedAt: number;
  finishedAt?: number;
  /** Items the hydrants emitted. */
  in: number;
  /** Items the bocca wrote. */
  out: number;
  dropped: number;
  failed: number;
  live: number;
  /** Per hydrant (by index): items taken so far, tick over, process crashes during this tick. */
  hydrants: HydrantProgress[];
  errors: string[];
}

export interface HydrantProgress {
  emitted: number;
  done: boolean;
  crashes: number;
}

export interface RunSummary extends Omit<RunRecord, 'live' | 'hydrants'> {
  status: 'running' | 'finished';
  seconds: number;
}

export function summarize(r: RunRecord, now: number): RunSummary {
  const { live: _l, hydrants: _h, ...rest } = r;
  return {
    ...rest,
    errors: [...r.errors],
    status: r.finishedAt === undefined ? 'running' : 'finished',
    seconds: ((r.finishedAt ?? now) - r.startedAt) / 1000,
  };
}

export class RunBook {
  private readonly active = new Map<number, RunRecord>();
  private readonly recent: RunRecord[] = [];

  constructor(private readonly keep = 100) {}

  start(r: RunRecord): void {
    this.active.set(r.id, r);
  }

  get(id: number): RunRecord | undefined {
    return this.active.get(id);
  }

  get inProgress(): number {
    return this.active.size;
  }

  /** Returns the record if this change finished it. */
  settle(id: number, now: number): RunRecord | undefined {
    const r = this.active.get(id);
    if (!r || r.live > 0 || r.hydrants.some((h) => !h.done)) return undefined;
    r.finishedAt = now;
    this.active.delete(id);
    this.recent.push(r);
    if (this.recent.length > this.keep) this.recent.shift();
    return r;
  }

  list(): RunRecord[] {
    return [...this.recent, ...this.active.values()];
  }
}
