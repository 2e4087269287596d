import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { systemClock, type Clock } from '../clock.js';
import { describeError, formatDiagnostic, type Diagnostic } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { PROTOCOL_VERSION, type ClientRequest, type ProcSpec } from '../protocol/messages.js';
import { RouterEndpoint, type Incoming } from '../protocol/sockets.js';
import { decideOverlap, scheduleKind, Ticker } from '../schedule/index.js';
import { loadTypologyFile } from '../spec/load.js';
import type { CompiledModule } from '../spec/compile-types.js';
import { classifyChanges, diffTypologies, formatChange, type CodeOf } from '../spec/diff.js';
import type { Typology } from '../spec/types.js';
import { setStageScaling, writeFileAtomic } from '../spec/edit.js';
import { DeadLetterStore } from './dead-letters.js';
import { leastLoaded } from './placement.js';
import { RunBook, summarize, type RunRecord, type RunSummary } from './runs.js';
import { TypologyVersion, type ProcRecord, type VersionHost } from './typology-version.js';
import { Workspace } from './workspace.js';
import { stageApplyFiles, type ApplyFile } from './apply.js';
import { QueueJournal, type JournaledRun, type RestoredChunk } from './queue-journal.js';
import { StateStore } from './state-store.js';

export interface MasterOptions {
  /** Interface to bind. Default 127.0.0.1. */
  host?: string;
  /** ZeroMQ port for workers, stage processes and the CLI. Default 12345; 0 = OS-assigned. */
  port?: number;
  /** Web console port (reserved). Default 31218. */
  webPort?: number;
  /** Directory to watch for typology files. */
  workspace?: string;
  /** Or: exactly these typology files (`rezina run`). */
  files?: string[];
  /** Dead letters and other state. Default `.rezina` under the current directory. */
  stateDir?: string;
  /** Worker heartbeat period, ms. Default 500. */
  heartbeatMs?: number;
  /** A worker silent this long is lost, ms. Default 2000. */
  heartbeatTimeoutMs?: number;
  /** A stage process silent this long (stuck in synchronous code) is killed and replaced, ms. Default 10000. */
  stageSilenceMs?: number;
  /** A typology whose file disappeared is removed only if it stays away this long, ms. Default 1500. */
  removeGraceMs?: number;
  /** Start schedules. `rezina run --once` turns this off and triggers one run itself. Default true. */
  schedules?: boolean;
  /** Watch the workspace for edits. Default true. */
  watch?: boolean;
  /**
   * A once-only schedule (no interval/cron) that already fired before a
   * restart is not fired again. `rezina run` turns this off: each `run` is a
   * fresh start. Default true.
   */
  rememberOnce?: boolean;
  /** Where the stdout bocca writes. Default process.stdout. */
  stdout?: NodeJS.WritableStream;
  clock?: Clock;
  log?: Logger;
}

export type MasterState = 'starting' | 'running' | 'stopping' | 'stopped';

interface WorkerRecord {
  id: string;
  peer: string;
  name: string;
  host: string;
  pid: number;
  joinedAt: number;
  lastSeen: number;
  procs: Set<ProcRecord>;
  modules: Set<string>;
  /** Shutting down: nothing new is placed on it. */
  leaving?: boolean;
  /** Which join of the worker process this is (a hello repeated within one join is not a re-join). */
  joinSeq: number;
}

export interface VersionRecord {
  version: number;
  appliedAt: string;
  source: 'start' | 'edit' | 'apply';
  kind: string;
  changes: string[];
}

interface Entry {
  name: string;
  file: string;
  current: TypologyVersion;
  retiring: TypologyVersion[];
  ticker?: Ticker;
  runs: RunBook;
  nextRun: number;
  stopped: boolean;
  queuedTicks: number;
  history: VersionRecord[];
  /** The newest edit was rejected: the last good version keeps running. */
  invalid?: { file: string; diagnostics: Diagnostic[]; at: string };
  /** A stage process could not start (module failed to load, backend rejected its options). */
  stageError?: string;
  /** Per stage: consecutive quick deaths and when the next spawn may happen. */
  backoff: Map<string, { failures: number; nextAt: number }>;
  /** Code fingerprints of the current version's modules (for diff output). */
  codeOf: CodeOf;
  journal?: QueueJournal;
  lastFireTime?: number;
  /** When its file was first seen missing (removal waits `removeGraceMs`). */
  missingSince?: number;
}

export interface ApplyOutcome {
  typology: string;
  file: string;
  action: 'created' | 'configured' | 'unchanged';
  changes: string[];
}

const QUICK_DEATH_MS = 5000;
const REBALANCE_EVERY_MS = 2000;

/**
 * The master: owns the desired state (the workspace files), the schedules,
 * the placement of stage processes on workers, the queues between stages,
 * and failure detection. A saved edit and `rezina apply` both end in
 * `reload()`, which moves each typology to what its file says.
 */
export class Master extends EventEmitter {
  state: MasterState = 'starting';
  readonly log: Logger;
  port = 0;
  private readonly router: RouterEndpoint;
  private readonly clock: Clock;
  private readonly workers = new Map<string, WorkerRecord>();
  private readonly procs = new Map<string, ProcRecord>();
  private readonly entries = new Map<string, Entry>();
  /** Typology files that do not load and own no running typology. */
  private readonly fileErrors = new Map<string, Diagnostic[]>();
  private readonly deadLetters: DeadLetterStore;
  private readonly state_: StateStore;
  private readonly workspace: Workspace;
  private readonly stdout: NodeJS.WritableStream;
  private procCounter = 0;
  private workerCounter = 0;
  private maintenance?: NodeJS.Timeout;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;
  /** Set by `rezina delete`: that removal is meant, no grace period. */
  private immediateRemoval = false;
  private stopped?: () => void;
  private readonly finished: Promise<void>;
  readonly stateDir: string;
  private readonly heartbeatMs: number;
  private readonly heartbeatTimeoutMs: number;

