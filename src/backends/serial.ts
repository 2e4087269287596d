/**
 * Runs async jobs one after another. A backend's `write` calls must not
 * overlap on one connection (two interleaved transactions would commit each
 * other's rows), even if the stage runtime calls `write` concurrently.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const next = this.tail.then(job, job);
    // Keep the chain alive whatever the job does; the caller sees the real outcome.
    this.tail = next.catch(() => undefined);
    return next;
  }
}
