import type { CompiledModule } from '../spec/compile-types.js';
import type { Typology } from '../spec/types.js';
import type { Failure, ProcSpec, Role } from '../protocol/messages.js';
import { decode, encode } from '../protocol/codec.js';
import type { Logger } from '../log.js';
import { EdgeQueue, chunkPayload, type Chunk } from './edge-queue.js';
import type { RunBook, RunRecord } from './runs.js';
import type { DeadLetter } from './dead-letters.js';
import type { QueueJournal, RestoredChunk } from './queue-journal.js';

export type ProcState = 'starting' | 'ready' | 'draining' | 'gone';

/** One stage process as the master sees it. */
export interface ProcRecord {
  id: string;
  spec: ProcSpec;
  workerId: string;
  state: ProcState;
  /** Items it has asked for and not yet been given. */
  credit: number;
  leaseSize: number;
  leases: Map<number, Chunk>;
  /** Hydrant only: runs whose tick it is working on. */
  ticks: Set<number>;
  startedAt: number;
  /** Last message from it (ms). */
  lastSeen: number;
  killRequested?: boolean;
  /** Working on one suspect item alone (it crashed a process before): gets nothing else meanwhile. */
  isolating?: boolean;
  /** The stage it belongs to (index into `stages`, or -1 − hydrant index). */
  stageKey: number;
  version: TypologyVersion;
}

export interface StageState {
  name: string;
  role: Exclude<Role, 'hydrant'>;
  processes: number;
  threads: number;
  /** Items waiting for this stage. */
  queue: EdgeQueue;
  procs: Set<ProcRecord>;
  base: Omit<ProcSpec, 'procId' | 'index'>;
  /** Counters for get/describe. */
  processed: number;
  failed: number;
}

export interface HydrantState {
  name: string;
  procs: Set<ProcRecord>;
  base: Omit<ProcSpec, 'procId' | 'index'>;
  /** Ticks waiting for the hydrant process to be ready. */
  pendingTicks: number[];
}

/** What a typology version needs from the master; keeps this file free of sockets and placement. */
export interface VersionHost {
  sendToProc(proc: ProcRecord, header: object, ...payloads: Buffer[]): void;
  runs: RunBook;
  now(): number;
  runSettled(run: RunRecord): void;
  deadLetter(letters: Omit<DeadLetter, 'id' | 'time'>[]): void;
  /** Present when the typology's queues survive a master restart. */
  journal?: QueueJournal;
  log: Logger;
}

/** A stage process that crashes this many times while holding an item gets that item dead-lettered. */
export const POISON_CRASHES = 3;

export const DEFAULT_MAX_ITEM_BYTES = 16 * 1024 * 1024;

/**
 * One applied version of a typology: its stages, the queues between them,
 * and the flow of items through them. Items of a run stay inside the version
 * that started the run, so no item ever goes through a mixed pipeline.
 */
export class TypologyVersion {
  readonly stages: StageState[];
  readonly hydrants: HydrantState[];
  /** Hydrant emits not yet acknowledged because the first queue is full. */
  private readonly heldAcks: Array<{ proc: ProcRecord; seq: number }> = [];
  private nextLease = 1;
  draining = false;

