import { describe, expect, it } from 'vitest';
import { invoke, type CallContext } from '../../src/stage/invoke.js';

const opts = { retries: 0, retryBackoffMs: 1 };

describe('invoke', () => {
  it('returns a sync result without a promise (the fast path)', () => {
    expect(invoke((x) => (x as number) + 1, [1], opts)).toEqual({ ok: true, value: 2 });
  });

  it('retries a failing call with backoff and reports the attempts', async () => {
    let calls = 0;
    const flaky = () => {
      calls++;
      if (calls < 3) throw new Error(`boom ${calls}`);
      return 'ok';
    };
    await expect(invoke(flaky, [], { retries: 2, retryBackoffMs: 1 })).resolves.toEqual({ ok: true, value: 'ok' });
    calls = 0;
    const out = await invoke(flaky, [], { retries: 1, retryBackoffMs: 1 });
    expect(out).toMatchObject({ ok: false, error: 'boom 2', attempts: 2 });
  });

  it('cuts a hung call at the timeout and aborts the signal of a function that asks for one', async () => {
    let seen: AbortSignal | undefined;
    const hang = (_item: unknown, ctx: CallContext) => {
      seen = ctx.signal;
      return new Promise(() => {});
    };
    const out = await invoke(hang as (...a: unknown[]) => unknown, [1], { ...opts, timeoutMs: 30 });
    expect(out).toMatchObject({ ok: false, error: 'timed out after 30 ms', attempts: 1 });
    expect(seen?.aborted).toBe(true);
  });

  it('does not pass a context to a function that declares only the item', () => {
    const f = (...a: unknown[]) => a.length;
    expect(invoke((x) => f(x), [1], opts)).toEqual({ ok: true, value: 1 });
  });

  it('names the user frame of an error', async () => {
    const out = await invoke(() => {
      throw new Error('x');
    }, [], opts);
    expect(out.ok).toBe(false);
    expect((out as { at?: string }).at).toMatch(/stage-invoke\.test\.ts:\d+:\d+$/);
  });
});
