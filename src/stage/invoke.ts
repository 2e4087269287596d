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

/** What a notch that declares a second parameter receives: `fn(item, { signal, attempt })`. */
export interface CallContext {
  /** Aborted when the call's `timeout` passes, so fetches and queries can stop. */
  signal: AbortSignal;
  /** 1 for the first try, 2 for the first retry, … */
  attempt: number;
}

function withTimeout(p: PromiseLike<unknown>, ms: number | undefined, controller?: AbortController): Promise<unknown> {
  if (ms === undefined) return Promise.resolve(p);
  let timer: NodeJS.Timeout;
  return Promise.race([
    Promise.resolve(p),
    new Promise((_, reject) => {
      timer = setTimeout(() => {
        const err = new TimeoutError(ms);
        controller?.abort(err);
        reject(err);
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Calls fn, with a context as last argument when it wants one. */
function call(fn: (...a: unknown[]) => unknown, args: unknown[], attempt: number, withContext: boolean): { value: unknown; controller?: AbortController } {
  if (!withContext) return { value: fn(...args) };
  const controller = new AbortController();
  const ctx: CallContext = { signal: controller.signal, attempt };
  return { value: fn(...args, ctx), controller };
}

/**
 * Calls `fn(...args)`. A synchronous success returns the outcome directly
 * (no promise, the fast path for cheap functions); anything async, and every
 * retry, goes through a promise. A hung call is abandoned at the timeout —
 * JavaScript cannot force it to stop, so a function that declares one more
 * parameter than `args` gets a `CallContext` whose signal aborts then — and
 * counts as a failed attempt.
 */
export function invoke(fn: (...a: unknown[]) => unknown, args: unknown[], opts: InvokeOptions): Outcome | Promise<Outcome> {
  const withContext = fn.length > args.length;
  let first: ReturnType<typeof call>;
  try {
    first = call(fn, args, 1, withContext);
  } catch (err) {
    return retryAfter(fn, args, opts, err, 1, withContext);
  }
  if (!isThenable(first.value)) return { ok: true, value: first.value };
  return withTimeout(first.value, opts.timeoutMs, first.controller).then(
    (value): Outcome => ({ ok: true, value }),
    (err) => retryAfter(fn, args, opts, err, 1, withContext),
  );
}

async function retryAfter(
  fn: (...a: unknown[]) => unknown,
  args: unknown[],
  opts: InvokeOptions,
  lastErr: unknown,
  attempts: number,
  withContext: boolean,
): Promise<Outcome> {
  while (attempts <= opts.retries) {
    await sleep(opts.retryBackoffMs * 2 ** (attempts - 1));
    attempts++;
    try {
      let controller: AbortController | undefined;
      const attempt = attempts;
      const p = Promise.resolve().then(() => {
        const c = call(fn, args, attempt, withContext);
        controller = c.controller;
        return c.value;
      });
      const value = await withTimeout(p, opts.timeoutMs, { abort: (r?: unknown) => controller?.abort(r) } as AbortController);
      return { ok: true, value };
    } catch (err) {
      lastErr = err;
    }
  }
  return { ok: false, error: describeError(lastErr), attempts, at: userFrame(lastErr) };
}