  constructor(
    public typology: Typology,
    public modules: ReadonlyMap<string, CompiledModule>,
    /** The applied version number; schedule and scale changes raise it without a new TypologyVersion. */
    public version: number,
    readonly host: VersionHost,
  ) {
    const hashOf = (file: string) => modules.get(file)?.hash;
    const common = { typology: typology.name, version, maxItemBytes: DEFAULT_MAX_ITEM_BYTES };
    this.hydrants = typology.hydrants.map((h) => ({
      name: h.name,
      procs: new Set(),
      pendingTicks: [],
      base: { ...common, stage: h.name, role: 'hydrant', threads: 1, moduleHash: hashOf(h.module), exportName: h.function, args: [...h.args] },
    }));
    this.stages = typology.notches.map((n) => ({
      name: n.name,
      role: 'notch' as const,
      processes: n.processes,
      threads: n.threads,
      queue: new EdgeQueue(typology.queueCapacity),
      procs: new Set<ProcRecord>(),
      processed: 0,
      failed: 0,
      base: {
        ...common,
        stage: n.name,
        role: 'notch' as const,
        threads: n.threads,
        moduleHash: hashOf(n.module),
        exportName: n.function,
        timeoutMs: n.timeoutMs,
        retries: n.retries,
        retryBackoffMs: n.retryBackoffMs,
      },
    }));
    const b = typology.bocca;
    const moduleFile = typeof b.options.module === 'string' ? b.options.module : undefined;
    this.stages.push({
      name: b.name,
      role: 'bocca',
      processes: b.processes,
      threads: b.threads,
      queue: new EdgeQueue(typology.queueCapacity),
      procs: new Set(),
      processed: 0,
      failed: 0,
      base: {
        ...common,
        stage: b.name,
        role: 'bocca',
        threads: b.threads,
        backend: b.backend,
        mode: b.mode,
        batchSize: b.batchSize,
        lingerMs: b.lingerMs,
        options: { ...b.options },
        moduleHash: moduleFile ? hashOf(moduleFile) : undefined,
        exportName: moduleFile ? String(b.options.export ?? 'default') : undefined,
      },
    });
  }

  /** Scale in place (processes/threads changed, nothing else). */
  rescale(typology: Typology, version: number): void {
    this.typology = typology;
    this.version = version;
    const specs = [...typology.notches, typology.bocca];
    this.stages.forEach((s, i) => {
      s.processes = specs[i]!.processes;
      if (s.threads !== specs[i]!.threads) {
        s.threads = specs[i]!.threads;
        s.base = { ...s.base, threads: s.threads };
      }
    });
  }

  /**
   * Module code changed (nothing else structural): the stages whose code
   * changed get the new module hash; the master then replaces their processes
   * one at a time (see `outdated`).
   */
  updateCode(typology: Typology, modules: ReadonlyMap<string, CompiledModule>, version: number): void {
    this.rescale(typology, version);
    this.modules = modules;
    const hashOf = (file: string) => modules.get(file)?.hash;
    typology.hydrants.forEach((h, i) => {
      this.hydrants[i]!.base = { ...this.hydrants[i]!.base, moduleHash: hashOf(h.module), version };
    });
    typology.notches.forEach((n, i) => {
      this.stages[i]!.base = { ...this.stages[i]!.base, moduleHash: hashOf(n.module), version };
    });
    const b = typology.bocca;
    const moduleFile = typeof b.options.module === 'string' ? b.options.module : undefined;
    const bocca = this.stages[this.stages.length - 1]!;
    bocca.base = { ...bocca.base, moduleHash: moduleFile ? hashOf(moduleFile) : undefined, options: { ...b.options }, version };
  }

  /** A process running code older than its stage's. */
  static outdated(p: ProcRecord, base: { moduleHash?: string; threads: number }): boolean {
    return p.spec.moduleHash !== base.moduleHash || p.spec.threads !== base.threads;
  }

  /** Start a run: each hydrant gets the tick now, or as soon as its process is ready. */
  tick(run: RunRecord): void {
    run.hydrants = this.hydrants.map(() => ({ emitted: 0, done: false, crashes: 0 }));
    this.host.journal?.run({ id: run.id, version: run.version, fireTime: run.fireTime, startedAt: run.startedAt, in: 0, out: 0, dropped: 0, failed: 0, hydrants: run.hydrants.map((h) => ({ emitted: h.emitted, done: h.done })) });
    this.hydrants.forEach((_h, i) => this.offerTick(run, i));
  }

  /** Give hydrant `i`'s part of `run` to a ready process (or keep it until one is). */
  private offerTick(run: RunRecord, i: number): void {
    const h = this.hydrants[i]!;
    const ready = [...h.procs].filter((p) => p.state === 'ready');
    const proc = ready.find((p) => !TypologyVersion.outdated(p, h.base)) ?? ready[0];
    if (proc) this.sendTick(proc, run, i);
    else h.pendingTicks.push(run.id);
  }

  /** A resumed tick (its process died, or the master restarted) skips what was already taken. */
  private sendTick(proc: ProcRecord, run: RunRecord, i: number): void {
    proc.ticks.add(run.id);
    this.host.sendToProc(proc, { k: 'p.tick', run: run.id, fireTime: run.fireTime, skip: run.hydrants[i]?.emitted ?? 0 });
  }

