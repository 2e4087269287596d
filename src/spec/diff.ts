import path from 'node:path';
import type { Typology } from './types.js';
import { formatDuration } from './duration.js';

/** One difference between two versions of a typology, e.g. `schedule.interval 10s → 5s`. */
export interface Change {
  path: string;
  from: unknown;
  to: unknown;
}

/**
 * What applying the new version means for the running system:
 * - `unchanged`: nothing to do;
 * - `schedule`: only when runs start changes; nothing restarts;
 * - `scale`: only processes/threads changed (and maybe the schedule); processes are added or drained;
 * - `code`: only module code changed (and maybe schedule/scale); the stages using it restart, one process at a time;
 * - `version`: anything else (stages, order, bocca, args); the typology moves to a new version.
 */
export type ChangeKind = 'unchanged' | 'schedule' | 'scale' | 'code' | 'version';

const SCALE_KEYS = new Set(['processes', 'threads']);

/** The user-facing shape of a typology, for comparing and printing. */
function view(t: Typology, codeOf?: CodeOf): Record<string, unknown> {
  const code = (file: string) => codeOf?.(file)?.slice(0, 12);
  const rel = (v: unknown) => (typeof v === 'string' && path.isAbsolute(v) && v.startsWith(t.dir) ? path.relative(t.dir, v) : v);
  const s = t.schedule;
  const stageView = (n: Typology['notches'][number]) => ({
    module: n.moduleAsWritten,
    function: n.function,
    code: code(n.module),
    processes: n.processes,
    threads: n.threads,
    timeout: n.timeoutMs === undefined ? undefined : formatDuration(n.timeoutMs),
    retries: n.retries,
    retryBackoff: formatDuration(n.retryBackoffMs),
  });
  const boccaModule = typeof t.bocca.options.module === 'string' ? t.bocca.options.module : undefined;
  return {
    description: t.description,
    schedule: {
      interval: s.intervalMs === undefined ? undefined : formatDuration(s.intervalMs),
      cron: s.cron,
      timezone: s.timezone,
      startTime: s.startTime === undefined ? undefined : new Date(s.startTime).toISOString(),
      overlap: s.overlap,
    },
    hydrants: Object.fromEntries(t.hydrants.map((h) => [h.name, { module: h.moduleAsWritten, function: h.function, code: code(h.module), args: h.args }])),
    notchOrder: t.notches.map((n) => n.name).join(' → '),
    notches: Object.fromEntries(t.notches.map((n) => [n.name, stageView(n)])),
    bocca: {
      backend: t.bocca.backend,
      mode: t.bocca.mode,
      batchSize: t.bocca.batchSize,
      linger: formatDuration(t.bocca.lingerMs),
      processes: t.bocca.processes,
      threads: t.bocca.threads,
      options: Object.fromEntries(Object.entries(t.bocca.options).map(([k, v]) => [k, rel(v)])),
      code: boccaModule ? code(boccaModule) : undefined,
    },
    queueCapacity: t.queueCapacity,
    persistQueues: t.persistQueues,
  };
}

function walk(a: unknown, b: unknown, path: string, out: Change[]): void {
  if (Object.is(a, b)) return;
  const isObj = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
    for (const k of keys) walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k, out);
    return;
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  out.push({ path, from: a, to: b });
}

/** A fingerprint of a module's code by absolute source path (compiled hash, or source text hash). */
export type CodeOf = (file: string) => string | undefined;

export function diffTypologies(a: Typology, b: Typology, codeA?: CodeOf, codeB?: CodeOf): Change[] {
  const out: Change[] = [];
  walk(view(a, codeA), view(b, codeB), '', out);
  // `notches.fetch.processes` reads better as `notches[fetch].processes`.
  return out.map((c) => ({ ...c, path: c.path.replace(/^(notches|hydrants)\.([^.]+)/, '$1[$2]') }));
}

export function classifyChanges(changes: readonly Change[]): ChangeKind {
  if (changes.length === 0) return 'unchanged';
  const isSchedule = (c: Change) => c.path.startsWith('schedule.') || c.path === 'description';
  const isScale = (c: Change) => {
    const last = c.path.slice(c.path.lastIndexOf('.') + 1);
    return (c.path.startsWith('notches[') || c.path.startsWith('bocca.')) && SCALE_KEYS.has(last);
  };
  const isCode = (c: Change) => c.path.endsWith('.code') && c.from !== undefined && c.to !== undefined;
  if (changes.every(isSchedule)) return 'schedule';
  if (changes.every((c) => isSchedule(c) || isScale(c))) return 'scale';
  if (changes.every((c) => isSchedule(c) || isScale(c) || isCode(c))) return 'code';
  return 'version';
}

export function formatChange(c: Change): string {
  const show = (v: unknown) => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));
  return `${c.path} ${show(c.from)} → ${show(c.to)}`;
}
