/**
 * Baseline A of the small-item benchmark: raw ZeroMQ PUSH/PULL with batched
 * frames, in a 3-hop chain of three processes.
 *
 *   source ──PUSH/PULL──▶ pass ──PUSH/PULL──▶ sink
 *   items(n), msgpack      decode, pass(item)   decode, NullBocca#write(batch)
 *   arrays of `batch`      each, encode
 *
 * Same items, same functions (bench/workloads/small-items.mjs) and the same
 * msgpack settings as rezina's codec; no broker, no acknowledgements, no
 * accounting. Timed from the first item sent (source's clock) to the last
 * item received (sink's clock); the processes run on one machine, so one
 * wall clock.
 *
 * `runZmqChain()` is the driver (used by bench/run.mjs); run as a child with
 * a role argument, this file is one of the three processes.
 */
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { forkGroup, killGroup, message, timeout, exited } from '../lib/procs.mjs';

const SELF = fileURLToPath(import.meta.url);
const packr = new Packr({ useRecords: false, moreTypes: true });

/**
 * @param {{ n: number, batch?: number, timeoutMs?: number }} options
 * @returns {Promise<{ seconds: number, items: number, itemsPerSecond: number }>}
 */
export async function runZmqChain({ n, batch = 512, timeoutMs = 120_000 }) {
  const procs = [];
  const start = (role, env = {}) => {
    const p = forkGroup(SELF, [role], { env: { ...process.env, ...env, BENCH_N: String(n), BENCH_BATCH: String(batch) } });
    procs.push(p);
    return p;
  };
  try {
    return await timeout(
      (async () => {
        const sink = start('sink');
        const { endpoint: sinkAt } = await message(sink, (m) => m.type === 'listening');
        const pass = start('pass', { BENCH_NEXT: sinkAt });
        const { endpoint: passAt } = await message(pass, (m) => m.type === 'listening');
        const source = start('source', { BENCH_NEXT: passAt });
        await message(source, (m) => m.type === 'connected');
        // One empty frame through the whole chain: every connection is up before the clock starts.
        const warm = message(sink, (m) => m.type === 'warm');
        source.send({ type: 'warmup' });
        await warm;
        const done = message(sink, (m) => m.type === 'done');
        const sent = message(source, (m) => m.type === 'sent');
        source.send({ type: 'go' });
        const [{ tFirst }, { tLast, count }] = await Promise.all([sent, done]);
        if (count !== n) throw new Error(`raw ZeroMQ chain: the sink received ${count} items, expected ${n}`);
        for (const p of procs) p.send({ type: 'exit' });
        await Promise.all(procs.map((p) => timeout(exited(p), 5000, 'raw ZeroMQ process exit').catch(() => killGroup(p.pid))));
        const seconds = (tLast - tFirst) / 1000;
        return { seconds, items: count, itemsPerSecond: count / seconds };
      })(),
      timeoutMs,
      'raw ZeroMQ chain',
    );
  } finally {
    for (const p of procs) killGroup(p.pid);
  }
}

/** Wall-clock ms with sub-ms resolution, comparable across processes of one machine. */
function now() {
  return performance.timeOrigin + performance.now();
}

async function child(role) {
  const zmq = await import('zeromq');
  const { items, pass, NullBocca } = await import('../workloads/small-items.mjs');
  const n = Number(process.env.BENCH_N);
  const batch = Number(process.env.BENCH_BATCH);
  const send = (m) => process.send?.(m);
  process.on('message', (m) => {
    if (m.type === 'exit') process.exit(0);
  });
  process.on('disconnect', () => process.exit(1));
  const EMPTY = Buffer.alloc(0);

  if (role === 'sink') {
    const pull = new zmq.Pull({ linger: 0 });
    await pull.bind('tcp://127.0.0.1:0');
    send({ type: 'listening', endpoint: pull.lastEndpoint });
    const bocca = new NullBocca();
    bocca.open();
    let count = 0;
    for await (const [frame] of pull) {
      if (frame.length === 0) {
        send({ type: 'warm' });
        continue;
      }
      const batchItems = packr.unpack(frame);
      bocca.write(batchItems);
      count += batchItems.length;
      if (count >= n) {
        send({ type: 'done', tLast: now(), count });
      }
    }
    return;
  }

  if (role === 'pass') {
    const pull = new zmq.Pull({ linger: 0 });
    const push = new zmq.Push({ linger: 0 });
    push.connect(process.env.BENCH_NEXT);
    await pull.bind('tcp://127.0.0.1:0');
    send({ type: 'listening', endpoint: pull.lastEndpoint });
    for await (const [frame] of pull) {
      if (frame.length === 0) {
        await push.send(EMPTY);
        continue;
      }
      const input = packr.unpack(frame);
      const output = [];
      for (const item of input) {
        const out = pass(item);
        if (out !== undefined && out !== null) output.push(out);
      }
      await push.send(packr.pack(output));
    }
    return;
  }

  if (role === 'source') {
    const push = new zmq.Push({ linger: 0 });
    push.connect(process.env.BENCH_NEXT);
    send({ type: 'connected' });
    process.on('message', async (m) => {
      if (m.type === 'warmup') await push.send(EMPTY);
      if (m.type !== 'go') return;
      const tFirst = now();
      let chunk = [];
      for (const item of items(n)) {
        chunk.push(item);
        if (chunk.length === batch) {
          await push.send(packr.pack(chunk));
          chunk = [];
        }
      }
      if (chunk.length > 0) await push.send(packr.pack(chunk));
      send({ type: 'sent', tFirst, tSent: now() });
    });
    return;
  }
  throw new Error(`unknown role ${role}`);
}

if (process.argv[1] === SELF && process.argv[2]) {
  child(process.argv[2]).catch((err) => {
    process.stderr.write(`zmq-chain ${process.argv[2]}: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
