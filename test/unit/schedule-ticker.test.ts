import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Clock } from '../../src/clock.js';
import type { ScheduleSpec } from '../../src/spec/types.js';
import { MAX_QUEUED_RUNS, Ticker, decideOverlap, zoneOf } from '../../src/schedule/index.js';

const spec = (s: Partial<ScheduleSpec>): ScheduleSpec => ({ overlap: 'allow', ...s });
const T0 = Date.UTC(2026, 11, 3, 20, 18, 3); // 2026-12-03 20:18:03Z
const DAY = 86_400_000;

/**
 * A clock whose time moves only when told, with timers that can fire early or
 * late (`drift`, ms, negative = early) like real ones do.
 */
class FakeClock implements Clock {
  t: number;
  drift = 0;
  readonly delays: number[] = [];
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  // A timer runs at its due time plus drift, but never before 1 ms after it was set (time always moves).
  #seq = 0;

  constructor(t: number) {
    this.t = t;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.delays.push(ms);
    const id = ++this.#seq;
    this.#timers.set(id, { at: Math.max(this.t + ms + this.drift, this.drift < 0 ? this.t + 1 : this.t), fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  get pendingTimers(): number {
    return this.#timers.size;
  }
  /** Moves time forward by `ms`, running each timer when due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#timers) if (!next || e[1].at < next[1].at) next = e;
      if (!next || next[1].at > end) break;
      this.#timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
  /** The machine was suspended: the wall clock jumps, no timer runs meanwhile. */
  jump(ms: number): void {
    this.t += ms;
  }
}

function recorder(clock: FakeClock): { ticks: Array<{ fireTime: number; at: number }>; onTick: (t: number) => void } {
  const ticks: Array<{ fireTime: number; at: number }> = [];
  return { ticks, onTick: (fireTime) => ticks.push({ fireTime, at: clock.now() }) };
}

