import { RezinaError } from '../errors.js';

/**
 * Stable codes of backend failures.
 * - `E_BACKEND_CONFIG`: the bocca options are wrong (missing `path`, bad `type`…); retrying cannot help.
 * - `E_BACKEND_UNREACHABLE`: the service or file cannot be reached or opened, or the connection was lost; retry.
 * - `E_BACKEND_WRITE`: the service refused the write (SQL error, full disk…); usually worth a retry.
 * - `E_BACKEND_ENCODE`: an item cannot be stored (cannot be encoded, or a column has an incompatible type); retrying the same item cannot help.
 * - `E_BACKEND_CLOSED`: `write` after `close`.
 */
export type BackendErrorCode =
  | 'E_BACKEND_CONFIG'
  | 'E_BACKEND_UNREACHABLE'
  | 'E_BACKEND_WRITE'
  | 'E_BACKEND_ENCODE'
  | 'E_BACKEND_CLOSED';

/**
 * What every backend throws. The message names the backend and where it points
 * (`postgres at 127.0.0.1:5432 is not reachable: …`); `retryable` tells the
 * stage runtime whether a retry with backoff can succeed or the items should go
 * to the dead-letter store right away.
 */
export class BackendError extends RezinaError {
  /** Backend name: stdout, file, sqlite, postgres, mysql, redis, module. */
  readonly backend: string;
  /** host:port, file path, or module path; never a password. */
  readonly where: string;
  readonly retryable: boolean;
  declare readonly code: BackendErrorCode;

  constructor(
    code: BackendErrorCode,
    backend: string,
    where: string,
    message: string,
    options: { cause?: unknown; retryable?: boolean } = {},
  ) {
    super(code, message, { cause: options.cause });
    this.backend = backend;
    this.where = where;
    this.retryable = options.retryable ?? (code === 'E_BACKEND_UNREACHABLE' || code === 'E_BACKEND_WRITE');
  }
}

/**
 * One line for a driver error. Node's connect errors can be an AggregateError
 * with an empty message (one attempt per address family), so dig for a code.
 */
export function causeText(err: unknown): string {
  if (err instanceof Error) {
    if (err.message) return err.message;
    const code = (err as { code?: unknown }).code;
    const inner = (err as { errors?: unknown }).errors;
    if (Array.isArray(inner) && inner.length > 0) return inner.map(causeText).join('; ');
    if (typeof code === 'string') return code;
    return err.name;
  }
  return typeof err === 'string' ? err : String(err);
}

export function unreachable(backend: string, where: string, cause: unknown): BackendError {
  return new BackendError('E_BACKEND_UNREACHABLE', backend, where, `${backend} at ${where} is not reachable: ${causeText(cause)}`, { cause });
}

/** A file (file, sqlite) that cannot be opened or created. */
export function cannotOpen(backend: string, path: string, cause: unknown): BackendError {
  return new BackendError('E_BACKEND_UNREACHABLE', backend, path, `${backend} at ${path} cannot be opened: ${causeText(cause)}`, { cause });
}

export function writeFailed(backend: string, where: string, cause: unknown, retryable = true): BackendError {
  return new BackendError('E_BACKEND_WRITE', backend, where, `${backend} at ${where}: write failed: ${causeText(cause)}`, { cause, retryable });
}

export function encodeFailed(backend: string, where: string, message: string, cause?: unknown): BackendError {
  return new BackendError('E_BACKEND_ENCODE', backend, where, `${backend} at ${where}: ${message}`, { cause });
}

export function closedError(backend: string, where: string): BackendError {
  return new BackendError('E_BACKEND_CLOSED', backend, where, `${backend} at ${where}: write after close`);
}

export function configError(backend: string, message: string): BackendError {
  return new BackendError('E_BACKEND_CONFIG', backend, '', `${backend} bocca: ${message}`);
}
