/**
 * Fixtures and probes for the hot-reload end-to-end tests (test/e2e/reload-*.test.ts).
 *
 * Process handling (spawn, port read-back, kill by process group, temp dirs)
 * is test/helpers/processes.ts; this file adds what reload tests need on top:
 *
 * - a fixture module written into each temp workspace, whose hydrant stamps
 *   every item with a unique `tick` and a number `n`, and whose notches append
 *   `stage@vVERSION` and their pid to the item, so the bocca file tells which
 *   chain (old or new version) and which process each item went through;
 * - a typology YAML builder with predictable line numbers;
 * - the master's JSON log lines, parsed, with a wait for one matching;
 * - the editors' save patterns (in place, temp-then-rename, vim backup, burst,
 *   delete-and-recreate, a write in two parts);
 * - readers of the bocca output and checks of "every id exactly once".
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { cliJson, describeJson, pollUntil, runCli, sleep, type CliProcess, type MasterHandle } from './processes.js';

// ---------------------------------------------------------------------------
// Shapes of the CLI's JSON output

export interface RunRow {
  id: number;
  typology: string;
  version: number;
  status: 'running' | 'finished';
  fireTime: number;
  startedAt: number;
  finishedAt?: number;
  in: number;
  out: number;
  dropped: number;
  failed: number;
  seconds: number;
  errors: string[];
}

export interface TypologyRow {
  name: string;
  file: string;
  version: number;
  status: string;
  processes?: string;
  runsInProgress?: number;
  error?: string;
}

export interface HistoryRecord {
  version: number;
  appliedAt: string;
  source: 'start' | 'edit' | 'apply';
  kind: string;
  changes: string[];
}

export interface Described {
  name: string;
  file: string;
  version: number;
  stopped: boolean;
  history: HistoryRecord[];
  invalid?: { file: string; diagnostics: Array<{ file: string; line: number; col: number; path: string; code: string; message: string }>; rendered: string[] };
  stageError?: string;
  stages: Array<{ name: string; role: string; desired?: string; queued?: number; inFlight?: number; processes: Array<{ id: string; worker?: string; state: string }> }>;
  retiringVersions: Array<{ version: number; itemsInFlight: number }>;
}

/** What the fixture notches and bocca write, one per line of the bocca file. */
export interface OutItem {
  id: string;
  tick: string;
  n: number;
  /** `stage@vVERSION` of every notch the item went through, in order. */
  via: string[];
  /** The pid of the process of each notch in `via`. */
  pids: number[];
  /** The fixture module's MARK when the last notch ran (a code edit changes it). */
  mark?: string;
  /** Only with the recording bocca: `bocca@vVERSION`. */
  bocca?: string;
}

// ---------------------------------------------------------------------------
// Workspace fixtures

export interface FixtureModuleOptions {
  /** What every notch writes into `mark`. Default 'one'. */
  mark?: string;
  /** How long `slow` waits per item, ms. Default 20. */
  slowMs?: number;
}

/**
 * The fixture module, as TypeScript source. The stage process's ProcSpec
 * (REZINA_PROC, set by the worker) tells a notch its stage and version.
 */
export function fixtureModule(opts: FixtureModuleOptions = {}): string {
  return `/** Reload-test fixture: numbered items; notches record which version's stage and process handled them. */
import { setTimeout as sleep } from 'node:timers/promises';

const PROC = JSON.parse(process.env.REZINA_PROC ?? '{}') as { stage?: string; version?: number };
const VIA = \`\${PROC.stage}@v\${PROC.version}\`;
export const MARK = ${JSON.stringify(opts.mark ?? 'one')};
const SLOW_MS = ${opts.slowMs ?? 20};

export interface Item { id: string; tick: string; n: number; via: string[]; pids: number[]; mark?: string }

let ticks = 0;
/** One name per hydrant call, unique across processes and restarts. */
function tickName(): string {
  return \`\${process.pid}.\${Date.now()}.\${++ticks}\`;
}

/** Hydrant: \`count\` items numbered 0 … count − 1 (an array). */
export function numbers(count = 10): Item[] {
  const tick = tickName();
  return Array.from({ length: count }, (_, n) => ({ id: \`\${tick}-\${n}\`, tick, n, via: [], pids: [] }));
}

/** Hydrant: the same as an async generator, for big ticks that should stream. */
export async function* stream(count = 10): AsyncGenerator<Item> {
  const tick = tickName();
  for (let n = 0; n < count; n++) yield { id: \`\${tick}-\${n}\`, tick, n, via: [], pids: [] };
}

function stamp(item: Item): Item {
  return { ...item, via: [...item.via, VIA], pids: [...item.pids, process.pid], mark: MARK };
}

/** Notch: passes the item on, stamped. */
export function tag(item: Item): Item {
  return stamp(item);
}

/** Notch: the same after SLOW_MS. */
export async function slow(item: Item): Promise<Item> {
  await sleep(SLOW_MS);
  return stamp(item);
}
`;
}

