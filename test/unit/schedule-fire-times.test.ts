import { describe, expect, it } from 'vitest';
import type { ScheduleSpec } from '../../src/spec/types.js';
import { firstFireTime, nextFireTime, previewFireTimes } from '../../src/schedule/index.js';

const spec = (s: Partial<ScheduleSpec>): ScheduleSpec => ({ overlap: 'allow', ...s });
const utc = (iso: string): number => Date.parse(iso.endsWith('Z') ? iso : `${iso}Z`);
const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
const isos = (ts: readonly number[]): string[] => ts.map((t) => new Date(t).toISOString());

// The ancestor's worked example: now = 2026-12-03 20:18:03.
const NOW = utc('2026-12-03T20:18:03');

describe('interval only', () => {
  it('first fires at the next wall-clock multiple of the interval', () => {
    expect(iso(firstFireTime(spec({ intervalMs: 10_000 }), NOW))).toBe('2026-12-03T20:18:10.000Z');
    expect(iso(firstFireTime(spec({ intervalMs: 5_000 }), NOW))).toBe('2026-12-03T20:18:05.000Z');
    expect(iso(firstFireTime(spec({ intervalMs: 60_000 }), NOW))).toBe('2026-12-03T20:19:00.000Z');
  });

  it('fires now when now is exactly on a boundary', () => {
    const t = utc('2026-12-03T20:18:10');
    expect(firstFireTime(spec({ intervalMs: 10_000 }), t)).toBe(t);
  });

  it('then fires every interval', () => {
    expect(isos(previewFireTimes(spec({ intervalMs: 10_000 }), 3, NOW))).toEqual([
      '2026-12-03T20:18:10.000Z',
      '2026-12-03T20:18:20.000Z',
      '2026-12-03T20:18:30.000Z',
    ]);
  });

  it('does not drift over 1000 ticks that each run a little late', () => {
    for (const intervalMs of [10_000, 333, 60_000]) {
      const s = spec({ intervalMs });
      const first = firstFireTime(s, NOW)!;
      let t = first;
      for (let i = 1; i <= 1000; i++) {
        const lateBy = (i * 37) % Math.min(intervalMs, 250); // deterministic jitter, always under one interval
        t = nextFireTime(s, t, t + lateBy)!;
        expect(t).toBe(first + i * intervalMs);
      }
      expect(t % intervalMs).toBe(0);
    }
  });

  it('skips, never replays, the ticks a late tick missed', () => {
    const s = spec({ intervalMs: 10_000 });
    const prev = utc('2026-12-03T20:18:10');
    expect(iso(nextFireTime(s, prev, utc('2026-12-03T20:18:47')))).toBe('2026-12-03T20:18:50.000Z');
    // Woken exactly on a later boundary: that boundary counts as missed; the next one is strictly after now.
    expect(iso(nextFireTime(s, prev, utc('2026-12-03T20:18:30')))).toBe('2026-12-03T20:18:40.000Z');
  });
});

describe('startTime', () => {
  const start = utc('2026-12-03T20:18:03');

  it('with interval, in the future: first at startTime, then on startTime’s grid', () => {
    const s = spec({ intervalMs: 10_000, startTime: start });
    expect(isos(previewFireTimes(s, 3, utc('2026-12-03T20:00:00')))).toEqual([
      '2026-12-03T20:18:03.000Z',
      '2026-12-03T20:18:13.000Z',
      '2026-12-03T20:18:23.000Z',
    ]);
  });

  it('with interval, exactly now: fires now', () => {
    expect(firstFireTime(spec({ intervalMs: 10_000, startTime: start }), start)).toBe(start);
  });

  it('with interval, in the past: one run now, no replay, then the following boundaries of its grid', () => {
    const s = spec({ intervalMs: 10_000, startTime: start });
    const now = utc('2026-12-03T20:19:00.500');
    expect(isos(previewFireTimes(s, 3, now))).toEqual([
      '2026-12-03T20:19:00.500Z',
      '2026-12-03T20:19:03.000Z',
      '2026-12-03T20:19:13.000Z',
    ]);
  });

  it('alone, in the future: once, then', () => {
    const s = spec({ startTime: start });
    const now = utc('2026-12-03T20:00:00');
    expect(previewFireTimes(s, 5, now)).toEqual([start]);
    expect(nextFireTime(s, start, start)).toBeNull();
  });

  it('alone, in the past: once, now', () => {
    const s = spec({ startTime: start });
    const now = utc('2026-12-04T08:00:00');
    expect(previewFireTimes(s, 5, now)).toEqual([now]);
    expect(nextFireTime(s, now, now)).toBeNull();
  });
});