describe('Ticker', () => {
  it('ticks on the wall-clock grid of its interval, at the computed instants', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), onTick, { clock });
    ticker.start();
    expect(ticker.nextFireTime).toBe(T0 + 7_000);
    clock.advance(30_000);
    expect(ticks).toEqual([
      { fireTime: T0 + 7_000, at: T0 + 7_000 },
      { fireTime: T0 + 17_000, at: T0 + 17_000 },
      { fireTime: T0 + 27_000, at: T0 + 27_000 },
    ]);
    expect(ticker.nextFireTime).toBe(T0 + 37_000);
    expect(ticker.done).toBe(false);
  });

  it('a fire time equal to now fires on the next timer turn, not inside start()', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({}), onTick, { clock });
    ticker.start();
    expect(ticks).toEqual([]);
    clock.advance(0);
    expect(ticks).toEqual([{ fireTime: T0, at: T0 }]);
  });

  it('once-only: fires once and is done', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ startTime: T0 + 5_000 }), onTick, { clock });
    ticker.start();
    expect(ticker.done).toBe(false);
    clock.advance(DAY);
    expect(ticks).toEqual([{ fireTime: T0 + 5_000, at: T0 + 5_000 }]);
    expect(ticker.done).toBe(true);
    expect(ticker.nextFireTime).toBeNull();
    expect(clock.pendingTimers).toBe(0);
  });

  it('chains timers for long waits and still fires at the exact instant', () => {
    for (const maxTimerMs of [undefined, DAY]) {
      const clock = new FakeClock(T0);
      const { ticks, onTick } = recorder(clock);
      const ticker = new Ticker(spec({ startTime: T0 + 40 * DAY + 123 }), onTick, { clock, maxTimerMs });
      ticker.start();
      clock.advance(41 * DAY);
      expect(ticks).toEqual([{ fireTime: T0 + 40 * DAY + 123, at: T0 + 40 * DAY + 123 }]);
      expect(Math.max(...clock.delays)).toBeLessThanOrEqual(maxTimerMs ?? 60_000);
      expect(clock.delays.length).toBeGreaterThan(40);
    }
  });

  it('re-checks the clock when a timer fires early: no tick before its instant', () => {
    const clock = new FakeClock(T0);
    clock.drift = -7; // every timer fires 7 ms early
    const { ticks, onTick } = recorder(clock);
    new Ticker(spec({ intervalMs: 1_000 }), onTick, { clock }).start();
    clock.advance(10_000);
    expect(ticks).toHaveLength(11); // T0 is on the 1 s grid: it fires at once, then 10 more
    for (const { fireTime, at } of ticks) {
      expect(at).toBeGreaterThanOrEqual(fireTime);
      expect(fireTime % 1_000).toBe(0);
    }
  });

  it('timers that fire late keep the grid (no drift) and report the scheduled instant', () => {
    const clock = new FakeClock(T0);
    clock.drift = 250;
    const { ticks, onTick } = recorder(clock);
    new Ticker(spec({ intervalMs: 1_000 }), onTick, { clock }).start();
    clock.advance(1_000 * 1_000);
    expect(ticks.length).toBeGreaterThan(990);
    ticks.forEach(({ fireTime, at }, i) => {
      expect(fireTime).toBe(T0 + i * 1_000);
      expect(at - fireTime).toBe(250);
    });
  });

  it('a late wake-up (machine suspended) fires once and skips the ticks it missed', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), onTick, { clock });
    ticker.start();
    clock.jump(45_000); // 20:18:48, pending 20:18:10 never ran
    clock.advance(0);
    expect(ticks).toEqual([{ fireTime: T0 + 7_000, at: T0 + 45_000 }]);
    expect(ticker.nextFireTime).toBe(T0 + 47_000); // 20:18:50: 20, 30 and 40 skipped
    clock.advance(10_000);
    expect(ticks.map((t) => t.fireTime)).toEqual([T0 + 7_000, T0 + 47_000]);
  });

  it('update(): interval 2 s → 1 s takes effect for the very next tick', () => {
    const start = Date.UTC(2026, 11, 3, 20, 18, 0);
    const clock = new FakeClock(start + 100);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ intervalMs: 2_000 }), onTick, { clock });
    ticker.start();
    clock.advance(2_400); // ticks at +2000; now +2500
    expect(ticks.map((t) => t.fireTime - start)).toEqual([2_000]);
    expect(ticker.nextFireTime).toBe(start + 4_000);
    ticker.update(spec({ intervalMs: 1_000 }));
    expect(ticker.nextFireTime).toBe(start + 3_000);
    clock.advance(2_000);
    expect(ticks.map((t) => t.fireTime - start)).toEqual([2_000, 3_000, 4_000]);
  });

  it('update() with the same timing keeps the pending timer', () => {
    const clock = new FakeClock(T0);
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), () => {}, { clock });
    ticker.start();
    const timersSet = clock.delays.length;
    ticker.update(spec({ intervalMs: 10_000, overlap: 'skip' }));
    expect(clock.delays.length).toBe(timersSet);
    expect(clock.pendingTimers).toBe(1);
    expect(ticker.spec.overlap).toBe('skip');
    expect(ticker.nextFireTime).toBe(T0 + 7_000);
  });

  it('update() after ticks never adds a catch-up run for a past startTime, nor repeats the last instant', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), onTick, { clock });
    ticker.start();
    clock.advance(7_000); // tick at 20:18:10, now exactly on it
    ticker.update(spec({ intervalMs: 5_000, startTime: T0 - 60_000 })); // grid …:03, …:08, …:13
    expect(ticker.nextFireTime).toBe(T0 + 10_000);
    ticker.update(spec({ intervalMs: 5_000 })); // grid …:10, …:15: …:10 already fired
    expect(ticker.nextFireTime).toBe(T0 + 12_000);
    clock.advance(5_000);
    expect(ticks.map((t) => t.fireTime - T0)).toEqual([7_000, 12_000]);
  });

  it('update() before the first tick behaves like a fresh start', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ startTime: T0 + DAY }), onTick, { clock });
    ticker.start();
    ticker.update(spec({ startTime: T0 - DAY, intervalMs: 60_000 })); // past startTime: one run now
    clock.advance(0);
    expect(ticks).toEqual([{ fireTime: T0, at: T0 }]);
  });

  it('update() of a done once-only schedule: a future instant fires again, a past one does not', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({}), onTick, { clock });
    ticker.start();
    clock.advance(1_000);
    expect(ticker.done).toBe(true);
    ticker.update(spec({ startTime: T0 - 5_000 }));
    expect(ticker.done).toBe(true);
    ticker.update(spec({ startTime: T0 + 5_000 }));
    expect(ticker.done).toBe(false);
    clock.advance(10_000);
    expect(ticks.map((t) => t.fireTime)).toEqual([T0, T0 + 5_000]);
    expect(ticker.done).toBe(true);
  });

  it('update() before start() only stores the spec', () => {
    const clock = new FakeClock(T0);
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), () => {}, { clock });
    ticker.update(spec({ intervalMs: 5_000 }));
    expect(clock.pendingTimers).toBe(0);
    ticker.start();
    expect(ticker.nextFireTime).toBe(T0 + 2_000);
  });

  it('stop() cancels; start() again resumes without repeating an instant', () => {
    const clock = new FakeClock(T0);
    const { ticks, onTick } = recorder(clock);
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), onTick, { clock });
    ticker.start();
    ticker.start(); // idempotent
    expect(clock.pendingTimers).toBe(1);
    clock.advance(7_000);
    ticker.stop();
    ticker.stop();
    expect(ticker.nextFireTime).toBeNull();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(30_000);
    expect(ticks).toHaveLength(1);
    ticker.start();
    expect(ticker.nextFireTime).toBe(T0 + 37_000); // 20:18:40 is now: due, and after the last tick
  });

  it('onTick may stop the ticker', () => {
    const clock = new FakeClock(T0);
    const fired: number[] = [];
    const ticker: Ticker = new Ticker(
      spec({ intervalMs: 1_000 }),
      (t) => {
        fired.push(t);
        if (fired.length === 2) ticker.stop();
      },
      { clock },
    );
    ticker.start();
    clock.advance(10_000);
    expect(fired).toHaveLength(2);
    expect(clock.pendingTimers).toBe(0);
  });

  it('an onTick that throws does not stop the schedule', () => {
    const clock = new FakeClock(T0);
    const errors: unknown[] = [];
    const ticker = new Ticker(
      spec({ intervalMs: 1_000 }),
      () => {
        throw new Error('boom');
      },
      { clock, onError: (e) => errors.push(e) },
    );
    ticker.start();
    clock.advance(3_000);
    expect(errors).toHaveLength(4); // T0, T0+1s, +2s, +3s
  });

  it('follows a cron in its time zone across the Berlin fall-back hour', () => {
    const clock = new FakeClock(Date.UTC(2026, 9, 24, 23, 50));
    const { ticks, onTick } = recorder(clock);
    new Ticker(spec({ cron: '*/15 * * * *', timezone: 'Europe/Berlin' }), onTick, { clock }).start();
    clock.advance(4 * 3_600_000);
    expect(ticks).toHaveLength(16);
    ticks.forEach(({ fireTime, at }, i) => {
      expect(fireTime).toBe(Date.UTC(2026, 9, 25, 0, 0) + i * 15 * 60_000);
      expect(at).toBe(fireTime);
    });
  });
});

