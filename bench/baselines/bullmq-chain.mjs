/**
 * Baseline B of the small-item benchmark: the same pipeline on BullMQ over
 * the local Redis, one queue per hop and one process per stage.
 *
 *   source ──addBulk──▶ queue "pass" ──Worker──▶ queue "sink" ──Worker──▶ (null)
 *   items(n)             pass(item), then sinkQueue.add(output)   NullBocca#write(item)
 *
 * Each stage process runs one BullMQ Worker with `concurrency` jobs at once
 * (the source adds jobs in bulks of 500). Completed jobs are removed, as a
 * long-running pipeline would. Every run uses its own key prefix and deletes
 * its keys afterwards. Timed from the first addBulk (source's clock) to the
 * last job finished at the sink (sink's clock).
 *
 * `runBullmqChain()` is the driver; run with a role argument, this file is one
 * of the three processes.
 */
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { forkGroup, killGroup, message, timeout, exited } from '../lib/procs.mjs';

const SELF = fileURLToPath(import.meta.url);
const BULK = 500;

/**
 * @param {{ n: number, concurrency?: number, redis?: { host: string, port: number }, timeoutMs?: number }} options
 * @returns {Promise<{ seconds: number, items: number, itemsPerSecond: number }>}
 */
export async function runBullmqChain({ n, concurrency = 50, redis = { host: '127.0.0.1', port: 6379 }, timeoutMs = 300_000 }) {
  const prefix = `rezina-bench-${process.pid}-${randomBytes(4).toString('hex')}`;
  const env = {
    ...process.env,
    BENCH_N: String(n),
    BENCH_CONCURRENCY: String(concurrency),
    BENCH_PREFIX: prefix,
    BENCH_REDIS: JSON.stringify(redis),
  };
  const procs = [];
  const start = (role) => {
    const p = forkGroup(SELF, [role], { env });
    procs.push(p);
    return p;
  };
  try {
    return await timeout(
      (async () => {
        const sink = start('sink');
        const pass = start('pass');
        const source = start('source');
        await Promise.all([sink, pass, source].map((p) => message(p, (m) => m.type === 'ready')));
        const done = message(sink, (m) => m.type === 'done');
        const sent = message(source, (m) => m.type === 'sent');
        source.send({ type: 'go' });
        const [{ tFirst }, { tLast, count }] = await Promise.all([sent, done]);
        if (count !== n) throw new Error(`BullMQ chain: the sink processed ${count} jobs, expected ${n}`);
        for (const p of procs) p.send({ type: 'exit' });
        await Promise.all(procs.map((p) => timeout(exited(p), 10_000, 'BullMQ process exit').catch(() => killGroup(p.pid))));
        const seconds = (tLast - tFirst) / 1000;
        return { seconds, items: count, itemsPerSecond: count / seconds };
      })(),
      timeoutMs,
      'BullMQ chain',
    );
  } finally {
    for (const p of procs) killGroup(p.pid);
    await deleteKeys(redis, prefix).catch((err) => process.stderr.write(`bench: could not delete Redis keys ${prefix}:*: ${err.message}\n`));
  }
}

async function deleteKeys(redis, prefix) {
  const { Redis } = await import('ioredis');
  const client = new Redis({ ...redis, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
}

function now() {
  return performance.timeOrigin + performance.now();
}

async function child(role) {
  const { Queue, Worker } = await import('bullmq');
  const { items, pass, NullBocca } = await import('../workloads/small-items.mjs');
  const n = Number(process.env.BENCH_N);
  const concurrency = Number(process.env.BENCH_CONCURRENCY);
  const prefix = process.env.BENCH_PREFIX;
  const connection = JSON.parse(process.env.BENCH_REDIS);
  const send = (m) => process.send?.(m);
  const closers = [];
  process.on('message', async (m) => {
    if (m.type !== 'exit') return;
    await Promise.all(closers.map((c) => c().catch(() => {})));
    process.exit(0);
  });
  process.on('disconnect', () => process.exit(1));
  const jobOpts = { removeOnComplete: true, removeOnFail: true };

  if (role === 'source') {
    const queue = new Queue('pass', { connection, prefix });
    closers.push(() => queue.close());
    await queue.waitUntilReady();
    send({ type: 'ready' });
    process.on('message', async (m) => {
      if (m.type !== 'go') return;
      const tFirst = now();
      let bulk = [];
      for (const item of items(n)) {
        bulk.push({ name: 'item', data: item, opts: jobOpts });
        if (bulk.length === BULK) {
          await queue.addBulk(bulk);
          bulk = [];
        }
      }
      if (bulk.length > 0) await queue.addBulk(bulk);
      send({ type: 'sent', tFirst, tSent: now() });
    });
    return;
  }

  if (role === 'pass') {
    const next = new Queue('sink', { connection, prefix });
    await next.waitUntilReady();
    const worker = new Worker(
      'pass',
      async (job) => {
        const out = pass(job.data);
        if (out !== undefined && out !== null) await next.add('item', out, jobOpts);
      },
      { connection, prefix, concurrency, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } },
    );
    closers.push(() => worker.close(), () => next.close());
    await worker.waitUntilReady();
    send({ type: 'ready' });
    return;
  }

  if (role === 'sink') {
    const bocca = new NullBocca();
    bocca.open();
    let count = 0;
    const worker = new Worker(
      'sink',
      async (job) => {
        bocca.write(job.data);
        if (++count === n) send({ type: 'done', tLast: now(), count });
      },
      { connection, prefix, concurrency, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } },
    );
    closers.push(() => worker.close());
    await worker.waitUntilReady();
    send({ type: 'ready' });
    return;
  }
  throw new Error(`unknown role ${role}`);
}

if (process.argv[1] === SELF && process.argv[2]) {
  child(process.argv[2]).catch((err) => {
    process.stderr.write(`bullmq-chain ${process.argv[2]}: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
