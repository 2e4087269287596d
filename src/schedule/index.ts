/** Scheduling: interval / startTime / cron → fire times, and a Ticker over an injected clock. */
export { checkCron, isValidTimeZone, defaultTimeZone, cronFireAfter } from './cron.js';
export {
  firstFireTime,
  nextFireTime,
  previewFireTimes,
  sameTiming,
  scheduleKind,
  zoneOf,
  type ScheduleKind,
  type ScheduleTiming,
} from './fire-times.js';
export { Ticker, decideOverlap, MAX_QUEUED_RUNS, type TickerOptions, type OverlapDecision } from './ticker.js';
