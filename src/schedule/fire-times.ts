/**
 * The scheduling rules as pure functions over epoch milliseconds: no timers,
 * no clock reads. `Ticker` turns them into timers; `rezina schedule --next N`
 * prints `previewFireTimes`.
 *
 * Rules (the ancestor's, plus cron):
 * - `cron` (with `timezone`, default the process's local zone): the cron
 *   instants, computed by cron-parser, DST handled as described at
 *   `cronFireAfter`. A `startTime` with a cron is a "not before" bound.
 *   When `cron` is set, `intervalMs` is ignored (the spec should not carry both).
 * - `intervalMs` alone: the grid k × interval in epoch ms (wall-clock aligned
 *   in UTC terms: 10 s at 20:18:03 → 20:18:10, 60 s → 20:19:00). The first
 *   fire is the first grid point ≥ now (a boundary equal to now fires now).
 * - `intervalMs` + `startTime`: the grid startTime + k × interval, k ≥ 0. A
 *   future startTime fires first at startTime; a past one does not replay the
 *   missed boundaries: one run now (standing for the latest boundary ≤ now),
 *   then the next boundaries of startTime's grid.
 * - `startTime` alone: once, at startTime, or now if it has passed.
 * - nothing: once, now.
 *
 * Every next fire time comes from the grid (never "previous + interval"), so
 * there is no drift, and is strictly after both the previous fire time and
 * now: a late tick skips the boundaries it missed instead of replaying them.
 */
import type { ScheduleSpec } from '../spec/types.js';
import { cronFireAfter, defaultTimeZone } from './cron.js';

/** The fields that decide when a schedule fires (`overlap` does not). */
export type ScheduleTiming = Pick<ScheduleSpec, 'intervalMs' | 'cron' | 'timezone' | 'startTime'>;

/** How a schedule repeats: by cron, by interval, or it fires just once. */
export type ScheduleKind = 'cron' | 'interval' | 'once';

export function scheduleKind(spec: ScheduleTiming): ScheduleKind {
  if (spec.cron !== undefined) return 'cron';
  if (intervalOf(spec) !== undefined) return 'interval';
  return 'once';
}

/** True when two specs fire at the same instants (only the timing fields are compared). */
export function sameTiming(a: ScheduleTiming, b: ScheduleTiming): boolean {
  return (
    a.intervalMs === b.intervalMs && a.cron === b.cron && a.timezone === b.timezone && a.startTime === b.startTime
  );
}

/**
 * When a schedule that starts at `now` fires first (≥ now), or null when it
 * never fires (a cron that has no future instant).
 */
export function firstFireTime(spec: ScheduleTiming, now: number): number | null {
  const start = spec.startTime;
  if (spec.cron !== undefined) {
    const from = start !== undefined && start > now ? start : now;
    return cronFireAfter(spec.cron, zoneOf(spec), from - 1); // "- 1": an instant equal to `from` fires
  }
  const interval = intervalOf(spec);
  if (interval !== undefined && start === undefined) {
    return ceilToGrid(now, interval, 0);
  }
  // startTime with or without interval, or neither: at startTime if still ahead, else once now.
  if (start !== undefined && start > now) return start;
  return now;
}

/**
 * The fire time after `previous`, given that the clock now reads `now`: the
 * first instant of the schedule strictly after both. Null when the schedule
 * is done (a once-only schedule that has fired, a cron with no future
 * instant). Never returns a value ≤ previous.
 */
export function nextFireTime(spec: ScheduleTiming, previous: number, now: number): number | null {
  const bound = Math.max(previous, now);
  const start = spec.startTime;
  if (spec.cron !== undefined) {
    const from = start !== undefined && start > bound ? start - 1 : bound;
    return cronFireAfter(spec.cron, zoneOf(spec), from);
  }
  const interval = intervalOf(spec);
  if (interval !== undefined) {
    if (start !== undefined && start > bound) return start;
    return ceilToGrid(bound + 1, interval, start ?? 0);
  }
  // Once-only: its single instant, if that is still ahead (only after an edit moved it).
  return start !== undefined && start > bound ? start : null;
}

/**
 * The next `n` fire times of a schedule starting at `now`, assuming every tick
 * fires on time. Fewer when the schedule ends (once-only: one).
 */
export function previewFireTimes(spec: ScheduleTiming, n: number, now: number): number[] {
  const out: number[] = [];
  let t = n > 0 ? firstFireTime(spec, now) : null;
  while (t !== null && out.length < n) {
    out.push(t);
    t = nextFireTime(spec, t, t);
  }
  return out;
}

/** The cron time zone in effect for a spec. */
export function zoneOf(spec: Pick<ScheduleSpec, 'timezone'>): string {
  return spec.timezone ?? defaultTimeZone();
}

function intervalOf(spec: ScheduleTiming): number | undefined {
  const ms = spec.intervalMs;
  // A non-positive interval would loop forever; the spec layer rejects it, this only stays safe.
  return ms !== undefined && Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/** First point of the grid anchor + k × interval that is ≥ t (integer modulo: no float drift). */
function ceilToGrid(t: number, interval: number, anchor: number): number {
  const r = (((t - anchor) % interval) + interval) % interval;
  return r === 0 ? t : t + (interval - r);
}