/** A notch-only module (export `tag`, stamping like fx.ts's with `mark`): editing it changes no other stage's code. */
export function markModule(mark: string): string {
  return `const PROC = JSON.parse(process.env.REZINA_PROC ?? '{}') as { stage?: string; version?: number };
const VIA = \`\${PROC.stage}@v\${PROC.version}\`;
export const MARK = ${JSON.stringify(mark)};
export function tag(item: { via: string[]; pids: number[] }) {
  return { ...item, via: [...item.via, VIA], pids: [...item.pids, process.pid], mark: MARK };
}
`;
}

/**
 * A custom bocca (backend: module) that appends each batch to `outFile` as
 * JSON lines, stamping each item with the bocca's own version: together with
 * the notches' stamps, the whole chain an item went through is on its line.
 */
export function recordingBoccaModule(outFile: string): string {
  return `import fs from 'node:fs';
const PROC = JSON.parse(process.env.REZINA_PROC ?? '{}') as { version?: number };
const OUT = ${JSON.stringify(outFile)};
export default class Recorder {
  write(batch: unknown[]): void {
    const items = Array.isArray(batch) ? batch : [batch];
    // One append per batch: whole lines, so two bocca processes never interleave.
    fs.appendFileSync(OUT, items.map((i) => JSON.stringify({ ...(i as object), bocca: \`bocca@v\${PROC.version}\` }) + '\\n').join(''));
  }
}
`;
}

export interface NotchSpec {
  name: string;
  /** Default fx.ts. */
  module?: string;
  /** Export of fx.ts: tag | slow. Default tag. */
  function?: string;
  processes?: number;
  threads?: number;
}

export interface TypologyOptions {
  name: string;
  /** schedule.interval, e.g. '2s'. Omit with `startTime` for a typology that only runs when triggered. */
  interval?: string;
  startTime?: string;
  /** Hydrant export of fx.ts: numbers | stream. Default numbers. */
  hydrant?: string;
  /** The hydrant's count. Default 10. */
  count?: number;
  notches: NotchSpec[];
  /** Default: file bocca writing results/NAME.jsonl. */
  bocca?: { backend: 'file'; path?: string } | { backend: 'module'; module: string; mode?: 'stream' | 'batch'; size?: number; linger?: string };
  queueCapacity?: number;
}

/**
 * A typology YAML. Line numbers are fixed by construction: line 1 is `name:`,
 * the schedule block follows, then the hydrant, notches and bocca.
 */
export function typologyYaml(o: TypologyOptions): string {
  const lines = [`name: ${o.name}`];
  if (o.interval || o.startTime) lines.push('schedule:');
  if (o.interval) lines.push(`  interval: ${o.interval}`);
  if (o.startTime) lines.push(`  startTime: "${o.startTime}"`);
  lines.push('hydrant:', '  module: fx.ts', `  function: ${o.hydrant ?? 'numbers'}`, `  args: [${o.count ?? 10}]`, 'notches:');
  for (const n of o.notches) {
    lines.push(`  - name: ${n.name}`, `    module: ${n.module ?? 'fx.ts'}`, `    function: ${n.function ?? 'tag'}`);
    if (n.processes !== undefined) lines.push(`    processes: ${n.processes}`);
    if (n.threads !== undefined) lines.push(`    threads: ${n.threads}`);
  }
  const b = o.bocca ?? { backend: 'file' as const };
  lines.push('bocca:');
  if (b.backend === 'file') {
    lines.push('  backend: file', `  path: ${b.path ?? `results/${o.name}.jsonl`}`);
  } else {
    lines.push('  backend: module', `  module: ${b.module}`, `  mode: ${b.mode ?? 'batch'}`);
    if ((b.mode ?? 'batch') === 'batch') lines.push('  batch:', `    size: ${b.size ?? 200}`, `    linger: ${b.linger ?? '20ms'}`);
  }
  if (o.queueCapacity !== undefined) lines.push('queue:', `  capacity: ${o.queueCapacity}`);
  return `${lines.join('\n')}\n`;
}

