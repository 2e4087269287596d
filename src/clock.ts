/** Time as the schedule and the master see it; injected so tests can drive it. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