  private constructor(private readonly opts: MasterOptions) {
    super();
    this.log = opts.log ?? createLogger('master');
    this.clock = opts.clock ?? systemClock;
    this.stateDir = path.resolve(opts.stateDir ?? '.rezina');
    this.heartbeatMs = opts.heartbeatMs ?? 500;
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 2000;
    this.stdout = opts.stdout ?? process.stdout;
    this.router = new RouterEndpoint((what, err) => this.log.warn({ err: describeError(err) }, `socket ${what} error`), {
      maxMessageBytes: 1024 * 1024 * 1024,
    });
    this.deadLetters = new DeadLetterStore(this.stateDir);
    this.state_ = new StateStore(this.stateDir);
    this.workspace = new Workspace(
      { dir: opts.files ? undefined : (opts.workspace ?? '.'), files: opts.files },
      () => void this.reload('edit'),
    );
    this.finished = new Promise((resolve) => (this.stopped = resolve));
  }

  static async create(opts: MasterOptions = {}): Promise<Master> {
    const m = new Master(opts);
    m.port = await m.router.bind(opts.host ?? '127.0.0.1', opts.port ?? 12345);
    void m.receiveLoop();
    await m.reload('start');
    if (opts.watch !== false) await m.workspace.start();
    m.maintenance = setInterval(() => m.maintain(), Math.max(50, Math.floor(m.heartbeatMs / 2)));
    m.setState('running');
    m.log.info({ port: m.port, workspace: m.workspace.root, stateDir: m.stateDir }, 'master listening');
    return m;
  }

  /** Resolves when the master has shut down. */
  run(): Promise<void> {
    return this.finished;
  }

  private setState(s: MasterState): void {
    this.state = s;
    this.log.debug({ state: s }, 'master state');
  }

  // ---------------------------------------------------------------- desired state

