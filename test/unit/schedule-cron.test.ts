import { describe, expect, it } from 'vitest';
import { checkCron, cronFireAfter, isValidTimeZone } from '../../src/schedule/index.js';

describe('checkCron', () => {
  it('accepts good 5- and 6-field expressions, names, cron-parser extras and shortcuts', () => {
    for (const e of ['*/10 * * * *', '0 9 * * mon-fri', '*/10 * * * * *', '0 */5 * * * *', '0 0 1 jan *', '0 0 L * *', '0 0 * * 1#2', '@daily', '0 0 * * 7', '  */5 * * * *  ']) {
      expect(checkCron(e), e).toEqual([]);
    }
    expect(checkCron('30 2 * * *', 'Europe/Berlin')).toEqual([]);
  });

  it('rejects a step larger than its field', () => {
    expect(checkCron('*/75 * * * *')).toEqual(['step 75 is larger than the minute field (0-59)']);
    expect(checkCron('0 */24 * * *')).toEqual(['step 24 is larger than the hour field (0-23)']);
    expect(checkCron('*/61 * * * * *')).toEqual(['step 61 is larger than the second field (0-59)']);
    expect(checkCron('0 12 * * */7')).toEqual(['step 7 is larger than the day-of-week field (0-6)']);
    expect(checkCron('10-15/20 * * * *')).toEqual([
      'step 20 is larger than the range 10-15 in the minute field, so only 10 would fire',
    ]);
    expect(checkCron('*/0 * * * *')).toEqual(['step 0 in the minute field never advances; use a step of 1 or more']);
  });

  it('rejects a wrong number of fields', () => {
    const [msg] = checkCron('* * * *');
    expect(msg).toContain('has 4 fields');
    expect(msg).toContain('expected 5 (minute hour day-of-month month day-of-week) or 6');
    expect(checkCron('0 0 0 * * * *')[0]).toContain('has 7 fields');
    expect(checkCron('')).toEqual(['the cron expression is empty']);
  });

  it('rejects values out of range and backwards ranges', () => {
    expect(checkCron('60 * * * *')).toEqual(['value 60 is out of range for the minute field (0-59)']);
    expect(checkCron('0 25 * * *')).toEqual(['value 25 is out of range for the hour field (0-23)']);
    expect(checkCron('0 0 32 * *')).toEqual(['value 32 is out of range for the day-of-month field (1-31)']);
    expect(checkCron('0 0 * 13 *')).toEqual(['value 13 is out of range for the month field (1-12)']);
    expect(checkCron('0 0 * * 8')).toEqual(['value 8 is out of range for the day-of-week field (0-7)']);
    expect(checkCron('1,2,99 * * * *')).toEqual(['value 99 is out of range for the minute field (0-59)']);
    expect(checkCron('5-2 * * * *')).toEqual(['range 5-2 in the minute field runs backwards; write 2-5']);
  });

  it('warns that a 6-field expression with "*" seconds fires every second and suggests "0 …"', () => {
    const [msg, ...rest] = checkCron('* */5 * * * *');
    expect(rest).toEqual([]);
    expect(msg).toContain('fires every second');
    expect(msg).toContain('"*/5 * * * *"');
    expect(msg).toContain('"0 */5 * * * *"');
    expect(checkCron('* * * * * *')[0]).toContain('"0 * * * * *"');
  });

  it('passes on what cron-parser rejects, in plain words', () => {
    expect(checkCron('x * * * *')).toEqual(['cron expression "x * * * *" is not valid: Invalid characters, got value: x']);
    expect(checkCron('0 0 30 2 *')[0]).toContain('never occurs');
    expect(checkCron('@reboot')[0]).toContain('unknown cron shortcut "@reboot"');
  });

  it('rejects an unknown time zone', () => {
    expect(checkCron('* * * * *', 'Mars/Olympus')).toEqual([
      'unknown time zone "Mars/Olympus"; use an IANA name such as "Europe/Berlin" or "UTC"',
    ]);
    expect(checkCron('*/75 * * * *', 'Nowhere')).toHaveLength(2);
  });
});

describe('isValidTimeZone', () => {
  it('knows IANA zones and UTC', () => {
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('America/New_York')).toBe(true);
    expect(isValidTimeZone('UTC')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus')).toBe(false);
    expect(isValidTimeZone('')).toBe(false);
  });
});

describe('cronFireAfter', () => {
  it('is strictly after its argument', () => {
    const t = Date.UTC(2026, 0, 1, 0, 0, 10);
    expect(cronFireAfter('*/10 * * * * *', 'UTC', t)).toBe(t + 10_000);
    expect(cronFireAfter('*/10 * * * * *', 'UTC', t - 1)).toBe(t);
  });

  it('returns null for an expression that cannot be evaluated', () => {
    expect(cronFireAfter('not a cron', 'UTC', 0)).toBeNull();
  });
});