/** Writes fx.ts (and anything in `extra`, by relative name) into `dir`. */
export function writeWorkspace(dir: string, files: Record<string, string>, module: FixtureModuleOptions = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'fx.ts'), fixtureModule(module));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
}

// ---------------------------------------------------------------------------
// Editors' save patterns

/** Write in place (truncate + write), as most simple editors do. Returns the time of the save (ms). */
export function saveInPlace(file: string, text: string): number {
  const at = Date.now();
  fs.writeFileSync(file, text);
  return at;
}

/** VS Code / JetBrains "atomic save": write a temp file in the same directory, rename it over the file. */
export function saveByRename(file: string, text: string, tmpName = `.${path.basename(file)}.${process.pid}.tmp`): number {
  const tmp = path.join(path.dirname(file), tmpName);
  const at = Date.now();
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
  return at;
}

/** vim with `backupcopy=no`: move the file to `file~`, write a new file, remove the backup. */
export function saveVimStyle(file: string, text: string): number {
  const backup = `${file}~`;
  const at = Date.now();
  fs.renameSync(file, backup);
  fs.writeFileSync(file, text);
  fs.rmSync(backup);
  return at;
}

/** Writes half of `text`, waits `gapMs`, writes the rest (a slow writer; the half alone is not valid YAML). */
export async function saveInTwoParts(file: string, text: string, gapMs: number): Promise<number> {
  const at = Date.now();
  const fd = fs.openSync(file, 'w');
  try {
    const cut = Math.floor(text.length / 2);
    fs.writeSync(fd, text.slice(0, cut));
    await sleep(gapMs);
    fs.writeSync(fd, text.slice(cut));
  } finally {
    fs.closeSync(fd);
  }
  return at;
}

// ---------------------------------------------------------------------------
// The master's log

export interface LogLine {
  level: number;
  time: number;
  msg: string;
  [field: string]: unknown;
}

/** The JSON log lines the master printed on stderr so far (other lines skipped). */
export function logLines(p: CliProcess): LogLine[] {
  const out: LogLine[] = [];
  for (const line of p.stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const o = JSON.parse(line) as LogLine;
      if (typeof o.msg === 'string') out.push(o);
    } catch {
      // a line still being written
    }
  }
  return out;
}

/** Log lines with message `msg` (and, if given, the fields in `where`). */
export function logsWith(p: CliProcess, msg: string, where: Record<string, unknown> = {}): LogLine[] {
  return logLines(p).filter((l) => l.msg === msg && Object.entries(where).every(([k, v]) => l[k] === v));
}

