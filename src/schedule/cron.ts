/**
 * Cron expressions: checking them in words a user understands, and computing
 * their fire instants in a time zone. The only home of cron-parser.
 *
 * Expressions have 5 fields (minute hour day-of-month month day-of-week,
 * minute precision) or 6 fields (a leading seconds field). cron-parser's
 * extras (names like `mon`/`jan`, `L`, `W`, `#`, `H`, `?`, `@daily`…) are
 * accepted as cron-parser accepts them.
 */
import { CronExpressionParser, type CronExpression } from 'cron-parser';

interface FieldInfo {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  /** Largest value a `*` step walks over (day-of-week: 7 is Sunday again, so 6). */
  readonly stepMax: number;
  readonly names?: readonly string[];
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// cron-parser's predefined expressions (it has no @reboot: a schedule has no boot).
const SHORTCUTS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly', '@minutely', '@weekdays', '@weekends'];

const SECOND: FieldInfo = { name: 'second', min: 0, max: 59, stepMax: 59 };
const FIVE_FIELDS: readonly FieldInfo[] = [
  { name: 'minute', min: 0, max: 59, stepMax: 59 },
  { name: 'hour', min: 0, max: 23, stepMax: 23 },
  { name: 'day-of-month', min: 1, max: 31, stepMax: 31 },
  { name: 'month', min: 1, max: 12, stepMax: 12, names: MONTHS },
  { name: 'day-of-week', min: 0, max: 7, stepMax: 6, names: DAYS },
];

/** The zone cron uses when a schedule names none: the process's local zone. */
export function defaultTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** True when `tz` is an IANA zone name (or `UTC`) this Node's Intl knows. */
export function isValidTimeZone(tz: string): boolean {
  if (typeof tz !== 'string' || tz.trim() === '') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * Problems with a cron expression (and its time zone), as short sentences;
 * `[]` when it is fine. Catches what cron-parser rejects plus mistakes it lets
 * through silently: wrong field count, steps larger than their field, and a
 * 6-field expression whose seconds field is `*` (fires every second).
 */
export function checkCron(expression: string, timezone?: string): string[] {
  const problems: string[] = [];
  if (timezone !== undefined && !isValidTimeZone(timezone)) {
    problems.push(`unknown time zone "${timezone}"; use an IANA name such as "Europe/Berlin" or "UTC"`);
  }
  const text = typeof expression === 'string' ? expression.trim() : '';
  if (text === '') {
    problems.push('the cron expression is empty');
    return problems;
  }

  // Predefined forms (@daily…) have no fields of ours to check; cron-parser judges them.
  if (!text.startsWith('@')) {
    const parts = text.split(/\s+/);
    if (parts.length !== 5 && parts.length !== 6) {
      problems.push(
        `cron expression "${text}" has ${parts.length} field${parts.length === 1 ? '' : 's'}; ` +
          'expected 5 (minute hour day-of-month month day-of-week) or 6 (a leading seconds field, then those 5)',
      );
      return problems;
    }
    const infos = parts.length === 6 ? [SECOND, ...FIVE_FIELDS] : FIVE_FIELDS;
    parts.forEach((field, i) => problems.push(...checkField(field, infos[i]!)));
    if (parts.length === 6 && (parts[0] === '*' || parts[0] === '*/1')) {
      const rest = parts.slice(1).join(' ');
      problems.push(
        `"${text}" has 6 fields, so the first is seconds, and "${parts[0]}" there fires every second; ` +
          `if you meant minute precision, write 5 fields "${rest}" or start with 0: "0 ${rest}"`,
      );
    }
  }

  // Our own messages are clearer than cron-parser's for the same fault; only ask it when we found none.
  if (problems.length === 0) {
    try {
      const parsed = parse(text, timezone ?? defaultTimeZone(), Date.now());
      parsed.next();
    } catch (err) {
      if (text.startsWith('@')) {
        problems.push(`unknown cron shortcut "${text}"; use one of ${SHORTCUTS.join(', ')} or 5 fields`);
        return problems;
      }
      problems.push(`cron expression "${text}" is not valid: ${plainParserMessage(err)}`);
    }
  }
  return problems;
}

function checkField(field: string, info: FieldInfo): string[] {
  const problems: string[] = [];
  const range = `${info.min}-${info.max}`;
  for (const part of field.split(',')) {
    // cron-parser's special characters are left to it.
    if (/[LW#H?]/i.test(part)) continue;
    const m = /^([^/]+)(?:\/(.*))?$/.exec(part);
    if (!m) continue;
    const [, base = '', stepText] = m;
    let from = info.min;
    let to = info.stepMax;
    let isRange = false;
    if (base !== '*') {
      const bounds = base.split('-');
      if (bounds.length > 2) continue;
      const values = bounds.map((b) => toNumber(b, info));
      if (values.some((v) => v === undefined)) continue; // unknown token: cron-parser will say
      const outside = (values as number[]).filter((v) => v < info.min || v > info.max);
      for (const v of outside) problems.push(`value ${v} is out of range for the ${info.name} field (${range})`);
      if (outside.length > 0) continue;
      from = values[0]!;
      if (values.length === 2) {
        to = values[1]!;
        isRange = true;
        if (from > to) {
          problems.push(`range ${base} in the ${info.name} field runs backwards; write ${to}-${from}`);
          continue;
        }
      } else {
        to = info.stepMax; // `a/s` means from a to the end of the field
      }
    }
    if (stepText === undefined) continue;
    if (!/^\d+$/.test(stepText)) continue;
    const step = Number(stepText);
    if (step === 0) {
      problems.push(`step 0 in the ${info.name} field never advances; use a step of 1 or more`);
    } else if (base === '*' && step > info.stepMax - info.min) {
      problems.push(`step ${step} is larger than the ${info.name} field (${info.min}-${info.stepMax})`);
    } else if (isRange && step > to - from && to > from) {
      problems.push(`step ${step} is larger than the range ${base} in the ${info.name} field, so only ${from} would fire`);
    } else if (!isRange && base !== '*' && step > info.stepMax - from) {
      problems.push(`step ${step} is larger than what is left of the ${info.name} field after ${from}, so only ${from} would fire`);
    }
  }
  return problems;
}

function toNumber(token: string, info: FieldInfo): number | undefined {
  if (/^\d+$/.test(token)) return Number(token);
  const idx = info.names?.indexOf(token.toLowerCase()) ?? -1;
  if (idx < 0) return undefined;
  return info.min + idx;
}

function plainParserMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/Invalid explicit day of month definition/i.test(msg)) {
    return 'that day of the month never occurs in the month(s) given, so it would never fire';
  }
  if (/loop limit exceeded/i.test(msg)) return 'it never fires';
  if (/unhandled timestamp|Invalid Date/i.test(msg)) return 'it cannot be evaluated in that time zone';
  return msg.replace(/^Error:\s*/, '');
}

function parse(expression: string, tz: string, after: number): CronExpression {
  return CronExpressionParser.parse(expression, { tz, currentDate: new Date(after) });
}

// ---------------------------------------------------------------------------
// Fire instants

/** Offset of `tz` from UTC at instant `t`, in ms (local = utc + offset). */
function offsetAt(t: number, tz: string): number {
  const parts = formatter(tz).formatToParts(new Date(t));
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value);
  const local = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return local - Math.floor(t / 1000) * 1000;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, f);
  }
  return f;
}