  onReady(proc: ProcRecord, credit: number, leaseSize: number): void {
    if (proc.state === 'starting') proc.state = 'ready';
    proc.credit += credit;
    proc.leaseSize = leaseSize || 1;
    if (proc.stageKey < 0) {
      const h = this.hydrants[-1 - proc.stageKey]!;
      if (TypologyVersion.outdated(proc, h.base)) return;
      for (const id of h.pendingTicks.splice(0)) {
        const run = this.host.runs.get(id);
        if (run) this.sendTick(proc, run, -1 - proc.stageKey);
      }
    }
    this.pump();
  }

  onCredit(proc: ProcRecord, credit: number): void {
    proc.credit += credit;
    this.pump();
  }

  onEmit(proc: ProcRecord, runId: number, seq: number, n: number, payload: Buffer | undefined): void {
    const run = this.host.runs.get(runId);
    const first = this.stages[0]!;
    const progress = run?.hydrants[-1 - proc.stageKey];
    if (run && progress && payload && n > 0) {
      first.queue.push({ run: runId, count: n, payload, jid: this.host.journal?.put(first.name, runId, n, payload) });
      this.host.journal?.emit(runId, -1 - proc.stageKey, n);
      progress.emitted += n;
      run.in += n;
      run.live += n;
    }
    if (first.queue.full) this.heldAcks.push({ proc, seq });
    else this.ack(proc, seq);
    this.pump();
  }

  /** Acknowledge a hydrant emit only once its items are in the journal. */
  private ack(proc: ProcRecord, seq: number): void {
    const send = () => this.host.sendToProc(proc, { k: 'p.emitAck', seq });
    if (this.host.journal) this.host.journal.afterWrite(send);
    else send();
  }

  /** Put items straight into a stage's queue (dead letters replayed) as part of `run`. */
  inject(stageName: string, run: RunRecord, items: unknown[]): boolean {
    const stage = this.stages.find((s) => s.name === stageName);
    if (!stage || items.length === 0) return false;
    const payload = encode(items);
    stage.queue.push({ run: run.id, count: items.length, payload, jid: this.host.journal?.put(stage.name, run.id, items.length, payload) });
    run.in += items.length;
    run.live += items.length;
    this.pump();
    return true;
  }

  /** Runs that were mid-tick when the master stopped: their hydrants resume where they were. */
  resumeTicks(run: RunRecord): void {
    run.hydrants.forEach((p, i) => {
      if (p.done) return;
      if (i >= this.hydrants.length) {
        p.done = true;
        return;
      }
      this.offerTick(run, i);
    });
    this.settle(run);
  }

  /** Items recovered from the journal after a master restart go back into their stage's queue. */
  restore(chunks: RestoredChunk[]): void {
    for (const c of chunks) {
      const stage = this.stages.find((s) => s.name === c.stage) ?? this.stages[0]!;
      stage.queue.push({ run: c.run, count: c.count, items: c.items, jid: c.id });
    }
    this.pump();
  }

  onTickDone(proc: ProcRecord, runId: number, error: string | undefined, rejected = 0): void {
    proc.ticks.delete(runId);
    const run = this.host.runs.get(runId);
    const progress = run?.hydrants[-1 - proc.stageKey];
    if (!run || !progress || progress.done) return;
    progress.done = true;
    this.host.journal?.tickOver(runId, -1 - proc.stageKey);
    if (error) run.errors.push(`${proc.spec.stage}: ${error}`);
    if (rejected > 0) {
      run.failed += rejected;
      this.host.journal?.account(runId, 0, 0, rejected);
    }
    this.settle(run);
  }

