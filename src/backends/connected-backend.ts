import { closedError } from './backend-error.js';
import { Serial } from './serial.js';
import type { Backend } from './types.js';

/**
 * The lifecycle every network backend shares: one connection, made on
 * `open` (or on the next write after it was lost, once — no retry loop),
 * writes run one at a time, `close` waits for a write in progress and is
 * idempotent. Subclasses say how to connect, write, and end a connection.
 */
export abstract class ConnectedBackend<C> implements Backend {
  /** The live connection, if any; a subclass clears it when the driver reports it lost. */
  protected current: C | undefined;
  private connecting: Promise<C> | undefined;
  private closed = false;
  private readonly serial = new Serial();

  protected constructor(
    protected readonly name: string,
    /** host:port (never a password), for messages. */
    protected readonly where: string,
  ) {}

  async open(): Promise<void> {
    if (this.closed) throw closedError(this.name, this.where);
    await this.connection();
  }

  write(items: readonly unknown[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.name, this.where));
    if (items.length === 0) return Promise.resolve();
    return this.serial.run(() => this.writeNow(items));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let a write in progress finish (close flushes), then end the connection.
    await this.serial.run(async () => {
      const c = this.current ?? (await this.connecting?.catch(() => undefined));
      this.current = undefined;
      if (c !== undefined) await this.end(c);
    });
  }

  protected connection(): Promise<C> {
    if (this.current !== undefined && this.usable(this.current)) return Promise.resolve(this.current);
    if (this.current !== undefined) {
      this.discard(this.current);
      this.current = undefined;
    }
    this.connecting ??= this.connect()
      .then((c) => (this.current = c))
      .finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Whether a kept connection can still be used. Default: yes, until the driver reports it lost. */
  protected usable(_c: C): boolean {
    return true;
  }

  /** Drop a kept connection that is no longer usable. */
  protected discard(_c: C): void {}

  protected abstract connect(): Promise<C>;
  protected abstract writeNow(items: readonly unknown[]): Promise<void>;
  /** End a connection politely; never throws. */
  protected abstract end(c: C): Promise<void>;
}
