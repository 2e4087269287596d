import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Backend, BackendFactory } from './types.js';
import { BackendError, cannotOpen, causeText, closedError, encodeFailed, writeFailed } from './backend-error.js';
import { toJson } from './json-line.js';
import { optionalBoolean, requiredString } from './options.js';

/**
 * Options of the `file` bocca.
 * - `path` (required, absolute): the JSON Lines file, appended to; its directory is created.
 * - `fsync` (default false): also `fdatasync` after every write, so a write survives a power cut,
 *   not only a crash of the process.
 */
export interface FileBackendOptions {
  readonly path: string;
  readonly fsync: boolean;
}

const NAME = 'file';

/**
 * Items as JSON Lines (json-line.ts encoding) appended to one file. The file is
 * opened with O_APPEND and each write(batch) is one write(2) of whole lines, so
 * several bocca processes may append to the same file and their lines never
 * interleave (true on local file systems; not on NFS). A write resolves once
 * the kernel has the data.
 */
export const createFileBackend: BackendFactory = async (options): Promise<Backend> => {
  const opts: FileBackendOptions = {
    path: requiredString(NAME, options, 'path'),
    fsync: optionalBoolean(NAME, options, 'fsync') ?? false,
  };
  return new FileBackend(opts);
};

class FileBackend implements Backend {
  private handle: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private closed = false;
  private readonly writes = new Set<Promise<void>>();

  constructor(private readonly opts: FileBackendOptions) {}

  async open(): Promise<void> {
    if (this.closed) throw closedError(NAME, this.opts.path);
    await this.file();
  }

  private file(): Promise<FileHandle> {
    if (this.handle) return Promise.resolve(this.handle);
    this.opening ??= (async () => {
      try {
        await mkdir(dirname(this.opts.path), { recursive: true });
        this.handle = await open(this.opts.path, 'a');
        return this.handle;
      } catch (err) {
        throw cannotOpen(NAME, this.opts.path, err);
      } finally {
        this.opening = undefined;
      }
    })();
    return this.opening;
  }

  write(items: readonly unknown[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError(NAME, this.opts.path));
    if (items.length === 0) return Promise.resolve();
    const done = this.append(items);
    // close() waits for writes in flight, so it really flushes.
    const tracked = done.catch(() => undefined);
    this.writes.add(tracked);
    void tracked.then(() => this.writes.delete(tracked));
    return done;
  }

  private async append(items: readonly unknown[]): Promise<void> {
    let data: Buffer;
    try {
      data = Buffer.from(items.map((item) => toJson(item) + '\n').join(''));
    } catch (err) {
      throw encodeFailed(NAME, this.opts.path, `an item cannot be written as JSON: ${causeText(err)}`, err);
    }
    const handle = await this.file();
    try {
      // One write(2) for the whole batch: O_APPEND places it atomically at the end. A short write
      // (disk full, signal) is finished with further writes; only then could lines of others slip in.
      let offset = 0;
      while (offset < data.length) {
        const { bytesWritten } = await handle.write(data, offset, data.length - offset);
        offset += bytesWritten;
      }
      if (this.opts.fsync) await handle.datasync();
    } catch (err) {
      // The handle may be broken (file system gone); open again on the next write.
      if (this.handle === handle) this.handle = undefined;
      await handle.close().catch(() => undefined);
      throw err instanceof BackendError ? err : writeFailed(NAME, this.opts.path, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.writes);
    const handle = this.handle ?? (await this.opening?.catch(() => undefined));
    this.handle = undefined;
    await handle?.close();
  }
}