/** Waits for the `nth` (1-based, default 1) log line with message `msg` and fields `where`. */
export function waitForLog(p: CliProcess, msg: string, where: Record<string, unknown> = {}, opts: { timeoutMs?: number; nth?: number; after?: number } = {}): Promise<LogLine> {
  const nth = opts.nth ?? 1;
  return pollUntil(() => logsWith(p, msg, where).filter((l) => l.time >= (opts.after ?? 0))[nth - 1], {
    timeoutMs: opts.timeoutMs ?? 15_000,
    intervalMs: 25,
    what: `master log line "${msg}" ${JSON.stringify(where)}${nth > 1 ? ` (#${nth})` : ''}`,
    context: () => p.describe(),
  });
}

// ---------------------------------------------------------------------------
// Queries

export const getRuns = (m: MasterHandle, typology?: string) => cliJson<RunRow[]>(['get', 'runs', ...(typology ? [typology] : [])], m.address);
export const getTypologies = (m: MasterHandle) => cliJson<TypologyRow[]>(['get', 'typologies'], m.address);
export const describeT = (m: MasterHandle, name: string) => describeJson<Described>(name, m.address);

/** Waits until every process the typology wants is ready (`get typologies`: `processes` "N/N", status running). */
export function waitReady(m: MasterHandle, name: string, timeoutMs = 30_000): Promise<TypologyRow> {
  return pollUntil(
    async () => {
      const row = (await getTypologies(m)).find((t) => t.name === name);
      if (!row || row.status !== 'running' || !row.processes) return undefined;
      const [a, b] = row.processes.split('/').map(Number);
      return a === b && a! > 0 ? row : undefined;
    },
    { timeoutMs, what: `typology ${name} to be running with all its processes`, context: () => m.process.describe() },
  );
}

/** Proc ids by stage, from describe. */
export function procIds(d: Described): Record<string, string[]> {
  return Object.fromEntries(d.stages.map((s) => [s.name, s.processes.map((p) => p.id).sort()]));
}

// ---------------------------------------------------------------------------
// The bocca's output

/** Every complete JSON line of a JSONL file (missing file: none). */
export function readJsonl<T = OutItem>(file: string): T[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: T[] = [];
  const lines = text.split('\n');
  // The last piece is '' after a complete line, or a line still being appended.
  for (const line of lines.slice(0, -1)) if (line) out.push(JSON.parse(line) as T);
  return out;
}

export interface Delivery {
  /** Items per tick (hydrant call). */
  byTick: Map<string, OutItem[]>;
  /** Ids that arrived more than once, with how often. */
  duplicates: Array<[string, number]>;
  /** Ticks whose numbers 0 … count − 1 are not all there. */
  incomplete: Array<{ tick: string; missing: number[] }>;
}

/** Groups the items by tick and finds duplicates and holes, given the hydrant's count per tick. */
export function checkDelivery(items: OutItem[], countPerTick: number): Delivery {
  const seen = new Map<string, number>();
  const byTick = new Map<string, OutItem[]>();
  for (const it of items) {
    seen.set(it.id, (seen.get(it.id) ?? 0) + 1);
    if (!byTick.has(it.tick)) byTick.set(it.tick, []);
    byTick.get(it.tick)!.push(it);
  }
  const incomplete: Delivery['incomplete'] = [];
  for (const [tick, list] of byTick) {
    const ns = new Set(list.map((i) => i.n));
    const missing: number[] = [];
    for (let n = 0; n < countPerTick; n++) if (!ns.has(n)) missing.push(n);
    if (missing.length > 0) incomplete.push({ tick, missing: missing.slice(0, 20) });
  }
  return { byTick, duplicates: [...seen].filter(([, c]) => c > 1), incomplete };
}

/**
 * Stops the typology's schedule, waits until no run is in progress, and
 * checks that what reached the bocca file is exactly what the finished runs
 * say went out: every tick complete, no id twice, lines = Σ out.
 */
export async function stopAndCheckNothingLost(m: MasterHandle, name: string, outFile: string, countPerTick: number, timeoutMs = 30_000): Promise<{ runs: RunRow[]; items: OutItem[]; delivery: Delivery }> {
  const stopped = await runCli(['stop', name, '--master', m.address]);
  expect(stopped.code, stopped.describe()).toBe(0);
  const runs = await pollUntil(
    async () => {
      const rs = await getRuns(m, name);
      return rs.every((x) => x.status === 'finished') ? rs : undefined;
    },
    { timeoutMs, what: `every run of ${name} to finish`, context: () => m.process.describe() },
  );
  const items = readJsonl(outFile);
  const delivery = checkDelivery(items, countPerTick);
  const out = runs.reduce((n, x) => n + x.out, 0);
  expect(delivery.duplicates, 'ids that arrived twice').toEqual([]);
  expect(delivery.incomplete, 'ticks with items missing').toEqual([]);
  expect(runs.filter((x) => x.failed > 0 || x.dropped > 0 || x.errors.length > 0), 'runs with failures, drops or errors').toEqual([]);
  expect(runs.every((x) => x.in === countPerTick && x.out === countPerTick), `every run has in = out = ${countPerTick}: ${JSON.stringify(runs.map((x) => [x.id, x.in, x.out]))}`).toBe(true);
  expect(items.length, 'lines in the bocca file = Σ out of the runs').toBe(out);
  expect(delivery.byTick.size, 'one tick per run').toBe(runs.length);
  return { runs, items, delivery };
}
