/**
 * The rezina wire protocol. Everything is ZeroMQ: the master binds one ROUTER
 * socket (default 127.0.0.1:12345); workers, stage processes and CLI clients
 * each connect one DEALER with a routing id that says what they are:
 * `w:<worker-id>`, `p:<proc-id>`, `c:<random>`.
 *
 * Every message is [header] or [header, payload...]; the header is a msgpack
 * map with a kind `k`. Payloads are msgpack arrays of items, opaque to the
 * master (it only splits them when a lease must be smaller than a chunk).
 *
 * Worker ⇄ master (control)
 *
 *   worker                    master
 *     |-- w.hello ------------->|   name, host, pid, protocol version
 *     |<------------ w.welcome -|   heartbeat period
 *     |-- w.heartbeat --------->|   every heartbeatMs, with the procs it runs
 *     |<---------- m.heartbeat -|   answer; silence means the master is gone
 *     |<------------- w.module -|   compiled module code, before a spawn that needs it
 *     |<-------------- w.spawn -|   start one stage process
 *     |<--------------- w.kill -|   stop one (graceful: drain first)
 *     |-- w.exited ------------>|   a stage process ended (code/signal)
 *     |-- w.leaving ----------->|   shutting down: place nothing more here
 *
 * Stage process ⇄ master (data). Credit-based: the master never sends a
 * process more items than it asked for, so queues stay bounded and work goes
 * to whoever has free capacity.
 *
 *   notch/bocca               master
 *     |-- p.ready ------------->|   module loaded; `credit` = items it can take
 *     |<------------ p.lease ---|   [header{lease, run, n}, items]
 *     |-- p.done -------------->|   [header{lease, out, dropped, failures, credit}, outputs?, failed?]
 *     |-- p.stdout ------------>|   [header, lines]  (stdout bocca; sent before its p.done)
 *     |<------------ p.drain ---|   finish leases, then p.drained and exit
 *     |-- p.error ------------->|   module failed to load: the stage cannot run
 *     |-- p.alive ------------->|   every second; silence means a stuck event loop
 *     |-- p.orphaned ---------->|   its worker died (IPC channel closed): the worker is lost
 *
 *   hydrant                   master
 *     |<------------- p.tick ---|   run id; skip: items already taken (a resumed tick)
 *     |-- p.emit -------------->|   [header{run, seq, n}, items]   at most EMIT_WINDOW unacknowledged
 *     |<---------- p.emitAck ---|   sent when the first queue has room (back-pressure)
 *     |-- p.tickDone ---------->|   run id, items emitted, error if the function threw
 *
 * An item leaves a queue only when p.done for its lease arrives: the outputs
 * are enqueued downstream in the same step, so a process that dies holding a
 * lease has that lease's items queued again (at-least-once).
 *
 * CLI client ⇄ master
 *     |-- c.request {id, command, args} -->|
 *     |<-- c.response {id, ok, result | error, diagnostics} --|
 */

export const PROTOCOL_VERSION = 1;

/** How many p.emit batches a hydrant may have unacknowledged. */
export const EMIT_WINDOW = 4;

export type Role = 'hydrant' | 'notch' | 'bocca';

/** Everything a stage process needs to start; sent by the master in w.spawn. */
export interface ProcSpec {
  procId: string;
  typology: string;
  version: number;
  stage: string;
  role: Role;
  /** Index among the processes of this stage (0-based). */
  index: number;
  threads: number;
  /** Compiled module hash and export name; absent for built-in boccas. */
  moduleHash?: string;
  exportName?: string;
  /** Hydrant arguments. */
  args?: unknown[];
  timeoutMs?: number;
  retries?: number;
  retryBackoffMs?: number;
  /** Bocca only. */
  backend?: string;
  mode?: 'stream' | 'batch';
  batchSize?: number;
  lingerMs?: number;
  options?: Record<string, unknown>;
  /** Largest encoded item allowed, bytes. */
  maxItemBytes: number;
}

export interface Failure {
  error: string;
  attempts: number;
  /** Where the error happened, e.g. `cityweather.ts:12:7`, when known. */
  at?: string;
}

export type WorkerToMaster =
  | { k: 'w.hello'; v: number; name: string; host: string; pid: number; seq: number }
  | { k: 'w.heartbeat'; procs: string[] }
  | { k: 'w.leaving' }
  | { k: 'w.exited'; procId: string; code: number | null; signal: string | null; reason?: string };

export type MasterToWorker =
  | { k: 'w.welcome'; workerId: string; heartbeatMs: number }
  | { k: 'm.heartbeat' }
  | { k: 'w.module'; hash: string; code: string }
  | { k: 'w.spawn'; proc: ProcSpec }
  | { k: 'w.kill'; procId: string; graceful: boolean }
  | { k: 'w.reject'; reason: string };

export type ProcToMaster =
  | { k: 'p.ready'; procId: string; credit: number; leaseSize: number }
  | { k: 'p.error'; procId: string; error: string }
  | { k: 'p.done'; lease: number; out: number; dropped: number; failures: Failure[]; credit: number; leaseSize: number }
  | { k: 'p.credit'; credit: number }
  | { k: 'p.stdout'; n: number }
  | { k: 'p.emit'; run: number; seq: number; n: number }
  | { k: 'p.tickDone'; run: number; count: number; rejected?: number; error?: string }
  | { k: 'p.drained' }
  | { k: 'p.alive' }
  | { k: 'p.orphaned' };

export type MasterToProc =
  | { k: 'p.lease'; lease: number; run: number; n: number }
  | { k: 'p.tick'; run: number; fireTime: number; skip: number }
  | { k: 'p.emitAck'; seq: number }
  | { k: 'p.drain' };

export interface ClientRequest {
  k: 'c.request';
  id: number;
  command: string;
  args: Record<string, unknown>;
}

export interface ClientResponse {
  k: 'c.response';
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
  code?: string;
  diagnostics?: unknown[];
}
