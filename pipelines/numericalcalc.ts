/**
 * The ancestor's second example: slow arithmetic spread over many processes.
 *
 *   numbers(50) ──▶ addOne (0.2 s) ──▶ multiplyByTwo (0.8 s) ──▶ discardMultiplesOfTen ──▶ sqlite
 *
 * Every item is `{ n, value }`: `n` is the number the hydrant emitted (it never
 * changes, so a result can be traced back), `value` is what the notches made of
 * it. Out of 0..49, (n + 1) × 2 is a multiple of ten for n = 4, 9, …, 49, so
 * exactly 40 items reach the bocca per run.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface NumberItem {
  /** The hydrant's number, 0-based. */
  n: number;
  /** The running result. */
  value: number;
}

/** Hydrant: yields `{ n, value: n }` for n = 0 … count − 1 (an async generator, one of the forms a hydrant may take). */
export async function* numbers(count = 50): AsyncGenerator<NumberItem> {
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`numbers: count must be a whole number >= 0, got ${JSON.stringify(count)}`);
  }
  for (let n = 0; n < count; n++) yield { n, value: n };
}

/** Notch: value + 1, after 0.2 s of pretend work. */
export async function addOne(item: NumberItem): Promise<NumberItem> {
  await sleep(200);
  return { n: item.n, value: item.value + 1 };
}

/** Notch: value × 2, after 0.8 s of pretend work. */
export async function multiplyByTwo(item: NumberItem): Promise<NumberItem> {
  await sleep(800);
  return { n: item.n, value: item.value * 2 };
}

/** Notch used as a filter: drops (returns undefined for) values that are multiples of ten. */
export function discardMultiplesOfTen(item: NumberItem): NumberItem | undefined {
  return item.value % 10 === 0 ? undefined : item;
}
