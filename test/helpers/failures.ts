/**
 * Helpers for the fault-injection tests (test/e2e/failures*.test.ts), on top
 * of test/helpers/processes.ts: look inside running processes through /proc
 * (children of a worker, which stage a process runs, resident memory), read
 * the JSON log lines a daemon printed, restart a master on the same port,
 * and account for numbered items that reached a bocca (missing, duplicated).
 *
 * Linux only (/proc), like the machine the suite runs on.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import {
  REPO_ROOT,
  cliJson,
  describeJson,
  makeTempDir,
  pollUntil,
  runCli,
  sleep,
  spawnCli,
  type CliProcess,
  type MasterHandle,
} from './processes.js';

export const FAILURE_FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'failures');

// ---------------------------------------------------------------------------
// Workspaces

/** Copies test/fixtures/failures/SUBDIR (flat) into a fresh temp dir and returns its path. */
export function fixtureWorkspace(subdir: string, label = subdir): string {
  const dir = makeTempDir(`${label}-ws`);
  const from = path.join(FAILURE_FIXTURES, subdir);
  for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  return dir;
}

/**
 * Moves the files of `staging` into a master's watched workspace, modules
 * first and YAML files last (each by an atomic rename), so the master sees a
 * complete typology. Used to add a typology once every worker has joined:
 * processes are placed on the workers present at that moment.
 */
export function publishInto(staging: string, workspace: string): void {
  const files = fs.readdirSync(staging).sort((a, b) => Number(/\.ya?ml$/.test(a)) - Number(/\.ya?ml$/.test(b)));
  for (const f of files) {
    const tmp = path.join(workspace, `.${f}.tmp`);
    fs.copyFileSync(path.join(staging, f), tmp);
    fs.renameSync(tmp, path.join(workspace, f));
  }
}

/** Replaces `from` by `to` in a workspace file (the test's "user edit"), writing it in place. */
export function editFile(file: string, from: string | RegExp, to: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const found = typeof from === 'string' ? text.includes(from) : from.test(text);
  if (!found) throw new Error(`editFile: ${String(from)} not found in ${file}`);
  fs.writeFileSync(file, text.replace(from, to));
}

// ---------------------------------------------------------------------------
// /proc

/** Parsed /proc/PID/stat: state letter and parent pid; undefined once the pid is gone. */
export function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0]!, ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie has exited; it only waits to be reaped). */
export function pidRunning(pid: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

/** Pids whose parent is `ppid` (like `ps --ppid`), zombies excluded. */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s && s.ppid === ppid && s.state !== 'Z') out.push(Number(name));
  }
  return out;
}

/** What a stage process runs, from the REZINA_PROC its worker gave it. */
export interface StageProcInfo {
  pid: number;
  procId: string;
  typology: string;
  stage: string;
  role: 'hydrant' | 'notch' | 'bocca';
}

export function stageOf(pid: number): StageProcInfo | undefined {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const line = env.find((l) => l.startsWith('REZINA_PROC='));
    if (!line) return undefined;
    const spec = JSON.parse(line.slice('REZINA_PROC='.length)) as Omit<StageProcInfo, 'pid'>;
    return { pid, procId: spec.procId, typology: spec.typology, stage: spec.stage, role: spec.role };
  } catch {
    return undefined;
  }
}

/** The stage processes a worker runs right now. */
export function stageChildren(worker: CliProcess): StageProcInfo[] {
  return childPids(worker.pid)
    .map(stageOf)
    .filter((s): s is StageProcInfo => s !== undefined);
}

/** Resident memory of a process in kB (VmRSS of /proc/PID/status); undefined once it is gone. */
export function rssKb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Sends a signal to a pid, ignoring one that is already gone. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

// ---------------------------------------------------------------------------
// Logs

export interface LogLine {
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

/** The JSON log lines (pino) in a daemon's stderr; other lines are skipped. */
export function logLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // a line cut by a kill
    }
  }
  return out;
}

/** Log lines of `p` with this message (and these fields, when given). */
export function linesWith(p: CliProcess, msg: string | RegExp, fields: Record<string, unknown> = {}): LogLine[] {
  return logLines(p.stderr).filter(
    (l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)) && Object.entries(fields).every(([k, v]) => l[k] === v),
  );
}

