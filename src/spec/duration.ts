/**
 * Durations as users write them in a typology: `500ms`, `10s`, `5m`, `1h`,
 * `1h30m`, `2d`, a decimal such as `1.5s`, or a plain number of seconds
 * (`10`, `0.5`, also as a string `"10"`). Units: ms, s, m, h, d.
 */

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The same grammar the JSON Schema's `duration` pattern accepts. */
const PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/y;
const PLAIN = /^\s*(\d+(?:\.\d+)?)\s*$/;

/**
 * Milliseconds (rounded to a whole number), or `undefined` when the value is
 * not a duration. Numbers are seconds. Negative values and NaN are not
 * durations; zero is (callers decide whether zero is allowed).
 */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return finite(value * 1000);
  const plain = PLAIN.exec(value);
  if (plain) return finite(Number(plain[1]) * 1000);
  const text = value.trim();
  if (text === '') return undefined;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    PART.lastIndex = at;
    const m = PART.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = PART.lastIndex;
    while (text[at] === ' ') at++;
  }
  return finite(total);
}

function finite(ms: number): number | undefined {
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  const rounded = Math.round(ms);
  return rounded > Number.MAX_SAFE_INTEGER ? undefined : rounded;
}

/**
 * The shortest exact form in the same grammar: 90_000 → `1m30s`,
 * 1500 → `1s500ms`, 0 → `0s`. Round-trips through `parseDuration`.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const sign = ms < 0 ? '-' : '';
  let rest = Math.round(Math.abs(ms));
  if (rest === 0) return '0s';
  let out = '';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return sign + out;
}