describe('Ticker on the system clock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('works with (faked) real timers', () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const fired: number[] = [];
    const ticker = new Ticker(spec({ intervalMs: 10_000 }), (t) => fired.push(t));
    ticker.start();
    vi.advanceTimersByTime(20_000);
    ticker.stop();
    expect(fired).toEqual([T0 + 7_000, T0 + 17_000]);
  });
});

describe('decideOverlap', () => {
  it('runs when nothing is in progress, whatever the policy', () => {
    for (const p of ['allow', 'skip', 'queue'] as const) expect(decideOverlap(p, false, 0)).toBe('run');
  });

  it('allow runs alongside, skip skips, queue keeps at most one waiting run', () => {
    expect(decideOverlap('allow', true, 0)).toBe('run');
    expect(decideOverlap('skip', true, 0)).toBe('skip');
    expect(MAX_QUEUED_RUNS).toBe(1);
    expect(decideOverlap('queue', true, 0)).toBe('queue');
    expect(decideOverlap('queue', true, 1)).toBe('skip');
  });
});

describe('zoneOf', () => {
  it('defaults to the process’s local zone', () => {
    expect(zoneOf({})).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
    expect(zoneOf({ timezone: 'Europe/Berlin' })).toBe('Europe/Berlin');
  });
});