describe('neither interval, cron nor startTime', () => {
  it('runs once, now', () => {
    expect(previewFireTimes(spec({}), 5, NOW)).toEqual([NOW]);
    expect(nextFireTime(spec({}), NOW, NOW)).toBeNull();
  });
});

describe('cron', () => {
  it('supports a leading seconds field', () => {
    expect(isos(previewFireTimes(spec({ cron: '*/10 * * * * *', timezone: 'UTC' }), 3, NOW))).toEqual([
      '2026-12-03T20:18:10.000Z',
      '2026-12-03T20:18:20.000Z',
      '2026-12-03T20:18:30.000Z',
    ]);
    expect(iso(firstFireTime(spec({ cron: '0 */5 * * * *', timezone: 'UTC' }), NOW))).toBe('2026-12-03T20:20:00.000Z');
  });

  it('5 fields have minute precision', () => {
    expect(iso(firstFireTime(spec({ cron: '* * * * *', timezone: 'UTC' }), NOW))).toBe('2026-12-03T20:19:00.000Z');
  });

  it('fires now when now is exactly a cron instant', () => {
    const t = utc('2026-12-03T20:18:10');
    expect(firstFireTime(spec({ cron: '*/10 * * * * *', timezone: 'UTC' }), t)).toBe(t);
  });

  it('follows its time zone', () => {
    const now = utc('2026-12-03T00:00:01'); // 09:00:01 in Tokyo: today's 09:00 has passed there
    expect(iso(firstFireTime(spec({ cron: '0 9 * * *', timezone: 'Asia/Tokyo' }), now))).toBe('2026-12-04T00:00:00.000Z');
    expect(iso(firstFireTime(spec({ cron: '0 9 * * *', timezone: 'America/New_York' }), now))).toBe('2026-12-03T14:00:00.000Z');
    expect(iso(firstFireTime(spec({ cron: '0 9 * * *', timezone: 'Europe/Berlin' }), now))).toBe('2026-12-03T08:00:00.000Z');
  });

  it('treats startTime as "not before"', () => {
    const s = spec({ cron: '0 * * * *', timezone: 'UTC', startTime: utc('2026-12-05T10:30:00') });
    expect(iso(firstFireTime(s, NOW))).toBe('2026-12-05T11:00:00.000Z');
    expect(iso(nextFireTime(s, NOW, NOW))).toBe('2026-12-05T11:00:00.000Z');
  });

  it('skips the instants a late tick missed', () => {
    const s = spec({ cron: '*/10 * * * * *', timezone: 'UTC' });
    expect(iso(nextFireTime(s, utc('2026-12-03T20:18:10'), utc('2026-12-03T20:19:05')))).toBe('2026-12-03T20:19:10.000Z');
  });
});

/** Fire times from chaining nextFireTime, each tick running `lateBy` ms after its instant. */
function chain(s: ScheduleSpec, now: number, n: number, lateBy = 0): number[] {
  const out: number[] = [];
  let t = firstFireTime(s, now);
  while (t !== null && out.length < n) {
    out.push(t);
    t = nextFireTime(s, t, t + lateBy);
  }
  return out;
}

function expectStrictlyIncreasingBy(ts: readonly number[], stepMs: number): void {
  expect(new Set(ts).size).toBe(ts.length);
  for (let i = 1; i < ts.length; i++) expect(ts[i]! - ts[i - 1]!, isos(ts).join(' ')).toBe(stepMs);
}