/** Resolves with the first log line of `p` with this message (and fields) that is newer than `since` (ms epoch). */
export function waitForLog(p: CliProcess, msg: string | RegExp, opts: { fields?: Record<string, unknown>; since?: number; timeoutMs?: number; context?: () => string } = {}): Promise<LogLine> {
  return pollUntil(() => linesWith(p, msg, opts.fields).find((l) => l.time >= (opts.since ?? 0)), {
    timeoutMs: opts.timeoutMs ?? 20_000,
    intervalMs: 100,
    what: `log line "${String(msg)}" ${JSON.stringify(opts.fields ?? {})} from ${p.name}`,
    context: opts.context ?? (() => p.describe()),
  });
}

// ---------------------------------------------------------------------------
// Master (re)start on a known port

/** `rezina master --port PORT` on an existing workspace and state dir (a restart after a kill). */
export async function restartMaster(old: MasterHandle, extraArgs: string[] = [], timeoutMs = 30_000): Promise<MasterHandle> {
  const deadline = Date.now() + timeoutMs;
  // The port may take a moment to be free again; retry a bind failure instead of sleeping up front.
  for (;;) {
    const p = spawnCli(['master', '--port', String(old.port), '--workspace', old.workspace, '--state-dir', old.stateDir, ...extraArgs], { name: 'master (restarted)', cwd: makeTempDir('master-cwd') });
    try {
      const m = await p.waitForLine(/^rezina master listening on ([\d.]+):(\d+), watching /, { timeoutMs: Math.max(1000, deadline - Date.now()) });
      return { process: p, address: `${m[1]}:${m[2]}`, port: Number(m[2]), workspace: old.workspace, stateDir: old.stateDir };
    } catch (err) {
      if (Date.now() > deadline || p.running) throw err;
      await sleep(200);
    }
  }
}

// ---------------------------------------------------------------------------
// CLI shapes

export interface RunRow {
  id: number;
  typology: string;
  version: number;
  status: 'running' | 'finished';
  in: number;
  out: number;
  dropped: number;
  failed: number;
  seconds: number;
  errors: string[];
}

export interface DeadLetterRow {
  id: string;
  typology: string;
  version: number;
  stage: string;
  run: number;
  error: string;
  at?: string;
  attempts: number;
  item: unknown;
}

export interface StageRow {
  name: string;
  role: string;
  desired?: string;
  queued?: number;
  inFlight?: number;
  processed?: number;
  failed?: number;
  processes: Array<{ id: string; worker?: string; state: string }>;
}

export interface Described {
  name: string;
  version: number;
  stages: StageRow[];
  recentRuns: RunRow[];
}

export const getRuns = (m: MasterHandle, typology?: string) => cliJson<RunRow[]>(['get', 'runs', ...(typology ? [typology] : [])], m.address);
export const getDeadLetters = (m: MasterHandle, typology?: string) => cliJson<DeadLetterRow[]>(['get', 'deadletters', ...(typology ? [typology] : [])], m.address);
export const describeTypology = (m: MasterHandle, typology: string) => describeJson<Described>(typology, m.address);

/** Waits until every process the typology wants is ready (describe), and returns the description. */
export async function waitAllReady(m: MasterHandle, typology: string, want: number, timeoutMs = 30_000, context?: () => string): Promise<Described> {
  return pollUntil(
    async () => {
      const d = await describeTypology(m, typology);
      const ready = d.stages.flatMap((s) => s.processes).filter((p) => p.state === 'ready').length;
      return ready >= want ? d : undefined;
    },
    { timeoutMs, what: `${want} ready processes of ${typology}`, context },
  );
}

/** `rezina trigger NAME` (it prints `{"run": N}`); returns the run id. */
export async function trigger(m: MasterHandle, typology: string): Promise<number> {
  const out = await runCli(['trigger', typology, '--master', m.address], { name: `trigger ${typology}` });
  if (out.code !== 0) throw new Error(`trigger ${typology} failed\n${out.describe()}`);
  return (JSON.parse(out.stdout) as { run: number }).run;
}