  /** Re-read every typology file and move the running system to it. Serialized; bursts coalesce. */
  reload(source: 'start' | 'edit' | 'apply'): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      try {
        do {
          this.reloadAgain = false;
          await this.reloadOnce(source);
        } while (this.reloadAgain);
      } catch (err) {
        this.log.error({ err: describeError(err) }, 'reload failed');
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  private async reloadOnce(source: 'start' | 'edit' | 'apply'): Promise<ApplyOutcome[]> {
    const files = this.workspace.typologyFiles();
    const results = await Promise.all(files.map(async (file) => ({ file, result: await loadTypologyFile(file) })));
    const outcomes: ApplyOutcome[] = [];
    const claimed = new Map<string, string>();
    // A name already running keeps its file; among new ones the first file (sorted) wins.
    for (const e of this.entries.values()) if (files.includes(e.file)) claimed.set(e.name, e.file);
    this.fileErrors.clear();
    for (const { file, result } of results) {
      if (!result.ok) {
        const owner = [...this.entries.values()].find((e) => e.file === file);
        if (owner) {
          if (!owner.invalid || JSON.stringify(owner.invalid.diagnostics) !== JSON.stringify(result.diagnostics)) {
            this.log.error({ typology: owner.name, errors: result.diagnostics.map(formatDiagnostic) }, 'invalid edit; the last good version keeps running');
          }
          owner.invalid = { file, diagnostics: result.diagnostics, at: new Date(this.clock.now()).toISOString() };
        } else {
          if (source !== 'start') this.log.error({ file, errors: result.diagnostics.map(formatDiagnostic) }, 'invalid typology file');
          this.fileErrors.set(file, result.diagnostics);
        }
        continue;
      }
      const t = result.typology;
      const owner = claimed.get(t.name);
      if (owner && owner !== file) {
        const d: Diagnostic = { file, line: 1, col: 1, path: 'name', code: 'E_CONFLICT', message: `typology "${t.name}" is already defined in ${owner}; rename one of them` };
        this.log.error({ file, typology: t.name, other: owner }, 'two files declare the same typology; the first one keeps running');
        this.fileErrors.set(file, [d]);
        continue;
      }
      claimed.set(t.name, file);
      outcomes.push(this.applyLoaded(t, result.modules, source));
    }
    // Files gone (or now declaring another name): drain and remove their typologies.
    const now = this.clock.now();
    const grace = this.immediateRemoval ? 0 : (this.opts.removeGraceMs ?? 1500);
    for (const e of [...this.entries.values()]) {
      if (claimed.has(e.name)) {
        e.missingSince = undefined;
        if (claimed.get(e.name) !== e.file) e.file = claimed.get(e.name)!;
        continue;
      }
      // Editors delete and recreate files: a typology goes only once its file stayed away.
      e.missingSince ??= now;
      if (now - e.missingSince >= grace) this.removeEntry(e, 'file deleted');
      else setTimeout(() => void this.reload('edit'), grace - (now - e.missingSince) + 10).unref();
    }
    this.reconcile();
    this.emit('reloaded', outcomes);
    return outcomes;
  }

  private applyLoaded(t: Typology, modules: ReadonlyMap<string, CompiledModule>, source: VersionRecord['source']): ApplyOutcome {
    const codeOf: CodeOf = (file) => modules.get(file)?.hash;
    const existing = this.entries.get(t.name);
    const at = new Date(this.clock.now()).toISOString();
    if (!existing) {
      const runs = new RunBook();
      const saved = this.state_.load(t.name);
      let version = 1;
      let kind = 'created';
      let changes: string[] = [];
      if (saved) {
        // Known from before a restart: same version if nothing changed while the master was down.
        const last = saved.history[saved.history.length - 1]!;
        changes = diffTypologies(saved.typology, t).map(formatChange);
        version = changes.length === 0 ? last.version : last.version + 1;
        kind = changes.length === 0 ? 'resumed' : 'resumed with changes';
      }
      const entry: Entry = {
        name: t.name,
        file: t.file,
        current: undefined as unknown as TypologyVersion,
        retiring: [],
        runs,
        nextRun: saved?.nextRun ?? 1,
        stopped: saved?.stopped ?? false,
        queuedTicks: 0,
        history: [...(saved?.history ?? []), { version, appliedAt: at, source, kind, changes }].slice(-50),
        backoff: new Map(),
        codeOf,
        lastFireTime: saved?.lastFireTime,
      };
      let restored: RestoredChunk[] = [];
      let openRuns: JournaledRun[] = [];
      if (t.persistQueues) {
        const opened = QueueJournal.open(path.join(this.stateDir, 'queues'), t.name);
        entry.journal = opened.journal;
        restored = opened.restored;
        openRuns = opened.runs;
      }
      entry.current = new TypologyVersion(t, modules, version, this.versionHost(entry));
      this.entries.set(t.name, entry);
      if (restored.length > 0 || openRuns.length > 0) this.restoreRuns(entry, restored, openRuns);
      this.saveEntry(entry);
      this.startTicker(entry);
      this.log.info({ typology: t.name, file: t.file, source, version, restoredItems: restored.reduce((n, c) => n + c.count, 0) || undefined }, saved ? 'typology resumed' : 'typology created');
      return { typology: t.name, file: t.file, action: saved ? (changes.length ? 'configured' : 'unchanged') : 'created', changes };
    }
    const wasInvalid = existing.invalid !== undefined;
    existing.invalid = undefined;
    const changes = diffTypologies(existing.current.typology, t, existing.codeOf, codeOf);
    const kind = classifyChanges(changes);
    if (kind === 'unchanged') {
      if (wasInvalid) this.log.info({ typology: t.name }, 'typology file is valid again');
      return { typology: t.name, file: t.file, action: 'unchanged', changes: [] };
    }
    const described = changes.map(formatChange);
    const version = existing.history[existing.history.length - 1]!.version + 1;
    existing.history.push({ version, appliedAt: at, source, kind, changes: described });
    existing.codeOf = codeOf;
    existing.stageError = undefined;
    if (kind === 'code') {
      existing.current.updateCode(t, modules, version);
    } else if (kind === 'version') {
      const old = existing.current;
      old.draining = true;
      existing.retiring.push(old);
      existing.current = new TypologyVersion(t, modules, version, this.versionHost(existing));
      existing.backoff.clear();
      if (changes.some((c) => c.path.startsWith('bocca.'))) this.handOverBocca(old, existing.current);
    } else {
      // Schedule and scale changes keep the running version and its processes.
      existing.current.rescale(t, version);
    }
    if (existing.ticker) existing.ticker.update(t.schedule);
    else if (changes.some((c) => c.path.startsWith('schedule.'))) this.startTicker(existing);
    this.saveEntry(existing);
    this.log.info({ typology: t.name, version, kind, changes: described, source }, 'typology configured');
    return { typology: t.name, file: t.file, action: 'configured', changes: described };
  }

  /**
   * The bocca changed (a fixed database URL, another table): items waiting
   * for the old bocca, or held by it, go to the new one — the sink is the
   * end of the chain, so they have been through their version's notches.
   * Otherwise an old bocca that cannot write would keep them forever.
   */
  private handOverBocca(from: TypologyVersion, to: TypologyVersion): void {
    const oldB = from.stages[from.stages.length - 1]!;
    const newB = to.stages[to.stages.length - 1]!;
    let moved = 0;
    for (const p of [...oldB.procs]) {
      for (const chunk of p.leases.values()) {
        newB.queue.push(chunk);
        moved += chunk.count;
      }
      p.leases.clear();
      const w = this.workers.get(p.workerId);
      if (w) this.router.send(w.peer, { k: 'w.kill', procId: p.id, graceful: false });
      this.procEnded(p, 'its bocca was replaced', false, false);
    }
    for (let c = oldB.queue.take(Number.MAX_SAFE_INTEGER); c; c = oldB.queue.take(Number.MAX_SAFE_INTEGER)) {
      newB.queue.push(c);
      moved += c.count;
    }
    if (moved > 0) this.log.info({ typology: to.typology.name, items: moved, from: from.version, to: to.version }, 'items waiting for the old bocca handed to the new one');
    to.pump();
  }

  private removeEntry(e: Entry, reason: string): void {
    this.log.info({ typology: e.name, reason }, 'typology removed; draining');
    e.ticker?.stop();
    e.current.draining = true;
    e.retiring.push(e.current);
    this.entries.delete(e.name);
    this.orphans.push(...e.retiring);
  }

  /** Versions of removed typologies, still draining. */
  private readonly orphans: TypologyVersion[] = [];

  /**
   * Runs that were open when the master stopped: their counts come back from
   * the journal, their queued items go back into the queues, and hydrants
   * that were mid-tick resume where they were.
   */
  private restoreRuns(entry: Entry, chunks: RestoredChunk[], journaled: JournaledRun[]): void {
    const now = this.clock.now();
    const make = (id: number): RunRecord => {
      const j = journaled.find((r) => r.id === id);
      const run: RunRecord = {
        id,
        typology: entry.name,
        version: j?.version ?? entry.current.version,
        fireTime: j?.fireTime ?? now,
        startedAt: j?.startedAt ?? now,
        in: j?.in ?? 0,
        out: j?.out ?? 0,
        dropped: j?.dropped ?? 0,
        failed: j?.failed ?? 0,
        live: 0,
        hydrants: (j?.hydrants ?? []).map((h) => ({ ...h, crashes: 0 })),
        errors: ['resumed after a master restart'],
      };
      entry.runs.start(run);
      entry.nextRun = Math.max(entry.nextRun, id + 1);
      return run;
    };
    for (const j of journaled) make(j.id);
    for (const c of chunks) (entry.runs.get(c.run) ?? make(c.run)).live += c.count;
    this.log.info({ typology: entry.name, items: chunks.reduce((n, c) => n + c.count, 0), runs: entry.runs.inProgress }, 'queued items restored');
    entry.current.restore(chunks);
    for (const r of entry.runs.list()) if (r.finishedAt === undefined) entry.current.resumeTicks(r);
  }

  private saveEntry(entry: Entry): void {
    try {
      this.state_.save(entry.name, { typology: entry.current.typology, history: entry.history, nextRun: entry.nextRun, stopped: entry.stopped, lastFireTime: entry.lastFireTime });
    } catch (err) {
      this.log.error({ typology: entry.name, err: describeError(err) }, 'cannot save typology state');
    }
  }

  private startTicker(entry: Entry): void {
    if (this.opts.schedules === false || entry.stopped) return;
    const sched = entry.current.typology.schedule;
    if (this.opts.rememberOnce !== false && entry.lastFireTime !== undefined && scheduleKind(sched) === 'once' && (sched.startTime === undefined || sched.startTime <= entry.lastFireTime)) {
      this.log.info({ typology: entry.name, lastRun: new Date(entry.lastFireTime).toISOString() }, 'once-only schedule already fired; not firing again');
      return;
    }
    entry.ticker = new Ticker(entry.current.typology.schedule, (fireTime) => this.onTick(entry, fireTime), {
      clock: this.clock,
      onError: (err) => this.log.error({ typology: entry.name, err: describeError(err) }, 'tick failed'),
    });
    entry.ticker.start();
  }

  private onTick(entry: Entry, fireTime: number): void {
    if (this.entries.get(entry.name) !== entry || entry.stopped) return;
    const decision = decideOverlap(entry.current.typology.schedule.overlap, entry.runs.inProgress > 0, entry.queuedTicks);
    if (decision === 'skip') {
      this.log.info({ typology: entry.name }, 'tick skipped: previous run still in progress (overlap: skip)');
      return;
    }
    if (decision === 'queue') {
      entry.queuedTicks++;
      return;
    }
    entry.lastFireTime = fireTime;
    this.startRun(entry, fireTime);
  }

  /** Resolves once every process the typology's current version wants is up (or after `timeoutMs`). */
  async whenReady(name: string, timeoutMs = 60_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.entries.get(name);
      if (e) {
        const v = e.current;
        const want = v.hydrants.length + v.stages.reduce((n, s) => n + s.processes, 0);
        const ready = v.allProcs().filter((p) => p.state === 'ready').length;
        if (ready >= want) return true;
      }
      if (Date.now() > deadline || this.state === 'stopping' || this.state === 'stopped') return false;
      if (e?.stageError) throw Object.assign(new Error(`a stage of ${name} cannot start: ${e.stageError}`), { code: 'E_STAGE' });
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Start a run of the typology now, whatever its schedule. Returns the run id. */
  triggerRun(name: string): number | undefined {
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    return this.startRun(entry, this.clock.now()).id;
  }

  private startRun(entry: Entry, fireTime: number): RunRecord {
    const now = this.clock.now();
    const run: RunRecord = {
      id: entry.nextRun++,
      typology: entry.name,
      version: entry.current.version,
      fireTime,
      startedAt: now,
      in: 0,
      out: 0,
      dropped: 0,
      failed: 0,
      live: 0,
      hydrants: [],
      errors: [],
    };
    entry.runs.start(run);
    this.saveEntry(entry);
    this.log.info({ typology: entry.name, run: run.id, version: run.version }, 'run started');
    entry.current.tick(run);
    this.reconcile();
    return run;
  }

  private versionHost(entry: Entry): VersionHost {
    return {
      sendToProc: (proc, header, ...payloads) => this.router.send(`p:${proc.id}`, header, ...payloads),
      runs: entry.runs,
      now: () => this.clock.now(),
      runSettled: (run) => this.onRunFinished(entry, run),
      deadLetter: (letters) => {
        try {
          this.deadLetters.add(letters);
        } catch (err) {
          this.log.error({ err: describeError(err) }, 'cannot write dead letters');
        }
      },
      journal: entry.journal,
      log: this.log,
    };
  }

  private onRunFinished(entry: Entry, run: RunRecord): void {
    const s = summarize(run, this.clock.now());
    this.log.info({ typology: entry.name, run: run.id, in: s.in, out: s.out, dropped: s.dropped, failed: s.failed, seconds: s.seconds, errors: s.errors.length ? s.errors : undefined }, 'run finished');
    this.emit('run-finished', s);
    if (entry.queuedTicks > 0 && entry.runs.inProgress === 0 && this.entries.get(entry.name) === entry) {
      entry.queuedTicks--;
      this.startRun(entry, this.clock.now());
    }
  }

  // ---------------------------------------------------------------- placement

  /** Move the running processes towards what every version wants. Cheap; called often. */
  private reconcile(): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    for (const entry of this.entries.values()) {
      const cur = entry.current;
      if (!entry.stopped) this.ensureProcs(entry, cur, false);
      for (const old of [...entry.retiring]) this.retireIfIdle(entry.retiring, old, entry);
      if (entry.stopped) this.retireIfIdle([], cur, entry, true);
    }
    for (const old of [...this.orphans]) this.retireIfIdle(this.orphans, old, undefined);
    this.rebalance();
  }

  private lastRebalance = 0;

  /**
   * A worker that joins later (or comes back) takes load: when the busiest and
   * the idlest worker differ by more than one process's threads, one process
   * of the busiest is drained; its replacement goes to the least loaded. One
   * move at a time, once everything placed is up.
   */
  private rebalance(): void {
    const now = this.clock.now();
    if (now - this.lastRebalance < REBALANCE_EVERY_MS) return;
    const workers = [...this.workers.values()].filter((w) => !w.leaving);
    if (workers.length < 2) return;
    if ([...this.procs.values()].some((p) => p.state === 'starting' || p.state === 'draining')) return;
    const load = (w: WorkerRecord) => [...w.procs].filter((p) => p.state !== 'gone').reduce((n, p) => n + p.spec.threads, 0);
    workers.sort((a, b) => load(b) - load(a));
    const gap = load(workers[0]!) - load(workers[workers.length - 1]!);
    const movable = [...workers[0]!.procs]
      .filter((p) => p.state === 'ready' && p.spec.threads < gap && !p.version.draining && this.entries.get(p.version.typology.name)?.current === p.version)
      .sort((a, b) => b.spec.threads - a.spec.threads);
    const p = movable[0];
    if (!p) return;
    this.lastRebalance = now;
    this.log.info({ typology: p.version.typology.name, stage: p.spec.stage, proc: p.id, from: workers[0]!.name, gap }, 'rebalancing: moving a process to a less loaded worker');
    this.stopProc(p);
  }

  /** A retiring version keeps enough processes to finish its items, then stops them. */
  private retireIfIdle(list: TypologyVersion[], v: TypologyVersion, entry: Entry | undefined, keep = false): void {
    if (!v.idle) {
      if (entry) this.ensureProcs(entry, v, true);
      else for (const s of v.stages) if (![...s.procs].some((p) => p.state !== 'gone')) this.spawn(undefined, v, s.name, v.stages.indexOf(s));
      return;
    }
    for (const p of v.allProcs()) this.stopProc(p);
    if (!keep) {
      const i = list.indexOf(v);
      if (i >= 0) list.splice(i, 1);
      this.log.info({ typology: v.typology.name, version: v.version }, 'version retired');
      const name = v.typology.name;
      if (!entry && !this.entries.has(name) && !this.orphans.some((o) => o.typology.name === name)) {
        // The typology's file is gone and its last items are through: forget it.
        v.host.journal?.destroy();
        this.state_.remove(name);
      }
    }
  }

  private ensureProcs(entry: Entry, v: TypologyVersion, draining: boolean): void {
    const live = (procs: Set<ProcRecord>) => [...procs].filter((p) => p.state === 'starting' || p.state === 'ready');
    const roll = (procs: ProcRecord[], base: { moduleHash?: string; threads: number }, want: number, spawn: () => unknown) => {
      // New code: start one new process at a time; retire an old one for each that is ready.
      const fresh = procs.filter((p) => !TypologyVersion.outdated(p, base));
      const old = procs.filter((p) => TypologyVersion.outdated(p, base));
      if (!fresh.some((p) => p.state === 'starting') && fresh.length < want) spawn();
      const excess = fresh.filter((p) => p.state === 'ready').length + old.length - want;
      for (const p of old.slice(0, Math.max(0, excess))) this.stopProc(p);
    };
    if (!draining) {
      v.hydrants.forEach((h, i) => {
        const procs = live(h.procs);
        if (procs.some((p) => TypologyVersion.outdated(p, h.base))) roll(procs, h.base, 1, () => this.spawn(entry, v, h.name, -1 - i));
        else if (procs.length === 0) this.spawn(entry, v, h.name, -1 - i);
      });
    }
    v.stages.forEach((s, i) => {
      const procs = live(s.procs);
      const want = draining ? Math.min(1, s.processes) || 1 : s.processes;
      if (!draining && procs.some((p) => TypologyVersion.outdated(p, s.base))) {
        roll(procs, s.base, want, () => this.spawn(entry, v, s.name, i));
        return;
      }
      for (let n = procs.length; n < want; n++) if (!this.spawn(entry, v, s.name, i)) break;
      if (!draining && procs.length > want) {
        // Scale down: the newest go first, each after finishing what it holds.
        for (const p of procs.slice(want).reverse()) this.stopProc(p);
      }
    });
  }

  private spawn(entry: Entry | undefined, v: TypologyVersion, stage: string, stageKey: number): ProcRecord | undefined {
    const backoffKey = `${v.version}/${stage}`;
    const bo = entry?.backoff.get(backoffKey);
    if (bo && bo.nextAt > this.clock.now()) return undefined;
    const worker = leastLoaded(
      [...this.workers.values()].filter((w) => !w.leaving).map((w) => ({
        w,
        id: w.id,
        joinedAt: w.joinedAt,
        processes: [...w.procs].filter((p) => p.state !== 'gone').length,
        threads: [...w.procs].filter((p) => p.state !== 'gone').reduce((n, p) => n + p.spec.threads, 0),
      })),
    )?.w;
    if (!worker) return undefined;
    const group = stageKey >= 0 ? v.stages[stageKey]! : v.hydrants[-1 - stageKey]!;
    const index = [...group.procs].length;
    const id = `${v.typology.name}.v${v.version}.${stage}.${++this.procCounter}`;
    const spec: ProcSpec = { ...group.base, procId: id, index } as ProcSpec;
    const proc: ProcRecord = {
      id,
      spec,
      workerId: worker.id,
      state: 'starting',
      credit: 0,
      leaseSize: 1,
      leases: new Map(),
      ticks: new Set(),
      startedAt: this.clock.now(),
      lastSeen: this.clock.now(),
      stageKey,
      version: v,
    };
    group.procs.add(proc);
    worker.procs.add(proc);
    this.procs.set(id, proc);
    const neededHashes = [spec.moduleHash].filter((h): h is string => !!h && !worker.modules.has(h));
    for (const hash of neededHashes) {
      const mod = [...v.modules.values()].find((m) => m.hash === hash);
      if (mod) {
        this.router.send(worker.peer, { k: 'w.module', hash, code: mod.code });
        worker.modules.add(hash);
      }
    }
    this.router.send(worker.peer, { k: 'w.spawn', proc: spec });
    this.log.info({ typology: v.typology.name, stage, proc: id, worker: worker.name }, 'process placed');
    return proc;
  }

  private stopProc(p: ProcRecord): void {
    if (p.state === 'gone' || p.state === 'draining') return;
    p.state = 'draining';
    this.router.send(`p:${p.id}`, { k: 'p.drain' });
  }

  private procEnded(p: ProcRecord, reason: string, crashed = false, ownFault = true): void {
    if (p.state === 'gone') return;
    const wasDraining = p.state === 'draining';
    if (p.killRequested) reason = `stuck in synchronous code (silent for over ${(this.opts.stageSilenceMs ?? 10_000) / 1000} s), killed`;
    p.version.procGone(p, reason, crashed && !wasDraining);
    this.procs.delete(p.id);
    this.workers.get(p.workerId)?.procs.delete(p);
    const entry = this.entries.get(p.version.typology.name);
    if (!wasDraining && entry && ownFault) {
      const key = `${p.version.version}/${p.spec.stage}`;
      const quick = this.clock.now() - p.startedAt < QUICK_DEATH_MS;
      const bo = entry.backoff.get(key) ?? { failures: 0, nextAt: 0 };
      bo.failures = quick ? bo.failures + 1 : 0;
      // A stage that keeps dying right after start is restarted with growing pauses, not in a hot loop.
      bo.nextAt = this.clock.now() + (bo.failures > 0 ? Math.min(30_000, 250 * 2 ** (bo.failures - 1)) : 0);
      entry.backoff.set(key, bo);
      this.log.warn({ typology: entry.name, stage: p.spec.stage, proc: p.id, reason }, 'stage process ended');
    }
    this.reconcile();
  }

  private lastMaintain = 0;

  private maintain(): void {
    const now = this.clock.now();
    // If this process itself was stalled (a busy event loop, a paused VM),
    // heartbeats may be waiting unread in the socket: judge no one on it.
    const gap = this.lastMaintain > 0 ? now - this.lastMaintain : 0;
    this.lastMaintain = now;
    if (gap > this.heartbeatTimeoutMs / 2) {
      this.log.warn({ stalledMs: gap }, 'master was stalled; heartbeat deadlines extended');
      for (const w of this.workers.values()) w.lastSeen = Math.max(w.lastSeen, now);
      for (const p of this.procs.values()) p.lastSeen = Math.max(p.lastSeen, now);
    }
    for (const w of [...this.workers.values()]) {
      if (now - w.lastSeen > this.heartbeatTimeoutMs) this.workerLost(w, `no heartbeat for ${now - w.lastSeen} ms`);
    }
    const silence = this.opts.stageSilenceMs ?? 10_000;
    for (const p of this.procs.values()) {
      if (p.state !== 'ready' || now - p.lastSeen <= silence || p.killRequested) continue;
      const w = this.workers.get(p.workerId);
      if (!w) continue;
      p.killRequested = true;
      this.log.error({ typology: p.version.typology.name, stage: p.spec.stage, proc: p.id, silentMs: now - p.lastSeen }, 'stage process stuck; killing it');
      this.router.send(w.peer, { k: 'w.kill', procId: p.id, graceful: false });
    }
    this.reconcile();
  }

  private workerLost(w: WorkerRecord, reason: string): void {
    this.workers.delete(w.id);
    this.log.warn({ worker: w.name, reason, procs: w.procs.size }, 'worker lost; placing its processes elsewhere');
    // Not the processes' fault: no crash charged to their items, no restart backoff.
    for (const p of [...w.procs]) this.procEnded(p, `worker ${w.name} lost`, false, false);
  }

  // ---------------------------------------------------------------- messages

  private async receiveLoop(): Promise<void> {
    for await (const msg of this.router.messages()) {
      try {
        this.handle(msg);
      } catch (err) {
        this.log.error({ peer: msg.peer, kind: msg.header.k, err: describeError(err) }, 'message handling failed');
      }
    }
  }

  private handle(msg: Incoming): void {
    const { peer, header: h } = msg;
    if (this.state === 'stopping' || this.state === 'stopped') return;
    if (peer.startsWith('p:')) return this.handleProc(peer.slice(2), msg);
    if (peer.startsWith('w:')) return this.handleWorker(peer, msg);
    if (peer.startsWith('c:') && h.k === 'c.request') return void this.handleClient(peer, h as unknown as ClientRequest);
    this.log.warn({ peer, kind: h.k }, 'message from an unknown peer ignored');
  }

  private handleProc(id: string, msg: Incoming): void {
    const h = msg.header;
    const p = this.procs.get(id);
    if (!p) {
      // A process this master does not know (e.g. from before a restart): tell it to stop.
      if (h.k !== 'p.drained') this.router.send(`p:${id}`, { k: 'p.drain' });
      return;
    }
    const v = p.version;
    p.lastSeen = this.clock.now();
    switch (h.k) {
      case 'p.alive':
        return;
      case 'p.orphaned': {
        // A stage process whose worker died: no need to wait for heartbeats to time out.
        const w = this.workers.get(p.workerId);
        if (w) this.workerLost(w, `its stage process ${p.id} reports it gone`);
        return;
      }
      case 'p.ready':
        return v.onReady(p, Number(h.credit) || 0, Number(h.leaseSize) || 1);
      case 'p.done':
        return v.onDone(p, h as never, msg.payloads);
      case 'p.credit':
        return v.onCredit(p, Number(h.credit) || 0);
      case 'p.emit':
        return v.onEmit(p, Number(h.run), Number(h.seq), Number(h.n), msg.payloads[0]);
      case 'p.tickDone':
        return v.onTickDone(p, Number(h.run), typeof h.error === 'string' ? h.error : undefined, Number(h.rejected) || 0);
      case 'p.stdout':
        if (msg.payloads[0]) this.stdout.write(msg.payloads[0]);
        return;
      case 'p.error': {
        const entry = this.entries.get(v.typology.name);
        const error = `${p.spec.stage}: ${String(h.error)}`;
        if (entry && entry.current === v) entry.stageError = error;
        this.log.error({ typology: v.typology.name, stage: p.spec.stage, proc: p.id, err: String(h.error) }, 'stage process cannot start');
        return;
      }
      case 'p.drained':
        return;
      default:
        this.log.warn({ proc: id, kind: h.k }, 'unknown message from a stage process');
    }
  }

  private handleWorker(peer: string, msg: Incoming): void {
    const h = msg.header;
    const now = this.clock.now();
    let w = [...this.workers.values()].find((x) => x.peer === peer);
    if (h.k === 'w.hello') {
      if (h.v !== PROTOCOL_VERSION) {
        this.router.send(peer, { k: 'w.reject', reason: `protocol version ${String(h.v)} is not ${PROTOCOL_VERSION}` });
        return;
      }
      if (w && w.joinSeq === Number(h.seq)) {
        // A repeated hello of the same join (sent while we were away): answer it again.
        this.router.send(peer, { k: 'w.welcome', workerId: w.id, heartbeatMs: this.heartbeatMs });
        return;
      }
      if (w) this.workerLost(w, 'worker registered again');
      w = {
        id: `w${++this.workerCounter}`,
        peer,
        name: String(h.name ?? peer),
        host: String(h.host ?? ''),
        pid: Number(h.pid) || 0,
        joinedAt: now,
        lastSeen: now,
        procs: new Set(),
        modules: new Set(),
        joinSeq: Number(h.seq),
      };
      this.workers.set(w.id, w);
      this.router.send(peer, { k: 'w.welcome', workerId: w.id, heartbeatMs: this.heartbeatMs });
      this.log.info({ worker: w.name, host: w.host, pid: w.pid }, 'worker joined');
      this.reconcile();
      return;
    }
    if (!w) {
      // Heartbeat from a worker this master does not know (it restarted): ask it to join again.
      this.router.send(peer, { k: 'w.reject', reason: 'unknown worker; register again' });
      return;
    }
    w.lastSeen = now;
    if (h.k === 'w.heartbeat') {
      this.router.send(peer, { k: 'm.heartbeat' });
    } else if (h.k === 'w.leaving') {
      w.leaving = true;
      this.log.info({ worker: w.name }, 'worker leaving; placing nothing more on it');
      this.reconcile();
    } else if (h.k === 'w.exited') {
      const p = this.procs.get(String(h.procId));
      if (p) this.procEnded(p, h.signal ? `killed by ${String(h.signal)}` : `exited with code ${String(h.code)}`, h.code !== 0);
    }
  }

  // ---------------------------------------------------------------- CLI requests

  private async handleClient(peer: string, req: ClientRequest): Promise<void> {
    const reply = (body: object) => this.router.send(peer, { k: 'c.response', id: req.id, ...body });
    try {
      const result = await this.command(req.command, req.args ?? {});
      reply({ ok: true, result });
    } catch (err) {
      const e = err as { code?: string; diagnostics?: unknown[] };
      reply({ ok: false, error: describeError(err), code: e.code, diagnostics: e.diagnostics });
    }
  }

  /** The operations the CLI (and, later, the web console) can ask for. */
  async command(name: string, args: Record<string, unknown>): Promise<unknown> {
    const typology = typeof args.typology === 'string' ? args.typology : undefined;
    const need = () => {
      const e = typology ? this.entries.get(typology) : undefined;
      if (!e) throw Object.assign(new Error(`no typology named "${typology ?? ''}"`), { code: 'E_NOT_FOUND' });
      return e;
    };
    switch (name) {
      case 'ping':
        return { state: this.state, port: this.port, pid: process.pid };
      case 'get.typologies':
        return this.typologyRows();
      case 'get.workers':
        return [...this.workers.values()].map((w) => ({
          id: w.id,
          name: w.name,
          host: w.host,
          pid: w.pid,
          processes: [...w.procs].filter((p) => p.state !== 'gone').length,
          threads: [...w.procs].filter((p) => p.state !== 'gone').reduce((n, p) => n + p.spec.threads, 0),
          lastSeenMs: this.clock.now() - w.lastSeen,
        }));
      case 'get.runs': {
        const list: RunSummary[] = [];
        for (const e of this.entries.values()) if (!typology || e.name === typology) list.push(...e.runs.list().map((r) => summarize(r, this.clock.now())));
        return list;
      }
      case 'get.deadletters':
        return this.deadLetters.list(typology);
      case 'describe':
        return this.describe(need());
      case 'run':
        return { run: need() && this.triggerRun(typology!) };
      case 'stop': {
        const e = need();
        e.stopped = true;
        e.ticker?.stop();
        e.ticker = undefined;
        this.saveEntry(e);
        this.reconcile();
        return { typology: e.name, stopped: true };
      }
      case 'start': {
        const e = need();
        if (e.stopped) {
          e.stopped = false;
          this.saveEntry(e);
          this.startTicker(e);
          this.reconcile();
        }
        return { typology: e.name, stopped: false };
      }
      case 'apply':
        return this.apply(args.files as ApplyFile[], args.dryRun === true);
      case 'scale': {
        const e = need();
        const processes = args.processes === undefined ? undefined : Number(args.processes);
        const threads = args.threads === undefined ? undefined : Number(args.threads);
        for (const [k, v] of [['processes', processes], ['threads', threads]] as const) {
          if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw Object.assign(new Error(`${k} must be a whole number of at least 1, got "${String(args[k])}"`), { code: 'E_USAGE' });
        }
        const text = setStageScaling(fs.readFileSync(e.file, 'utf8'), String(args.stage), { processes, threads });
        // Validate before writing: a scale that would break the file changes nothing.
        const check = await loadTypologyFile(e.file, { text });
        if (!check.ok) throw Object.assign(new Error(check.diagnostics.map(formatDiagnostic).join('\n')), { code: 'E_CONFIG', diagnostics: check.diagnostics });
        writeFileAtomic(e.file, text);
        await this.reload('apply');
        return { typology: e.name, version: e.current.version, changes: e.history[e.history.length - 1]!.changes };
      }
      case 'delete': {
        const e = need();
        fs.rmSync(e.file, { force: true });
        this.immediateRemoval = true;
        try {
          await this.reload('apply');
        } finally {
          this.immediateRemoval = false;
        }
        return { typology: e.name, deleted: e.file };
      }
      case 'replay':
        return this.replay(need(), Array.isArray(args.ids) ? args.ids.map(String) : undefined);
      default:
        throw Object.assign(new Error(`unknown command "${name}"`), { code: 'E_USAGE' });
    }
  }

  /**
   * Send dead letters back into the stage that failed them, as one new run.
   * Letters whose stage no longer exists stay in the store.
   */
  private replay(e: Entry, ids: string[] | undefined): { run?: number; replayed: number; kept: number } {
    const letters = this.deadLetters.list(e.name).filter((d) => !ids || ids.includes(d.id));
    const byStage = new Map<string, typeof letters>();
    for (const d of letters) if (e.current.stages.some((s) => s.name === d.stage)) byStage.set(d.stage, [...(byStage.get(d.stage) ?? []), d]);
    const replayed = [...byStage.values()].flat();
    if (replayed.length === 0) return { replayed: 0, kept: letters.length };
    const now = this.clock.now();
    const run: RunRecord = { id: e.nextRun++, typology: e.name, version: e.current.version, fireTime: now, startedAt: now, in: 0, out: 0, dropped: 0, failed: 0, live: 0, hydrants: [], errors: [] };
    e.runs.start(run);
    for (const [stage, ds] of byStage) e.current.inject(stage, run, ds.map((d) => d.item));
    this.deadLetters.remove(new Set(replayed.map((d) => d.id)));
    this.saveEntry(e);
    this.log.info({ typology: e.name, run: run.id, items: replayed.length }, 'dead letters replayed');
    return { run: run.id, replayed: replayed.length, kept: letters.length - replayed.length };
  }

  typologyRows(): Array<Record<string, unknown>> {
    const rows: Array<Record<string, unknown>> = [];
    for (const e of this.entries.values()) {
      const v = e.current;
      const procs = v.allProcs();
      const last = e.history[e.history.length - 1]!;
      rows.push({
        name: e.name,
        file: e.file,
        version: v.version,
        status: e.invalid ? 'degraded: invalid spec' : e.stageError ? 'degraded: stage error' : e.stopped ? 'stopped' : procs.some((p) => p.state === 'ready') ? 'running' : 'pending',
        processes: `${procs.filter((p) => p.state === 'ready').length}/${v.hydrants.length + v.stages.reduce((n, s) => n + s.processes, 0)}`,
        runsInProgress: e.runs.inProgress,
        nextRun: e.ticker?.nextFireTime ? new Date(e.ticker.nextFireTime).toISOString() : null,
        applied: `${last.appliedAt} (${last.source})`,
        error: e.invalid ? e.invalid.diagnostics.map(formatDiagnostic).join('\n') : e.stageError,
      });
    }
    for (const [file, diags] of this.fileErrors) {
      rows.push({ name: '', file, version: 0, status: 'invalid', error: diags.map(formatDiagnostic).join('\n') });
    }
    return rows;
  }

  private describe(e: Entry): Record<string, unknown> {
    const v = e.current;
    return {
      name: e.name,
      file: e.file,
      version: v.version,
      stopped: e.stopped,
      schedule: v.typology.schedule,
      nextRun: e.ticker?.nextFireTime ? new Date(e.ticker.nextFireTime).toISOString() : null,
      history: e.history,
      invalid: e.invalid ? { ...e.invalid, rendered: e.invalid.diagnostics.map(formatDiagnostic) } : undefined,
      stageError: e.stageError,
      stages: [
        ...v.hydrants.map((h) => ({ name: h.name, role: 'hydrant', processes: [...h.procs].map((p) => ({ id: p.id, worker: this.workers.get(p.workerId)?.name, state: p.state })) })),
        ...v.stages.map((s) => ({
          name: s.name,
          role: s.role,
          desired: `${s.processes}×${s.threads}`,
          queued: s.queue.size,
          inFlight: [...s.procs].reduce((n, p) => n + [...p.leases.values()].reduce((m, c) => m + c.count, 0), 0),
          processed: s.processed,
          failed: s.failed,
          processes: [...s.procs].map((p) => ({ id: p.id, worker: this.workers.get(p.workerId)?.name, state: p.state })),
        })),
      ],
      retiringVersions: e.retiring.map((r) => ({ version: r.version, itemsInFlight: r.itemsInFlight })),
      recentRuns: e.runs.list().slice(-10).map((r) => summarize(r, this.clock.now())),
    };
  }

  /**
   * `rezina apply`: validate the sent files in a staging directory, then write
   * them into the workspace atomically and reload, the same path as an edit.
   */
  async apply(files: ApplyFile[], dryRun: boolean): Promise<ApplyOutcome[]> {
    const staged = await stageApplyFiles(files, path.join(this.stateDir, 'staging'));
    try {
      const outcomes: ApplyOutcome[] = [];
      const writes: Array<{ from: string; to: string }> = [];
      for (const yaml of staged.typologies) {
        const result = await loadTypologyFile(yaml.stagedPath);
        if (!result.ok) {
          const diagnostics = result.diagnostics.map((d) => ({ ...d, file: staged.originalName(d.file) }));
          throw Object.assign(new Error(`${yaml.name} is not valid:\n${diagnostics.map(formatDiagnostic).join('\n')}`), { code: 'E_CONFIG', diagnostics });
        }
        const t = result.typology;
        const existing = this.entries.get(t.name);
        // A new typology gets a directory of its own, so its files never overwrite another's.
        const targetYaml = existing ? existing.file : path.join(this.applyRoot(), t.name, path.basename(yaml.name));
        if (!existing && fs.existsSync(targetYaml)) {
          throw Object.assign(new Error(`${path.relative(process.cwd(), targetYaml)} already exists in the workspace and does not define typology "${t.name}"; rename the typology or remove that file`), { code: 'E_CONFLICT' });
        }
        const targetDir = path.dirname(targetYaml);
        const sourceHash: CodeOf = (file) => staged.contentHash(file);
        let changes: string[] = [];
        let action: ApplyOutcome['action'] = 'created';
        if (existing) {
          const onDisk: CodeOf = (file) => staged.fileHash(file);
          const diff = diffTypologies(existing.current.typology, t, onDisk, sourceHash);
          changes = diff.map(formatChange);
          action = changes.length === 0 ? 'unchanged' : 'configured';
        }
        outcomes.push({ typology: t.name, file: targetYaml, action, changes });
        if (action === 'unchanged') continue;
        writes.push({ from: yaml.stagedPath, to: targetYaml });
        for (const rel of yaml.companions) {
          const from = path.join(staged.dir, rel);
          writes.push({ from, to: path.join(targetDir, path.relative(path.dirname(yaml.stagedPath), from)) });
        }
      }
      if (!dryRun && writes.length > 0) {
        for (const w of writes) {
          fs.mkdirSync(path.dirname(w.to), { recursive: true });
          const tmp = `${w.to}.rezina-${process.pid}.tmp`;
          fs.copyFileSync(w.from, tmp);
          fs.renameSync(tmp, w.to);
        }
        await this.reload('apply');
      }
      return outcomes;
    } finally {
      staged.cleanup();
    }
  }

  /** Where applied files of a new typology go: the workspace, or the directory of `run`'s file. */
  private applyRoot(): string {
    return this.workspace.root;
  }

  // ---------------------------------------------------------------- shutdown

  /** Ordered and bounded: stop schedules, drain running work for up to `graceMs`, stop processes, close. Idempotent. */
  async shutdown(reason: string, graceMs = 5000): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return this.finished;
    this.log.info({ reason }, 'master stopping');
    for (const e of this.entries.values()) e.ticker?.stop();
    const deadline = Date.now() + graceMs;
    const busy = () => [...this.entries.values()].some((e) => e.runs.inProgress > 0 && e.current.allProcs().some((p) => p.state === 'ready'));
    while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.setState('stopping');
    if (this.maintenance) clearInterval(this.maintenance);
    await this.workspace.close().catch(() => {});
    for (const p of this.procs.values()) this.router.send(`p:${p.id}`, { k: 'p.drain' });
    await new Promise((r) => setTimeout(r, 100));
    this.router.close();
    this.setState('stopped');
    this.stopped?.();
  }
}