describe('cron across DST: Europe/Berlin (2026: +1h on Mar 29 at 01:00Z, -1h on Oct 25 at 01:00Z)', () => {
  const daily = spec({ cron: '30 2 * * *', timezone: 'Europe/Berlin' });
  const quarter = spec({ cron: '*/15 * * * *', timezone: 'Europe/Berlin' });

  it('spring forward: 02:30 does not exist that day; it fires once, at 03:30 CEST', () => {
    expect(isos(chain(daily, utc('2026-03-27T12:00:00'), 4))).toEqual([
      '2026-03-28T01:30:00.000Z', // 02:30 CET
      '2026-03-29T01:30:00.000Z', // 03:30 CEST: the skipped 02:30, once
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
      '2026-03-31T00:30:00.000Z',
    ]);
  });

  it('fall back: 02:30 happens twice; it fires once, at the first', () => {
    expect(isos(chain(daily, utc('2026-10-23T12:00:00'), 4))).toEqual([
      '2026-10-24T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST, first pass only
      '2026-10-26T01:30:00.000Z', // 02:30 CET
      '2026-10-27T01:30:00.000Z',
    ]);
    // Even when the tick after 02:30 CEST is computed during the repeated hour (02:10 CET).
    expect(iso(nextFireTime(daily, utc('2026-10-25T00:30:00'), utc('2026-10-25T01:10:00')))).toBe(
      '2026-10-26T01:30:00.000Z',
    );
  });

  it('every 15 minutes across the fall-back hour: no duplicate instant, no gap', () => {
    for (const lateBy of [0, 1, 14 * 60_000]) {
      const ts = chain(quarter, utc('2026-10-24T23:50:00'), 16, lateBy);
      expect(iso(ts[0]!)).toBe('2026-10-25T00:00:00.000Z');
      expect(iso(ts.at(-1)!)).toBe('2026-10-25T03:45:00.000Z');
      expectStrictlyIncreasingBy(ts, 15 * 60_000); // both passes through 02:xx local fire
    }
  });

  it('every 15 minutes across the spring-forward gap: no gap in real time', () => {
    const ts = chain(quarter, utc('2026-03-29T00:20:00'), 8);
    expect(iso(ts[0]!)).toBe('2026-03-29T00:30:00.000Z');
    expectStrictlyIncreasingBy(ts, 15 * 60_000); // 01:45 CET is followed by 03:00 CEST
  });

  it('a job on specific hours fires once per wall-clock time when clocks go back', () => {
    const everyTwoHours = spec({ cron: '0 */2 * * *', timezone: 'Europe/Berlin' });
    expect(isos(chain(everyTwoHours, utc('2026-10-24T21:30:00'), 4))).toEqual([
      '2026-10-24T22:00:00.000Z', // 00:00 CEST
      '2026-10-25T00:00:00.000Z', // 02:00 CEST
      '2026-10-25T03:00:00.000Z', // 04:00 CET (02:00 CET, the repeat, is skipped)
      '2026-10-25T05:00:00.000Z',
    ]);
  });
});

describe('cron across DST: America/New_York (2026: +1h on Mar 8 at 07:00Z, -1h on Nov 1 at 06:00Z)', () => {
  it('spring forward: 02:30 fires once, at 03:30 EDT', () => {
    expect(isos(chain(spec({ cron: '30 2 * * *', timezone: 'America/New_York' }), utc('2026-03-07T12:00:00'), 3))).toEqual([
      '2026-03-08T07:30:00.000Z',
      '2026-03-09T06:30:00.000Z',
      '2026-03-10T06:30:00.000Z',
    ]);
  });

  it('fall back: 01:30 fires once, at 01:30 EDT', () => {
    const s = spec({ cron: '30 1 * * *', timezone: 'America/New_York' });
    expect(isos(chain(s, utc('2026-10-31T12:00:00'), 3))).toEqual([
      '2026-11-01T05:30:00.000Z',
      '2026-11-02T06:30:00.000Z',
      '2026-11-03T06:30:00.000Z',
    ]);
    expect(iso(nextFireTime(s, utc('2026-11-01T05:30:00'), utc('2026-11-01T06:10:00')))).toBe('2026-11-02T06:30:00.000Z');
  });

  it('every 15 minutes across both changes: no duplicate, no gap', () => {
    const s = spec({ cron: '*/15 * * * *', timezone: 'America/New_York' });
    expectStrictlyIncreasingBy(chain(s, utc('2026-11-01T04:50:00'), 16, 1), 15 * 60_000);
    expectStrictlyIncreasingBy(chain(s, utc('2026-03-08T05:50:00'), 16, 1), 15 * 60_000);
  });
});

describe('invariants', () => {
  it('nextFireTime is never ≤ previous, nor ≤ now', () => {
    const specs = [
      spec({ intervalMs: 7_000 }),
      spec({ intervalMs: 10_000, startTime: NOW + 3 }),
      spec({ cron: '*/15 * * * *', timezone: 'Europe/Berlin' }),
      spec({ cron: '30 2 * * *', timezone: 'America/New_York' }),
      spec({ startTime: NOW + 60_000 }),
    ];
    const base = utc('2026-10-24T12:00:00');
    for (const s of specs) {
      for (let i = 0; i < 200; i++) {
        const previous = base + ((i * 7_919_011) % (3 * 86_400_000));
        const now = previous + ((i * 104_729) % 5_000_000) - 1_000_000;
        const next = nextFireTime(s, previous, now);
        if (next !== null) {
          expect(next).toBeGreaterThan(previous);
          expect(next).toBeGreaterThan(now);
        }
      }
    }
  });

  it('previewFireTimes of 0 is empty', () => {
    expect(previewFireTimes(spec({ intervalMs: 1000 }), 0, NOW)).toEqual([]);
  });
});
