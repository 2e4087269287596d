import { fork, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { distFile } from '../package-root.js';
import { PROTOCOL_VERSION, type ProcSpec } from '../protocol/messages.js';
import { DealerEndpoint } from '../protocol/sockets.js';

export interface WorkerOptions {
  /** Master address, `host:port`. */
  master: string;
  /** Shown in `rezina get workers`. Default: hostname-pid. */
  name?: string;
  /** Where shipped modules are cached by hash. Default: <tmp>/rezina-modules. */
  moduleDir?: string;
  /** Declare the master gone after this much silence, ms. Default 3000. */
  masterTimeoutMs?: number;
  log?: Logger;
}

export type WorkerState = 'connecting' | 'joined' | 'stopping' | 'stopped';

/**
 * A worker joins a master, runs the stage processes the master places on it
 * (one OS process each), reports their exits, and heartbeats. If the master
 * goes away it keeps trying to join again.
 */
export class Worker {
  state: WorkerState = 'connecting';
  readonly name: string;
  private readonly log: Logger;
  private readonly socket: DealerEndpoint;
  private readonly children = new Map<string, ChildProcess>();
  private readonly moduleDir: string;
  private readonly masterAddress: string;
  private heartbeat?: NodeJS.Timeout;
  private hello?: NodeJS.Timeout;
  private heartbeatMs = 500;
  private lastMaster = Date.now();
  private stopped?: () => void;
  private readonly finished: Promise<void>;
  workerId?: string;

  private constructor(private readonly opts: WorkerOptions) {
    this.name = opts.name ?? `${os.hostname()}-${process.pid}`;
    this.log = opts.log ?? createLogger('worker', { worker: this.name });
    this.moduleDir = opts.moduleDir ?? path.join(os.tmpdir(), 'rezina-modules');
    this.masterAddress = opts.master.startsWith('tcp://') ? opts.master : `tcp://${opts.master}`;
    fs.mkdirSync(this.moduleDir, { recursive: true });
    const id = `w:${this.name}:${crypto.randomBytes(4).toString('hex')}`;
    this.socket = new DealerEndpoint(id, (what, err) => this.log.warn({ err: describeError(err) }, `socket ${what} error`));
    this.finished = new Promise((r) => (this.stopped = r));
  }

  static async create(opts: WorkerOptions): Promise<Worker> {
    const w = new Worker(opts);
    w.socket.connect(w.masterAddress);
    void w.receiveLoop();
    w.sayHello();
    w.heartbeat = setInterval(() => w.beat(), 250);
    return w;
  }

  run(): Promise<void> {
    return this.finished;
  }

  private setState(s: WorkerState): void {
    if (this.state === s) return;
    this.state = s;
    this.log.info({ state: s, master: this.opts.master }, 'worker state');
  }

  private sayHello(): void {
    if (this.hello) clearInterval(this.hello);
    const seq = ++this.joinSeq;
    const send = () => this.socket.send({ k: 'w.hello', v: PROTOCOL_VERSION, name: this.name, host: os.hostname(), pid: process.pid, seq });
    send();
    // Repeated until welcomed: the master may not be up yet.
    this.hello = setInterval(send, 1000);
  }

  private lastCheck = 0;

  private beat(): void {
    const now = Date.now();
    // A stall of this process (busy event loop) is not the master's silence.
    if (this.lastCheck > 0 && now - this.lastCheck > 1000) this.lastMaster = Math.max(this.lastMaster, now);
    this.lastCheck = now;
    if (this.state === 'stopping') {
      // Keep beating while draining, so the master does not declare us lost.
      if (now - this.lastBeat >= this.heartbeatMs) {
        this.lastBeat = now;
        this.socket.send({ k: 'w.heartbeat', procs: [...this.children.keys()] });
      }
      return;
    }
    if (this.state !== 'joined') return;
    if (now - this.lastMaster > (this.opts.masterTimeoutMs ?? 3000)) {
      this.log.warn('master silent; joining again');
      this.setState('connecting');
      this.sayHello();
      return;
    }
    if (!this.lastBeat || now - this.lastBeat >= this.heartbeatMs) {
      this.lastBeat = now;
      this.socket.send({ k: 'w.heartbeat', procs: [...this.children.keys()] });
    }
  }
  private lastBeat = 0;
  private joinSeq = 0;

  private async receiveLoop(): Promise<void> {
    for await (const msg of this.socket.messages()) {
      const h = msg.header;
      this.lastMaster = Date.now();
      try {
        switch (h.k) {
          case 'w.welcome':
            if (this.hello) clearInterval(this.hello);
            this.hello = undefined;
            this.workerId = String(h.workerId);
            this.heartbeatMs = Number(h.heartbeatMs) || 500;
            this.setState('joined');
            break;
          case 'm.heartbeat':
            break;
          case 'w.module':
            this.storeModule(String(h.hash), String(h.code));
            break;
          case 'w.spawn':
            this.spawn(h.proc as ProcSpec);
            break;
          case 'w.kill':
            this.kill(String(h.procId), h.graceful === true);
            break;
          case 'w.reject':
            this.log.warn({ reason: h.reason }, 'master asked this worker to join again');
            // The master no longer knows our processes (it restarted, or declared us lost):
            // their items are being redone elsewhere, so stop them and join afresh.
            for (const c of this.children.values()) c.kill('SIGKILL');
            if (this.state !== 'stopping') {
              this.setState('connecting');
              this.sayHello();
            }
            break;
          default:
            this.log.warn({ kind: h.k }, 'unknown message from the master');
        }
      } catch (err) {
        this.log.error({ kind: h.k, err: describeError(err) }, 'cannot handle a message from the master');
      }
    }
  }

  private storeModule(hash: string, code: string): void {
    if (!/^[0-9a-f]{16,128}$/.test(hash)) throw new Error(`bad module hash "${hash.slice(0, 80)}"`);
    const file = path.join(this.moduleDir, `${hash}.mjs`);
    if (fs.existsSync(file)) return;
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, file);
  }

  private spawn(spec: ProcSpec): void {
    if (this.state === 'stopping') return;
    const child = fork(distFile('stage/main.js'), [], {
      env: {
        ...process.env,
        REZINA_PROC: JSON.stringify(spec),
        REZINA_MASTER: this.masterAddress,
        REZINA_MODULE_DIR: this.moduleDir,
      },
      execArgv: ['--enable-source-maps'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.children.set(spec.procId, child);
    this.log.info({ typology: spec.typology, stage: spec.stage, proc: spec.procId, pid: child.pid }, 'stage process started');
    child.on('error', (err) => this.log.error({ proc: spec.procId, err: describeError(err) }, 'stage process error'));
    child.on('exit', (code, signal) => {
      this.children.delete(spec.procId);
      const level = code === 0 ? 'info' : 'warn';
      this.log[level]({ proc: spec.procId, code, signal }, 'stage process exited');
      this.socket.send({ k: 'w.exited', procId: spec.procId, code, signal });
    });
  }

  private kill(procId: string, graceful: boolean): void {
    this.children.get(procId)?.kill(graceful ? 'SIGTERM' : 'SIGKILL');
  }

  /** Stop every stage process (SIGTERM: they finish what they hold), SIGKILL what is left after `graceMs`. Idempotent. */
  async shutdown(reason: string, graceMs = 5000): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return this.finished;
    this.setState('stopping');
    this.log.info({ reason }, 'worker stopping');
    if (this.hello) clearInterval(this.hello);
    // Tell the master first, so it places nothing new here while we drain.
    this.socket.send({ k: 'w.leaving' });
    for (const c of this.children.values()) c.kill('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (this.children.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const c of this.children.values()) c.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 50));
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.socket.close();
    this.setState('stopped');
    this.stopped?.();
  }

  /** PIDs of the stage processes this worker runs (for tests and `describe`). */
  childPids(): number[] {
    return [...this.children.values()].map((c) => c.pid ?? 0).filter((p) => p > 0);
  }
}
