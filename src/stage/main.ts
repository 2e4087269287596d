/**
 * Entry point of one stage process (forked by a worker). It loads the
 * user's compiled module, connects a DEALER to the master and runs the
 * hydrant, notch or bocca loop until drained, killed, or orphaned.
 *
 * Environment (set by the worker): REZINA_PROC (JSON ProcSpec),
 * REZINA_MASTER (tcp://host:port), REZINA_MODULE_DIR (compiled modules).
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { decode } from '../protocol/codec.js';
import type { ProcSpec } from '../protocol/messages.js';
import { DealerEndpoint } from '../protocol/sockets.js';
import { BoccaRunner } from './bocca-runner.js';
import { HydrantRunner } from './hydrant-runner.js';
import { NotchRunner } from './notch-runner.js';

const spec = JSON.parse(process.env.REZINA_PROC ?? '{}') as ProcSpec;
const master = process.env.REZINA_MASTER ?? 'tcp://127.0.0.1:12345';
const moduleDir = process.env.REZINA_MODULE_DIR ?? '.';
const log = createLogger('stage', { typology: spec.typology, stage: spec.stage, proc: spec.procId });

const socket = new DealerEndpoint(`p:${spec.procId}`, (what, err) => log.warn({ err: describeError(err) }, `socket ${what} error`));
socket.connect(master);
const send = (header: object, ...payloads: Buffer[]) => socket.send(header, ...payloads);

let exiting = false;
function exit(code: number): void {
  if (exiting) return;
  exiting = true;
  // Give queued sends a moment to leave before the socket closes.
  const wait = () => (socket.pendingSends > 0 ? setTimeout(wait, 10) : finish());
  const finish = () => {
    socket.close();
    setTimeout(() => process.exit(code), 50).unref();
  };
  wait();
  setTimeout(finish, 2000).unref();
}

// A stage process never outlives its worker: when the IPC channel to the
// worker closes (worker killed), this process exits rather than run orphaned.
process.on('disconnect', () => {
  log.warn('worker gone; exiting');
  // Telling the master first lets it replace the whole worker at once instead
  // of waiting for the worker's heartbeats to time out.
  send({ k: 'p.orphaned' });
  exit(1);
});
process.on('SIGTERM', () => void drainAndExit());
// Proof of life for the master: a process whose event loop is stuck in a
// synchronous function stops sending these and is killed and replaced.
setInterval(() => send({ k: 'p.alive' }), 1000).unref();
process.on('SIGINT', () => {});

async function loadExport(): Promise<unknown> {
  const file = path.join(moduleDir, `${spec.moduleHash}.mjs`);
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const name = spec.exportName ?? 'default';
  if (!(name in mod)) throw new Error(`module does not export "${name}"`);
  return mod[name];
}

let drainAndExit: () => Promise<void> = async () => exit(0);

async function main(): Promise<void> {
  let exported: unknown;
  try {
    if (spec.moduleHash) exported = await loadExport();
  } catch (err) {
    send({ k: 'p.error', procId: spec.procId, error: `cannot load module: ${describeError(err)}` });
    log.error({ err: describeError(err) }, 'cannot load module');
    return exit(1);
  }

  if (spec.role === 'hydrant') {
    const runner = new HydrantRunner(exported as (...a: unknown[]) => unknown, spec.args ?? [], spec.stage, spec.maxItemBytes, send, log);
    send({ k: 'p.ready', procId: spec.procId, credit: 0, leaseSize: 0 });
    // A draining hydrant finishes the ticks it is in before it exits.
    let ticking = 0;
    let draining = false;
    drainAndExit = async () => {
      draining = true;
      if (ticking === 0) exit(0);
    };
    for await (const msg of socket.messages()) {
      const h = msg.header;
      if (h.k === 'p.tick') {
        ticking++;
        void runner.tick(h.run as number, Number(h.skip) || 0).finally(() => {
          if (--ticking === 0 && draining) exit(0);
        });
      } else if (h.k === 'p.emitAck') runner.onAck(h.seq as number);
      else if (h.k === 'p.drain') void drainAndExit();
    }
    return;
  }

  let onLease: (id: number, run: number, items: unknown[]) => void;
  let drain: () => Promise<void>;
  let initial: { credit: number; leaseSize: number };

  if (spec.role === 'notch') {
    if (typeof exported !== 'function') {
      send({ k: 'p.error', procId: spec.procId, error: `export "${spec.exportName}" is not a function` });
      return exit(1);
    }
    const runner = new NotchRunner(exported as (item: unknown) => unknown, {
      stage: spec.stage,
      threads: spec.threads,
      timeoutMs: spec.timeoutMs,
      retries: spec.retries ?? 0,
      retryBackoffMs: spec.retryBackoffMs ?? 1000,
      maxItemBytes: spec.maxItemBytes,
    }, send, log);
    onLease = (id, run, items) => runner.onLease(id, run, items);
    drain = () => runner.drain();
    initial = runner.initialCredit();
  } else {
    // Only bocca processes load the database drivers.
    const { builtinBackends } = await import('../backends/index.js');
    const factory = builtinBackends().get(spec.backend ?? '');
    if (!factory) {
      send({ k: 'p.error', procId: spec.procId, error: `unknown backend "${spec.backend}"` });
      return exit(1);
    }
    const lines: string[] = [];
    let backend;
    try {
      backend = await factory(spec.options ?? {}, {
        typology: spec.typology,
        processIndex: spec.index,
        mode: spec.mode ?? 'stream',
        writeLine: (line: string) => lines.push(line),
        moduleExport: exported,
        log,
      });
    } catch (err) {
      send({ k: 'p.error', procId: spec.procId, error: `cannot create the ${spec.backend} bocca: ${describeError(err)}` });
      return exit(1);
    }
    // open() failing (database down) is retried: the stage stays up and waits.
    for (let backoff = 200; ; backoff = Math.min(backoff * 2, 5000)) {
      try {
        await backend.open();
        break;
      } catch (err) {
        log.warn({ err: describeError(err), retryInMs: backoff }, 'bocca cannot open its backend; retrying');
        await new Promise((r) => setTimeout(r, backoff));
      }
    }
    const runner = new BoccaRunner(backend, {
      mode: spec.mode ?? 'stream',
      threads: spec.threads,
      batchSize: spec.batchSize ?? 500,
      lingerMs: spec.lingerMs ?? 200,
    }, send, () => lines.splice(0, lines.length), log);
    onLease = (id, run, items) => runner.onLease(id, run, items);
    drain = async () => {
      await runner.drain();
      runner.close();
      await backend.close().catch((err: unknown) => log.warn({ err: describeError(err) }, 'bocca close failed'));
    };
    initial = runner.initialCredit();
  }

  drainAndExit = async () => {
    await drain();
    send({ k: 'p.drained' });
    exit(0);
  };
  send({ k: 'p.ready', procId: spec.procId, ...initial });
  for await (const msg of socket.messages()) {
    const h = msg.header;
    if (h.k === 'p.lease') {
      let items: unknown[];
      try {
        items = msg.payloads[0] ? (decode(msg.payloads[0]) as unknown[]) : [];
      } catch (err) {
        log.error({ err: describeError(err) }, 'undecodable lease');
        continue;
      }
      onLease(h.lease as number, h.run as number, items);
    } else if (h.k === 'p.drain') {
      void drainAndExit();
    }
  }
}

main().catch((err) => {
  log.error({ err: describeError(err) }, 'stage process failed');
  exit(1);
});