/** Waits for run `id` of `typology` to be finished and returns its row. */
export function waitRunFinished(m: MasterHandle, typology: string, id: number, timeoutMs: number, context?: () => string): Promise<RunRow> {
  return pollUntil(
    async () => {
      const r = (await getRuns(m, typology)).find((x) => x.id === id);
      return r?.status === 'finished' ? r : undefined;
    },
    { timeoutMs, intervalMs: 500, what: `run ${id} of ${typology} to finish`, context },
  );
}

// ---------------------------------------------------------------------------
// Numbered items in a bocca

/** Where `count` numbered items 0..count−1 stand after a run: what is missing and what arrived twice. */
export interface NumberAccount {
  rows: number;
  distinct: number;
  duplicates: number;
  missing: number[];
  /** Missing numbers as ranges, e.g. "65536-99999", for messages. */
  missingRanges: string;
  outOfRange: number;
}

export function accountNumbers(ns: Iterable<number>, count: number): NumberAccount {
  const seen = new Uint8Array(count);
  let rows = 0;
  let outOfRange = 0;
  for (const n of ns) {
    rows++;
    if (!Number.isInteger(n) || n < 0 || n >= count) {
      outOfRange++;
      continue;
    }
    if (seen[n]! < 255) seen[n]!++;
  }
  const missing: number[] = [];
  let distinct = 0;
  for (let n = 0; n < count; n++) {
    if (seen[n] === 0) missing.push(n);
    else distinct++;
  }
  return { rows, distinct, duplicates: rows - outOfRange - distinct, missing, missingRanges: ranges(missing), outOfRange };
}

function ranges(ns: number[], max = 20): string {
  const parts: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    parts.push(i === j ? `${ns[i]}` : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return parts.length > max ? `${parts.slice(0, max).join(', ')}, … (${parts.length} ranges)` : parts.join(', ');
}

/** The `n` column of a SQLite table (empty while the file or table does not exist yet). */
export function sqliteNumbers(file: string, table: string): number[] {
  if (!fs.existsSync(file)) return [];
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return (db.prepare(`SELECT n FROM "${table}"`).raw().all() as Array<[number]>).map((r) => r[0]);
  } catch (err) {
    if (/no such table/.test(String(err))) return [];
    throw err;
  } finally {
    db.close();
  }
}

/** Rows in a SQLite table, 0 while it does not exist. */
export function sqliteCount(file: string, table: string): number {
  if (!fs.existsSync(file)) return 0;
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return (db.prepare(`SELECT count(*) AS c FROM "${table}"`).get() as { c: number }).c;
  } catch (err) {
    if (/no such table/.test(String(err))) return 0;
    throw err;
  } finally {
    db.close();
  }
}

/** The `n` of every JSON line of a file bocca's output (empty while it does not exist). */
export function jsonlNumbers(file: string): number[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => (JSON.parse(l) as { n: number }).n);
}

/** Waits until `probe()` (a row count) reaches `atLeast`. */
export function waitCount(probe: () => number, atLeast: number, what: string, timeoutMs = 60_000, context?: () => string): Promise<number> {
  return pollUntil(() => {
    const n = probe();
    return n >= atLeast ? n : undefined;
  }, { timeoutMs, intervalMs: 100, what: `${what} to reach ${atLeast}`, context });
}

/** A line for the test output, so the numbers of a run are on record even when it passes. */
export function report(title: string, data: Record<string, unknown>): void {
  process.stdout.write(`[failures] ${title}: ${JSON.stringify(data)}\n`);
}

/** Waits until each named typology is listed with all of its processes ready (`get typologies`: "ready/wanted"). */
export async function waitTypologiesReady(m: MasterHandle, names: string[], timeoutMs = 40_000, context?: () => string): Promise<void> {
  await pollUntil(
    async () => {
      const rows = await cliJson<Array<{ name: string; processes?: string }>>(['get', 'typologies'], m.address);
      return names.every((n) => {
        const [ready, want] = (rows.find((r) => r.name === n)?.processes ?? '0/1').split('/').map(Number);
        return ready! >= want! && want! > 0;
      });
    },
    { timeoutMs, what: `typologies ${names.join(', ')} to have every process ready`, context },
  );
}
