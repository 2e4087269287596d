import { pino, type Logger } from 'pino';

export type { Logger };

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name']);

/** One-line human rendering of a pino JSON line, for terminals. */
function pretty(line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const t = new Date(Number(o.time)).toISOString().slice(11, 23);
    const fields = Object.entries(o)
      .filter(([k]) => !SKIP.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    return `${t} ${(LEVELS[Number(o.level)] ?? o.level)} ${String(o.msg ?? '')}${fields ? `  ${fields}` : ''}\n`;
  } catch {
    return line;
  }
}

/**
 * Logs go to stderr: JSON lines, or one readable line each when stderr is a
 * terminal (REZINA_LOG_FORMAT=json forces JSON). stdout belongs to the stdout
 * bocca and to command output. Level: `level`, else REZINA_LOG_LEVEL, else info.
 */
export function createLogger(name: string, bindings: Record<string, unknown> = {}, level?: string): Logger {
  const opts = { name, level: level ?? process.env.REZINA_LOG_LEVEL ?? 'info', base: { pid: process.pid, ...bindings } };
  if (process.stderr.isTTY && process.env.REZINA_LOG_FORMAT !== 'json') {
    return pino(opts, { write: (line: string) => void process.stderr.write(pretty(line)) });
  }
  return pino(opts, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything; for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