  onDone(proc: ProcRecord, h: { lease: number; out: number; dropped: number; failures: Failure[]; credit: number; leaseSize: number }, payloads: Buffer[]): void {
    const chunk = proc.leases.get(h.lease);
    proc.credit += h.credit;
    if (h.leaseSize) proc.leaseSize = h.leaseSize;
    if (!chunk) return; // a duplicate or stale ack: the lease was already settled or given back
    proc.leases.delete(h.lease);
    proc.isolating = false;
    const stageIndex = proc.stageKey;
    const stage = this.stages[stageIndex]!;
    stage.processed += chunk.count;
    stage.failed += h.failures.length;
    const run = this.host.runs.get(chunk.run);
    const last = stageIndex === this.stages.length - 1;
    if (!last && h.out > 0 && payloads[0] && payloads[0].length > 0) {
      const next = this.stages[stageIndex + 1]!;
      next.queue.push({ run: chunk.run, count: h.out, payload: payloads[0], jid: this.host.journal?.put(next.name, chunk.run, h.out, payloads[0]) });
    }
    if (h.failures.length > 0) this.recordFailures(proc, chunk.run, h.failures, payloads[1]);
    // Outputs and dead letters are recorded before the input is let go: a crash in between repeats, never loses.
    if (chunk.jid !== undefined) this.host.journal?.del(chunk.jid);
    this.host.journal?.account(chunk.run, last ? h.out : 0, h.dropped, h.failures.length);
    if (run) {
      run.live += (last ? 0 : h.out) - chunk.count;
      run.dropped += h.dropped;
      run.failed += h.failures.length;
      if (last) run.out += h.out;
      this.settle(run);
    }
    this.pump();
  }

  private recordFailures(proc: ProcRecord, run: number, failures: Failure[], itemsFrame: Buffer | undefined): void {
    let items: unknown[] = [];
    try {
      if (itemsFrame) items = decode(itemsFrame) as unknown[];
    } catch {
      items = [];
    }
    this.host.deadLetter(
      failures.map((f, i) => ({
        typology: this.typology.name,
        version: this.version,
        stage: proc.spec.stage,
        run,
        error: f.error,
        at: f.at,
        attempts: f.attempts,
        item: items[i],
      })),
    );
  }

  private settle(run: RunRecord): void {
    const done = this.host.runs.settle(run.id, this.host.now());
    if (done) {
      this.host.journal?.end(done.id);
      this.host.runSettled(done);
    }
  }

  /** A process ended: its leased items go back to the front of their queue. */
  procGone(proc: ProcRecord, reason: string, crashed = false): void {
    if (proc.state === 'gone') return;
    proc.state = 'gone';
    if (proc.stageKey >= 0) {
      const stage = this.stages[proc.stageKey]!;
      stage.procs.delete(proc);
      const back: Chunk[] = [];
      for (const chunk of proc.leases.values()) back.push(...(crashed ? this.isolate(proc, chunk, reason) : [chunk]));
      back.reverse();
      for (const chunk of back) stage.queue.unshift(chunk);
      if (back.length > 0) this.host.log.warn({ typology: this.typology.name, stage: stage.name, proc: proc.id, items: back.reduce((n, c) => n + c.count, 0), reason }, 'requeued the items of a lost process');
      proc.leases.clear();
    } else {
      const hi = -1 - proc.stageKey;
      const h = this.hydrants[hi]!;
      h.procs.delete(proc);
      for (const id of proc.ticks) {
        const run = this.host.runs.get(id);
        const progress = run?.hydrants[hi];
        if (!run || !progress || progress.done) continue;
        // Resume the tick on another process, skipping the items already taken;
        // a hydrant that keeps dying on this tick is given up.
        if (++progress.crashes >= POISON_CRASHES) {
          progress.done = true;
          this.host.journal?.tickOver(id, hi);
          run.errors.push(`${h.name}: hydrant process ended ${progress.crashes} times during this tick (${reason}); gave up after ${progress.emitted} items`);
          this.settle(run);
        } else {
          this.host.log.warn({ typology: this.typology.name, hydrant: h.name, run: id, taken: progress.emitted, reason }, 'hydrant ended mid-tick; resuming it');
          h.pendingTicks.push(id);
        }
      }
      proc.ticks.clear();
      for (const held of this.heldAcks.filter((a) => a.proc === proc)) this.heldAcks.splice(this.heldAcks.indexOf(held), 1);
    }
    this.pump();
  }

