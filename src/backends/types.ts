import type { Logger } from '../log.js';

/**
 * A bocca backend: made by an async factory, then `open`, `write(batch)`
 * (any number of times), `close`. `close` is idempotent and flushes.
 * A backend does not retry or reconnect by itself: it throws, and the stage
 * runtime retries with backoff, so nothing is lost.
 */
export interface Backend {
  open(): Promise<void>;
  /** Persist every item of the batch or throw; a throw means none may be assumed written. */
  write(items: readonly unknown[]): Promise<void>;
  close(): Promise<void>;
}

export interface BackendContext {
  readonly typology: string;
  /** Index of this bocca process (0-based), for backends that shard or name things per process. */
  readonly processIndex: number;
  readonly mode: 'stream' | 'batch';
  /** Where the stdout backend's lines go (the master's stdout). */
  readonly writeLine: (line: string) => void;
  /** For the `module` backend: the module's export named by `export` (default: `default`). */
  readonly moduleExport?: unknown;
  readonly log: Logger;
}

export type BackendFactory = (
  options: Readonly<Record<string, unknown>>,
  context: BackendContext,
) => Promise<Backend>;

/** Backends by name; passed in (not global) so tests can build one with only what they need. */
export type BackendRegistry = ReadonlyMap<string, BackendFactory>;
