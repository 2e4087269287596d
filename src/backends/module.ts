import type { Backend, BackendContext, BackendFactory } from './types.js';
import { BackendError, causeText, closedError, configError } from './backend-error.js';

const NAME = 'module';

/** What a custom bocca module exports (a class with these methods, or an object that has them). */
export interface CustomBocca {
  /** Called once before the first write; receives where it runs. */
  open?(info: { typology: string; processIndex: number; mode: 'stream' | 'batch' }): unknown;
  /** Stream mode: one item per call, in order. Batch mode: the array of items. May be async. */
  write(itemOrBatch: unknown): unknown;
  /** Called once; flushes. */
  close?(): unknown;
}

/**
 * A custom bocca: `context.moduleExport` (the module's `export`, default
 * `default`) is either a class, instantiated with `new X(options)`, or an
 * object with `open?()`, `write(itemOrBatch)`, `close?()`. In stream mode
 * `write(item)` is called once per item, awaited, in order; in batch mode
 * `write(batch)` gets the array. What the module throws is wrapped in a
 * BackendError naming the module, with the original as `cause`.
 */
export const createModuleBackend: BackendFactory = async (options, context: BackendContext): Promise<Backend> => {
  const where = describeWhere(options);
  const exported = context.moduleExport;
  if (exported === undefined || exported === null) {
    throw configError(NAME, `${where} has no export ${JSON.stringify(exportName(options))}`);
  }
  let target: unknown = exported;
  if (typeof exported === 'function') {
    try {
      target = new (exported as new (o: Readonly<Record<string, unknown>>) => unknown)(options);
    } catch (err) {
      throw new BackendError('E_BACKEND_CONFIG', NAME, where, `custom bocca ${where}: new ${exported.name || 'export'}(options) failed: ${causeText(err)}`, { cause: err });
    }
  }
  const bocca = target as Partial<Record<'open' | 'write' | 'close', unknown>> | null;
  if (typeof bocca !== 'object' || bocca === null || typeof bocca.write !== 'function') {
    throw configError(NAME, `custom bocca export must have a write() method (${where})`);
  }
  for (const method of ['open', 'close'] as const) {
    if (bocca[method] !== undefined && typeof bocca[method] !== 'function') {
      throw configError(NAME, `custom bocca export's ${method} must be a method, got ${typeof bocca[method]} (${where})`);
    }
  }
  return new ModuleBackend(bocca as CustomBocca, where, context);
};

class ModuleBackend implements Backend {
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly writes = new Set<Promise<unknown>>();

  constructor(
    private readonly bocca: CustomBocca,
    private readonly where: string,
    private readonly context: BackendContext,
  ) {}

  async open(): Promise<void> {
    if (this.closed) throw closedError(NAME, this.where);
    const { typology, processIndex, mode } = this.context;
    await this.call('open', () => this.bocca.open?.({ typology, processIndex, mode }));
  }

  write(items: readonly unknown[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError(NAME, this.where));
    const done = this.writeNow(items);
    // close() waits for writes in flight, so the module's close() comes after its last write().
    const tracked = done.catch(() => undefined);
    this.writes.add(tracked);
    void tracked.then(() => this.writes.delete(tracked));
    return done;
  }

  private async writeNow(items: readonly unknown[]): Promise<void> {
    if (items.length === 0) return;
    if (this.context.mode === 'batch') {
      await this.call('write', () => this.bocca.write(items));
      return;
    }
    for (const item of items) await this.call('write', () => this.bocca.write(item));
  }

  close(): Promise<void> {
    this.closed = true;
    this.closing ??= Promise.all(this.writes).then(() => this.call('close', () => this.bocca.close?.()));
    return this.closing;
  }

  private async call(method: string, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (err) {
      throw new BackendError('E_BACKEND_WRITE', NAME, this.where, `custom bocca ${this.where}: ${method}() failed: ${causeText(err)}`, { cause: err });
    }
  }
}

function exportName(options: Readonly<Record<string, unknown>>): string {
  return typeof options.export === 'string' && options.export ? options.export : 'default';
}

function describeWhere(options: Readonly<Record<string, unknown>>): string {
  const file = typeof options.module === 'string' && options.module ? options.module : 'module';
  return `${file}#${exportName(options)}`;
}