const THREE_HOURS = 3 * 3600_000;

/**
 * True when instant `t` shows a wall-clock time that already happened earlier
 * (the second pass through the hour repeated when clocks go back).
 */
function isRepeatedWallTime(t: number, tz: string): boolean {
  const now = offsetAt(t, tz);
  const before = offsetAt(t - THREE_HOURS, tz);
  if (before <= now) return false;
  return offsetAt(t - (before - now), tz) === before;
}

/**
 * The first instant strictly after `after` (epoch ms) at which `expression`
 * fires in `tz`, or null when it never fires again.
 *
 * DST rule (Vixie cron's): when clocks go back, an expression that names
 * specific hours fires once per wall-clock time (the first pass), while one
 * whose hour field is every hour keeps firing through both passes, so an
 * every-15-minutes job has neither a gap nor a duplicate. When clocks go
 * forward, a time inside the skipped hour fires once, shifted past the gap
 * (cron-parser's behaviour: 02:30 becomes 03:30).
 */
export function cronFireAfter(expression: string, tz: string, after: number): number | null {
  let from = after;
  // Guard bound: each pass either returns or skips one repeated-hour candidate.
  for (let guard = 0; guard < 10_000; guard++) {
    let parsed: CronExpression;
    let t: number;
    try {
      parsed = parse(expression, tz, from);
      t = parsed.next().getTime();
    } catch {
      return null;
    }
    if (!Number.isFinite(t)) return null;
    if (t <= from) {
      // Never go backwards or stand still, whatever the library does around DST.
      from = Math.max(from, t) + 1;
      continue;
    }
    if (parsed.fields.hour.values.length < 24 && isRepeatedWallTime(t, tz)) {
      from = t;
      continue;
    }
    return t;
  }
  return null;
}