  /**
   * Items held by a process that crashed: split into single items so a
   * poison item is found, and dead-letter an item whose processes crashed
   * POISON_CRASHES times.
   */
  private isolate(proc: ProcRecord, chunk: Chunk, reason: string): Chunk[] {
    const crashes = (chunk.crashes ?? 0) + 1;
    const items = chunk.items ?? (decode(chunk.payload!) as unknown[]);
    if (items.length === 1 && crashes >= POISON_CRASHES) {
      this.host.deadLetter([{ typology: this.typology.name, version: this.version, stage: proc.spec.stage, run: chunk.run, error: `the stage process crashed ${crashes} times while working on this item (${reason})`, attempts: crashes, item: items[0] }]);
      if (chunk.jid !== undefined) this.host.journal?.del(chunk.jid);
      const run = this.host.runs.get(chunk.run);
      if (run) {
        run.failed++;
        run.live--;
        this.settle(run);
      }
      this.stages[proc.stageKey]!.failed++;
      this.host.log.error({ typology: this.typology.name, stage: proc.spec.stage, run: chunk.run }, 'poison item dead-lettered');
      return [];
    }
    if (items.length === 1) return [{ ...chunk, crashes }];
    // One chunk per item; the journal learns of each as a split of the original.
    const singles: Chunk[] = [];
    for (let i = 0; i < items.length; i++) {
      const payload = encode([items[i]]);
      const jid = chunk.jid !== undefined ? this.host.journal?.split(chunk.jid, 1, payload) : undefined;
      singles.push({ run: chunk.run, count: 1, payload, jid, crashes });
    }
    return singles;
  }

  /** Hand queued items to processes with free credit, downstream-first. */
  pump(): void {
    for (let i = this.stages.length - 1; i >= 0; i--) this.dispatch(i);
    const first = this.stages[0]!.queue;
    while (this.heldAcks.length > 0 && !first.full) {
      const { proc, seq } = this.heldAcks.shift()!;
      if (proc.state !== 'gone') this.host.sendToProc(proc, { k: 'p.emitAck', seq });
    }
  }

  private dispatch(i: number): void {
    const stage = this.stages[i]!;
    const queue = stage.queue;
    const next = this.stages[i + 1]?.queue;
    while (!queue.empty && !(next && next.full)) {
      let best: ProcRecord | undefined;
      const suspect = (queue.peek()?.crashes ?? 0) > 0;
      for (const p of stage.procs) {
        if (p.state !== 'ready' || p.credit <= 0 || p.isolating) continue;
        // An item that crashed a process before goes alone to a process holding nothing,
        // so a second crash proves which item it was.
        if (suspect && p.leases.size > 0) continue;
        if (!best || p.credit > best.credit) best = p;
      }
      if (!best) return;
      if (suspect) best.isolating = true;
      // A whole chunk that fits in one lease goes as it is, even past the credit:
      // splitting it would cost a decode and re-encode for a few items.
      const leaseMax = Math.max(1, best.leaseSize);
      const headCount = queue.peek()!.count;
      const chunk = queue.take(suspect ? 1 : headCount <= leaseMax ? headCount : Math.min(best.credit, leaseMax))!;
      const lease = this.nextLease++;
      best.credit -= chunk.count;
      best.leases.set(lease, chunk);
      // Keep the encoded form so a requeue does not re-encode.
      chunk.payload = chunkPayload(chunk);
      chunk.items = undefined;
      if (chunk.parentJid !== undefined) {
        chunk.jid = this.host.journal?.split(chunk.parentJid, chunk.count, chunk.payload);
        chunk.parentJid = undefined;
      }
      this.host.sendToProc(best, { k: 'p.lease', lease, run: chunk.run, n: chunk.count }, chunk.payload);
    }
  }

  /** Items queued or leased in this version. */
  get itemsInFlight(): number {
    let n = 0;
    for (const s of this.stages) {
      n += s.queue.size;
      for (const p of s.procs) for (const c of p.leases.values()) n += c.count;
    }
    return n;
  }

  /** Nothing queued, leased, or being emitted: a draining version can be stopped. */
  get idle(): boolean {
    if (this.itemsInFlight > 0) return false;
    for (const h of this.hydrants) {
      if (h.pendingTicks.length > 0) return false;
      for (const p of h.procs) if (p.ticks.size > 0) return false;
    }
    return true;
  }

  allProcs(): ProcRecord[] {
    return [...this.hydrants.flatMap((h) => [...h.procs]), ...this.stages.flatMap((s) => [...s.procs])];
  }
}
