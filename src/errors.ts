/**
 * One error family for the whole product. Each error has a stable `code`
 * (for tests and for machines) and an `exitCode` hint that only the CLI uses.
 */
export class RezinaError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(code: string, message: string, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** A position-carrying problem in a user's file. Rendered `file:line:col: message (at path)`. */
export interface Diagnostic {
  file: string;
  /** 1-based; 0 when the problem has no position (e.g. a missing file). */
  line: number;
  /** 1-based; 0 when unknown. */
  col: number;
  /** Spec path such as `notches[0].threads`; empty for whole-file problems. */
  path: string;
  code: string;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line > 0 ? `${d.file}:${d.line}:${d.col}` : d.file;
  return d.path ? `${where}: ${d.message} (at ${d.path})` : `${where}: ${d.message}`;
}

/** User input (a typology file, a module, a CLI flag) is wrong. */
export class ConfigError extends RezinaError {
  readonly diagnostics: readonly Diagnostic[];
  constructor(message: string, diagnostics: readonly Diagnostic[] = [], options: { cause?: unknown } = {}) {
    super('E_CONFIG', message, { ...options, exitCode: 2 });
    this.diagnostics = diagnostics;
  }
}

/** Talking to a peer failed (master unreachable, garbage on a socket, timeout). */
export class TransportError extends RezinaError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('E_TRANSPORT', message, { ...options, exitCode: 3 });
  }
}

/** A user function failed on an item (threw, timed out, returned something that cannot cross a process). */
export class StageError extends RezinaError {
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
  }
}

/** Best-effort one-line description of anything thrown, for logs and dead letters. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  try {
    return typeof err === 'string' ? err : JSON.stringify(err);
  } catch {
    return String(err);
  }
}
