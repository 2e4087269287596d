import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Logs are JSON lines on stderr: stdout belongs to the stdout bocca and to
 * command output. Level comes from REZINA_LOG_LEVEL (default `info`).
 */
export function createLogger(name: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    { name, level: process.env.REZINA_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...bindings } },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything; for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
