import type { CompiledModule } from '../spec/compile-types.js';
import type { Typology } from '../spec/types.js';
import type { Failure, ProcSpec, Role } from '../protocol/messages.js';
import { decode } from '../protocol/codec.js';
import type { Logger } from '../log.js';
import { EdgeQueue, chunkPayload, type Chunk } from './edge-queue.js';
import type { RunBook, RunRecord } from './runs.js';
import type { DeadLetter } from './dead-letters.js';

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
  stdout(data: Buffer): void;
  log: Logger;
}

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
    readonly version: number,
    private readonly host: VersionHost,
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
  rescale(typology: Typology): void {
    this.typology = typology;
    const specs = [...typology.notches, typology.bocca];
    this.stages.forEach((s, i) => {
      s.processes = specs[i]!.processes;
      if (s.threads !== specs[i]!.threads) {
        s.threads = specs[i]!.threads;
        s.base = { ...s.base, threads: s.threads };
      }
    });
  }

  /** Start a run: each hydrant gets the tick now, or as soon as its process is ready. */
  tick(run: RunRecord): void {
    run.hydrantsPending = this.hydrants.length;
    for (const h of this.hydrants) {
      const proc = [...h.procs].find((p) => p.state === 'ready');
      if (proc) this.sendTick(proc, run);
      else h.pendingTicks.push(run.id);
    }
  }

  private sendTick(proc: ProcRecord, run: RunRecord): void {
    proc.ticks.add(run.id);
    this.host.sendToProc(proc, { k: 'p.tick', run: run.id, fireTime: run.fireTime });
  }

  onReady(proc: ProcRecord, credit: number, leaseSize: number): void {
    if (proc.state === 'starting') proc.state = 'ready';
    proc.credit += credit;
    proc.leaseSize = leaseSize || 1;
    if (proc.stageKey < 0) {
      const h = this.hydrants[-1 - proc.stageKey]!;
      for (const id of h.pendingTicks.splice(0)) {
        const run = this.host.runs.get(id);
        if (run) this.sendTick(proc, run);
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
    if (run && payload && n > 0) {
      this.stages[0]!.queue.push({ run: runId, count: n, payload });
      run.in += n;
      run.live += n;
    }
    if (this.stages[0]!.queue.full) this.heldAcks.push({ proc, seq });
    else this.host.sendToProc(proc, { k: 'p.emitAck', seq });
    this.pump();
  }

  onTickDone(proc: ProcRecord, runId: number, error: string | undefined): void {
    proc.ticks.delete(runId);
    const run = this.host.runs.get(runId);
    if (!run) return;
    run.hydrantsPending--;
    if (error) run.errors.push(`${proc.spec.stage}: ${error}`);
    this.settle(run);
  }

  onDone(proc: ProcRecord, h: { lease: number; out: number; dropped: number; failures: Failure[]; credit: number; leaseSize: number }, payloads: Buffer[]): void {
    const chunk = proc.leases.get(h.lease);
    proc.credit += h.credit;
    if (h.leaseSize) proc.leaseSize = h.leaseSize;
    if (!chunk) return; // a duplicate or stale ack: the lease was already settled or given back
    proc.leases.delete(h.lease);
    const stageIndex = proc.stageKey;
    const stage = this.stages[stageIndex]!;
    stage.processed += chunk.count;
    stage.failed += h.failures.length;
    const run = this.host.runs.get(chunk.run);
    const last = stageIndex === this.stages.length - 1;
    if (!last && h.out > 0 && payloads[0] && payloads[0].length > 0) {
      this.stages[stageIndex + 1]!.queue.push({ run: chunk.run, count: h.out, payload: payloads[0] });
    }
    if (h.failures.length > 0) this.recordFailures(proc, chunk.run, h.failures, payloads[1]);
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
    if (done) this.host.runSettled(done);
  }

  /** A process ended: its leased items go back to the front of their queue. */
  procGone(proc: ProcRecord, reason: string): void {
    if (proc.state === 'gone') return;
    proc.state = 'gone';
    if (proc.stageKey >= 0) {
      const stage = this.stages[proc.stageKey]!;
      stage.procs.delete(proc);
      const back = [...proc.leases.values()].reverse();
      for (const chunk of back) stage.queue.unshift(chunk);
      if (back.length > 0) this.host.log.warn({ typology: this.typology.name, stage: stage.name, proc: proc.id, items: back.reduce((n, c) => n + c.count, 0), reason }, 'requeued the items of a lost process');
      proc.leases.clear();
    } else {
      const h = this.hydrants[-1 - proc.stageKey]!;
      h.procs.delete(proc);
      for (const id of proc.ticks) {
        const run = this.host.runs.get(id);
        if (!run) continue;
        run.hydrantsPending--;
        run.errors.push(`${h.name}: hydrant process ended during the tick (${reason})`);
        this.settle(run);
      }
      proc.ticks.clear();
      for (const held of this.heldAcks.filter((a) => a.proc === proc)) this.heldAcks.splice(this.heldAcks.indexOf(held), 1);
    }
    this.pump();
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
      for (const p of stage.procs) if (p.state === 'ready' && p.credit > 0 && (!best || p.credit > best.credit)) best = p;
      if (!best) return;
      const chunk = queue.take(Math.min(best.credit, Math.max(1, best.leaseSize)))!;
      const lease = this.nextLease++;
      best.credit -= chunk.count;
      best.leases.set(lease, chunk);
      // Keep the encoded form so a requeue does not re-encode.
      chunk.payload = chunkPayload(chunk);
      chunk.items = undefined;
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
