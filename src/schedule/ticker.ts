/**
 * A Ticker calls `onTick(fireTime)` at each fire time of a schedule, over an
 * injected clock, and takes a new schedule on the fly (hot reload).
 */
import { systemClock, type Clock } from '../clock.js';
import type { OverlapPolicy, ScheduleSpec } from '../spec/types.js';
import { firstFireTime, nextFireTime, sameTiming } from './fire-times.js';

export interface TickerOptions {
  /** Time source and timers. Default: the system clock. */
  readonly clock?: Clock;
  /**
   * Longest single timer, in ms; longer waits are chained. Default 60 000.
   * Timers run on a monotonic clock that stops while the machine sleeps, so
   * a short chain re-reads the wall clock often and a daily job is at most
   * this late after a resume (and no timer nears Node's 2^31 ms overflow).
   */
  readonly maxTimerMs?: number;
  /** Receives what `onTick` throws; the schedule keeps going either way. Default: rethrown outside the ticker. */
  readonly onError?: (err: unknown) => void;
}

const DEFAULT_MAX_TIMER_MS = 60_000;

export class Ticker {
  #spec: ScheduleSpec;
  readonly #onTick: (fireTime: number) => void;
  readonly #clock: Clock;
  readonly #maxTimerMs: number;
  readonly #onError: ((err: unknown) => void) | undefined;

  #running = false;
  #pending: number | null = null;
  #timer: unknown = undefined;
  #lastFired: number | undefined;

  constructor(spec: ScheduleSpec, onTick: (fireTime: number) => void, options: TickerOptions = {}) {
    this.#spec = spec;
    this.#onTick = onTick;
    this.#clock = options.clock ?? systemClock;
    this.#maxTimerMs = Math.max(1, options.maxTimerMs ?? DEFAULT_MAX_TIMER_MS);
    this.#onError = options.onError;
  }

  /** The schedule in effect. */
  get spec(): ScheduleSpec {
    return this.#spec;
  }

  /** The instant (epoch ms) of the next tick; null when stopped, not started, or done. */
  get nextFireTime(): number | null {
    return this.#running ? this.#pending : null;
  }

  /** The fire time of the latest tick, if any. */
  get lastFireTime(): number | undefined {
    return this.#lastFired;
  }

  /** True once the schedule has fired and has nothing left to fire (a once-only schedule). */
  get done(): boolean {
    return this.#lastFired !== undefined && this.#pending === null;
  }

  /**
   * Arms the first tick. A fire time equal to now fires on the next turn of
   * the event loop, never inside `start()`. Idempotent. After `stop()`, it
   * resumes without firing again any instant up to the last tick.
   */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#reschedule();
  }

  /**
   * Hot reload: a spec with different timing takes effect immediately, for
   * the very next tick; nothing is restarted. Timing unchanged (only `overlap`
   * or nothing differs): the pending timer is kept.
   *
   * After at least one tick, the new schedule continues from now (its first
   * instant ≥ now and after the last tick): an edit never causes a catch-up
   * run for a past startTime, and a once-only schedule whose instant has
   * passed does not fire again. Before any tick, it starts as `start()` would.
   */
  update(spec: ScheduleSpec): void {
    const changed = !sameTiming(this.#spec, spec);
    this.#spec = spec;
    if (!changed || !this.#running) return;
    this.#reschedule();
  }

  /** Cancels the pending timer. Idempotent; `onTick` is not called afterwards. */
  stop(): void {
    this.#running = false;
    this.#clearTimer();
  }

  #reschedule(): void {
    this.#clearTimer();
    const now = this.#clock.now();
    this.#pending =
      this.#lastFired === undefined
        ? firstFireTime(this.#spec, now)
        : // "now - 1": a boundary equal to now still fires (epoch ms are integers).
          nextFireTime(this.#spec, this.#lastFired, now - 1);
    this.#arm();
  }

  #arm(): void {
    if (!this.#running || this.#pending === null) return;
    const wait = Math.min(Math.max(0, this.#pending - this.#clock.now()), this.#maxTimerMs);
    this.#timer = this.#clock.setTimeout(() => this.#wake(), wait);
  }

  #wake(): void {
    this.#timer = undefined;
    if (!this.#running || this.#pending === null) return;
    const now = this.#clock.now();
    // Timers drift and long waits are chained: fire only once the clock has reached the instant.
    if (now < this.#pending) {
      this.#arm();
      return;
    }
    const fireTime = this.#pending;
    this.#lastFired = fireTime;
    // However late we woke, one tick fires; the boundaries missed meanwhile are skipped.
    this.#pending = nextFireTime(this.#spec, fireTime, now);
    // State is settled before the callback, so onTick may call stop() or update().
    this.#arm();
    try {
      this.#onTick(fireTime);
    } catch (err) {
      if (this.#onError) this.#onError(err);
      else queueMicrotask(() => {
        throw err;
      });
    }
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}

/** What the master does with a tick. */
export type OverlapDecision = 'run' | 'skip' | 'queue';

/** `queue` keeps at most this many runs waiting behind the one in progress. */
export const MAX_QUEUED_RUNS = 1;

/**
 * The overlap policy, applied by the master when a tick arrives.
 * - no run in progress → `run`, whatever the policy;
 * - `allow` (the ancestor's behaviour) → `run` alongside the one in progress;
 * - `skip` → `skip` the tick;
 * - `queue` → `queue` one run to start when the current one finishes; further
 *   ticks while one is already waiting are skipped. Like Celery beat and
 *   Quartz's "fire once now" misfire rule: a slow pipeline catches up with a
 *   single run instead of a growing backlog of stale ticks.
 */
export function decideOverlap(policy: OverlapPolicy, runInProgress: boolean, queued: number): OverlapDecision {
  if (!runInProgress) return 'run';
  switch (policy) {
    case 'allow':
      return 'run';
    case 'skip':
      return 'skip';
    case 'queue':
      return queued < MAX_QUEUED_RUNS ? 'queue' : 'skip';
  }
}
