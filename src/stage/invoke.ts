import { describeError } from '../errors.js';

export interface InvokeOptions {
  /** Per-call limit in ms; undefined = none. */
  timeoutMs?: number;
  /** Extra attempts after the first failure. */
  retries: number;
  /** Delay before the first retry; doubled after each further failure. */
  retryBackoffMs: number;
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: string; attempts: number; at?: string };

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `file:line:col` of the first stack frame in user code (not node internals, not rezina). */
export function userFrame(err: unknown): string | undefined {
  const stack = err instanceof Error ? err.stack : undefined;
  if (!stack) return undefined;
  for (const line of stack.split('\n').slice(1)) {
    const m = /\(?((?:file:\/\/)?[^()\s]+):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (!m) continue;
    const file = m[1]!;
    if (file.startsWith('node:') || file.includes('/dist/stage/') || file.includes('/src/stage/') || file.includes('node_modules')) continue;
    return `${file.replace(/^file:\/\//, '')}:${m[2]}:${m[3]}`;
  }
  return undefined;
}

class TimeoutError extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

function withTimeout(p: PromiseLike<unknown>, ms: number | undefined): Promise<unknown> {
  if (ms === undefined) return Promise.resolve(p);
  let timer: NodeJS.Timeout;
  return Promise.race([
    Promise.resolve(p),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(ms)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Calls `fn(...args)`. A synchronous success returns the outcome directly
 * (no promise, the fast path for cheap functions); anything async, and every
 * retry, goes through a promise. A hung call is abandoned at the timeout —
 * JavaScript cannot cancel it — and counts as a failed attempt.
 */
export function invoke(fn: (...a: unknown[]) => unknown, args: unknown[], opts: InvokeOptions): Outcome | Promise<Outcome> {
  let first: unknown;
  try {
    first = fn(...args);
  } catch (err) {
    return retryAfter(fn, args, opts, err, 1);
  }
  if (!isThenable(first)) return { ok: true, value: first };
  return withTimeout(first, opts.timeoutMs).then(
    (value): Outcome => ({ ok: true, value }),
    (err) => retryAfter(fn, args, opts, err, 1),
  );
}

async function retryAfter(
  fn: (...a: unknown[]) => unknown,
  args: unknown[],
  opts: InvokeOptions,
  lastErr: unknown,
  attempts: number,
): Promise<Outcome> {
  while (attempts <= opts.retries) {
    await sleep(opts.retryBackoffMs * 2 ** (attempts - 1));
    attempts++;
    try {
      const value = await withTimeout(Promise.resolve().then(() => fn(...args)), opts.timeoutMs);
      return { ok: true, value };
    } catch (err) {
      lastErr = err;
    }
  }
  return { ok: false, error: describeError(lastErr), attempts, at: userFrame(lastErr) };
}
