/**
 * Failure handling of issue 4, end to end with the built CLI: retries with
 * backoff, timeouts, dead letters and replay; a poison item that crashes its
 * stage process; a notch stuck in a synchronous loop; back-pressure with
 * bounded memory; garbage on the sockets; graceful shutdown; a new worker
 * taking load after a worker is lost. Failing user code (throws, unserializable
 * output) is covered by failures.test.ts; the chaos tests (many items, killed
 * workers and master) are in failures-chaos.test.ts.
 *
 * Each test starts its own master (OS-assigned port, temp workspace and state
 * dir) and workers; typologies are published into the workspace once the
 * workers have joined. Every process group is SIGKILLed after each test.
 * Numbers worth keeping are printed as `[failures] …` lines.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { Dealer, Router } from 'zeromq';
import { describe, expect, it } from 'vitest';
import {
  accountNumbers,
  childPids,
  describeTypology,
  editFile,
  fixtureWorkspace,
  getDeadLetters,
  getRuns,
  jsonlNumbers,
  linesWith,
  logLines,
  publishInto,
  report,
  rssKb,
  stageChildren,
  trigger,
  waitForLog,
  waitRunFinished,
  waitTypologiesReady,
  type DeadLetterRow,
} from '../helpers/failures.js';
import {
  cliJson,
  makeTempDir,
  pollUntil,
  runCli,
  spawnCli,
  spawnedProcesses,
  startMaster,
  startWorker,
  useProcessCleanup,
  type CliProcess,
  type MasterHandle,
  type WorkerRow,
} from '../helpers/processes.js';

useProcessCleanup('each');

interface Setup {
  ws: string;
  master: MasterHandle;
  workers: Map<string, CliProcess>;
  context: () => string;
}

/** Output of every master and worker the current test started, for failure messages. */
function everything(): string {
  return spawnedProcesses()
    .filter((p) => p.name.startsWith('master') || p.name.startsWith('worker'))
    .map((p) => p.describe())
    .join('\n');
}

/** A master, the named workers, then the fixture folder published into the workspace; returns once the typologies run. */
async function setup(fixture: string, names: string[], typologies: string[]): Promise<Setup> {
  const staging = fixtureWorkspace(fixture);
  const ws = makeTempDir(`${fixture}-workspace`);
  const master = await startMaster({ workspace: ws });
  const workers = new Map<string, CliProcess>();
  for (const [i, w] of (await Promise.all(names.map((n) => startWorker(master, n)))).entries()) workers.set(names[i]!, w);
  publishInto(staging, ws);
  await waitTypologiesReady(master, typologies, 40_000, everything);
  return { ws, master, workers, context: everything };
}

/** JSON lines of a file bocca's output. */
function jsonl<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

const sorted = (ns: number[]) => [...ns].sort((a, b) => a - b);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// ---------------------------------------------------------------------------

describe('stage errors', () => {
  it('retries with backoff, a timeout for a hung call, dead letters with error/stage/attempts, and replay after the code is fixed', { timeout: 120_000 }, async () => {
    const s = await setup('retries', ['a'], ['retry-ok', 'retry-short', 'hangs']);
    const m = s.master;
    const ids = { ok: await trigger(m, 'retry-ok'), short: await trigger(m, 'retry-short'), hangs: await trigger(m, 'hangs') };
    const [ok, short, hangs] = await Promise.all([
      waitRunFinished(m, 'retry-ok', ids.ok, 60_000, s.context),
      waitRunFinished(m, 'retry-short', ids.short, 60_000, s.context),
      waitRunFinished(m, 'hangs', ids.hangs, 60_000, s.context),
    ]);
    const letters = await getDeadLetters(m);
    const of = (t: string) => letters.filter((d) => d.typology === t);

    // retries: 2 → the multiples of 5 fail twice and get through on the third attempt, 200 ms then 400 ms later.
    const okOut = jsonl<{ n: number; tries: number; times: number[] }>(path.join(s.ws, 'out-retry-ok.jsonl'));
    expect(sorted(okOut.map((o) => o.n))).toEqual(range(20));
    expect(ok).toMatchObject({ in: 20, out: 20, failed: 0 });
    expect(of('retry-ok')).toEqual([]);
    const retried = okOut.filter((o) => o.n % 5 === 0);
    const gaps = retried.map((o) => [o.times[1]! - o.times[0]!, o.times[2]! - o.times[1]!]);
    for (const o of retried) expect(o.tries, JSON.stringify(o)).toBe(3);
    for (const [g1, g2] of gaps) {
      expect(g1).toBeGreaterThanOrEqual(199);
      expect(g2).toBeGreaterThanOrEqual(399);
    }

    // retries: 1 → those items are dead letters, with the error, the stage and the attempts.
    expect(short).toMatchObject({ in: 20, out: 16, failed: 4 });
    expect(sorted(jsonl<{ n: number }>(path.join(s.ws, 'out-retry-short.jsonl')).map((o) => o.n))).toEqual(range(20).filter((n) => n % 5 !== 0));
    const shortLetters = of('retry-short');
    expect(sorted(shortLetters.map((d) => (d.item as { n: number }).n))).toEqual([0, 5, 10, 15]);
    for (const d of shortLetters) {
      expect(d).toMatchObject({ typology: 'retry-short', stage: 'flaky', attempts: 2, run: ids.short });
      expect(d.error).toMatch(/flaky failure 2 of item \d+/);
    }
    const table = await runCli(['get', 'deadletters', 'retry-short', '--master', m.address]);
    expect(table.code, table.describe()).toBe(0);
    for (const column of ['STAGE', 'ATTEMPTS', 'ERROR']) expect(table.stdout.toUpperCase()).toContain(column);
    expect(table.stdout).toContain('flaky failure 2 of item');

    // timeout: 300ms cuts the calls that never resolve.
    expect(hangs).toMatchObject({ in: 12, out: 9, failed: 3 });
    const hangLetters = of('hangs');
    expect(sorted(hangLetters.map((d) => (d.item as { n: number }).n))).toEqual([1, 5, 9]);
    for (const d of hangLetters) {
      expect(d).toMatchObject({ stage: 'maybeHang', attempts: 1 });
      expect(d.error).toMatch(/timed out after 300 ms/);
    }
    report('retries', { retryGapsMs: gaps, retryShortLetters: shortLetters.map((d) => ({ n: (d.item as { n: number }).n, error: d.error, attempts: d.attempts })), hangLetters: hangLetters.map((d) => d.error), hangsRunSeconds: hangs.seconds });

    // Fix the code (save new module text), wait for the new versions, replay: the items arrive, the letters are gone.
    editFile(path.join(s.ws, 'flaky-short.ts'), 'const FAIL_TIMES = 2;', 'const FAIL_TIMES = 0;');
    editFile(path.join(s.ws, 'hangs.ts'), 'const HANG = true;', 'const HANG = false;');
    await pollUntil(async () => (await describeTypology(m, 'retry-short')).version >= 2 && (await describeTypology(m, 'hangs')).version >= 2, {
      timeoutMs: 20_000,
      what: 'the edited modules to be applied as new versions',
      context: s.context,
    });
    await waitTypologiesReady(m, ['retry-short', 'hangs'], 30_000, s.context);
    for (const [name, count] of [['retry-short', 4], ['hangs', 3]] as const) {
      const r = await runCli(['replay', name, '--master', m.address]);
      expect(r.code, r.describe()).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`replayed ${count} dead letters as run \\d+`));
    }
    await pollUntil(() => jsonlNumbers(path.join(s.ws, 'out-retry-short.jsonl')).length >= 20 && jsonlNumbers(path.join(s.ws, 'out-hangs.jsonl')).length >= 12, {
      timeoutMs: 30_000,
      what: 'the replayed items to reach the boccas',
      context: s.context,
    });
    expect(sorted(jsonlNumbers(path.join(s.ws, 'out-retry-short.jsonl')))).toEqual(range(20));
    expect(sorted(jsonlNumbers(path.join(s.ws, 'out-hangs.jsonl')))).toEqual(range(12));
    const after = await getDeadLetters(m);
    expect(after.filter((d) => d.typology === 'retry-short' || d.typology === 'hangs')).toEqual([]);
  });

  it('poison item (process.exit(1) / SIGKILL of its own process): dead-lettered with a crash message, every other item arrives, no hot restart loop', { timeout: 120_000 }, async () => {
    const s = await setup('poison', ['a'], ['poison-exit', 'poison-kill']);
    const m = s.master;
    const worker = s.workers.get('a')!;
    const cases = [
      { typology: 'poison-exit', stage: 'exitsOn13', poison: 13 },
      { typology: 'poison-kill', stage: 'killsOn7', poison: 7 },
    ];
    const runIds = await Promise.all(cases.map((c) => trigger(m, c.typology)));
    const runs = await Promise.all(cases.map((c, i) => waitRunFinished(m, c.typology, runIds[i]!, 90_000, s.context).catch((err: Error) => err)));
    const letters = await getDeadLetters(m);
    const facts: Record<string, unknown> = {};
    const problems: string[] = [];
    for (const [i, c] of cases.entries()) {
      const run = runs[i]!;
      const arrived = jsonlNumbers(path.join(s.ws, `out-${c.typology}.jsonl`));
      const account = accountNumbers(arrived, 40);
      const mine = letters.filter((d) => d.typology === c.typology);
      const starts = linesWith(worker, 'stage process started', { typology: c.typology, stage: c.stage }).map((l) => l.time);
      facts[c.typology] = {
        run: run instanceof Error ? run.message.split('\n')[0] : { in: run.in, out: run.out, failed: run.failed, seconds: run.seconds },
        missing: account.missingRanges,
        duplicates: account.duplicates,
        deadLetters: mine.map((d) => ({ n: (d.item as { n: number }).n, error: d.error, attempts: d.attempts })),
        stageStarts: starts.length,
        msBetweenStarts: starts.slice(1).map((t, j) => t - starts[j]!),
      };
      if (run instanceof Error) problems.push(`${c.typology}: run did not finish`);
      const innocent = account.missing.filter((n) => n !== c.poison);
      if (innocent.length > 0) problems.push(`${c.typology}: items other than the poison one missing: ${innocent.join(', ')}`);
      if (mine.length !== 1 || (mine[0]!.item as { n: number }).n !== c.poison) problems.push(`${c.typology}: dead letters should be exactly item ${c.poison}, got ${JSON.stringify(mine.map((d) => d.item))}`);
      for (const d of mine) if (!/crash/i.test(d.error)) problems.push(`${c.typology}: dead letter error does not say it crashed: ${d.error}`);
      // 1 first start + one restart per crash (POISON_CRASHES = 3), plus slack for one stray restart.
      if (starts.length > 5) problems.push(`${c.typology}: stage started ${starts.length} times`);
    }
    report('poison', facts);
    expect(m.process.running, m.process.describe()).toBe(true);
    expect(worker.running, worker.describe()).toBe(true);
    const workers = await cliJson<WorkerRow[]>(['get', 'workers'], m.address);
    expect(workers.map((w) => [w.name, w.pid])).toEqual([['a', worker.pid]]);
    expect(problems, JSON.stringify(facts, null, 1)).toEqual([]);
  });

  it('a notch stuck in a synchronous infinite loop: killed after ~10 s of silence, the item dead-lettered, the others arrive', { timeout: 120_000 }, async () => {
    const s = await setup('stuck', ['a'], ['stuck']);
    const m = s.master;
    const startedAt = Date.now();
    const id = await trigger(m, 'stuck');
    const firstKill = await waitForLog(m.process, 'stage process stuck; killing it', { fields: { typology: 'stuck' }, timeoutMs: 25_000 });
    const run = await waitRunFinished(m, 'stuck', id, 100_000, s.context);
    const kills = linesWith(m.process, 'stage process stuck; killing it', { typology: 'stuck' });
    const letters = (await getDeadLetters(m, 'stuck')) as DeadLetterRow[];
    const arrived = jsonlNumbers(path.join(s.ws, 'out-stuck.jsonl'));
    report('stuck loop', {
      firstKillAfterMs: firstKill.time - startedAt,
      silentMsAtKill: kills.map((k) => k.silentMs),
      kills: kills.length,
      runSeconds: run.seconds,
      deadLetters: letters.map((d) => ({ n: (d.item as { n: number }).n, error: d.error, attempts: d.attempts })),
    });
    expect(Number(firstKill.silentMs)).toBeGreaterThanOrEqual(10_000);
    expect(Number(firstKill.silentMs)).toBeLessThan(15_000);
    expect(sorted(arrived)).toEqual([0, 1, 2, 4, 5, 6, 7]);
    expect(letters.map((d) => (d.item as { n: number }).n)).toEqual([3]);
    expect(run).toMatchObject({ in: 8, out: 7, failed: 1 });
    expect(m.process.running && s.workers.get('a')!.running).toBe(true);
  });
});

// ---------------------------------------------------------------------------

describe('back-pressure', () => {
  it('a bocca writing ~100 items/s behind a hydrant that offers 10 million: memory stays bounded, queues stay near their capacity', { timeout: 90_000 }, async () => {
    const CAPACITY = 1000;
    /** CreditPolicy.MAX: the largest lease a fast stage asks for; a queue may exceed its bound by what was in flight. */
    const LEASE_MAX = 4096;
    const s = await setup('backpressure', ['a'], ['flood']);
    const m = s.master;
    const worker = s.workers.get('a')!;
    const id = await trigger(m, 'flood');
    const processed = async () => (await describeTypology(m, 'flood')).stages.find((x) => x.role === 'bocca')?.processed ?? 0;
    // Warm-up: the bocca has written a few hundred items (every stage has loaded and settled).
    await pollUntil(async () => (await processed()) >= 300, { timeoutMs: 30_000, what: 'the bocca to write 300 items', context: s.context });

    const stages = stageChildren(worker);
    const pids: Record<string, number> = { master: m.process.pid, worker: worker.pid };
    for (const st of stages) pids[`${st.role}:${st.stage}`] = st.pid;
    const rss: Record<string, number[]> = Object.fromEntries(Object.keys(pids).map((k) => [k, []]));
    const queued: Record<string, number[]> = {};
    const runIn: number[] = [];
    const sample = () => {
      for (const [k, pid] of Object.entries(pids)) {
        const kb = rssKb(pid);
        if (kb !== undefined) rss[k]!.push(kb);
      }
    };
    const t0 = Date.now();
    const written0 = await processed();
    let written1 = written0;
    sample();
    const sampler = setInterval(sample, 500); // RSS every 500 ms, independent of the CLI round trips below
    try {
      while (Date.now() - t0 < 15_000) {
        const d = await describeTypology(m, 'flood');
        for (const st of d.stages) if (st.queued !== undefined) (queued[st.name] ??= []).push(st.queued);
        written1 = d.stages.find((x) => x.role === 'bocca')?.processed ?? written1;
        runIn.push((await getRuns(m, 'flood')).find((r) => r.id === id)?.in ?? 0);
      }
    } finally {
      clearInterval(sampler);
    }
    sample();
    const seconds = (Date.now() - t0) / 1000;
    const growthMb = Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, Math.round((Math.max(...v) - v[0]!) / 102.4) / 10]));
    report('back-pressure', {
      seconds,
      boccaItemsPerSecond: Math.round((written1 - written0) / seconds),
      rssKb: Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, { first: v[0], max: Math.max(...v), last: v[v.length - 1] }])),
      growthMb,
      queued: Object.fromEntries(Object.entries(queued).map(([k, v]) => [k, { max: Math.max(...v), last: v[v.length - 1] }])),
      hydrantEmitted: { first: runIn[0], last: runIn[runIn.length - 1] },
      stageProcessesSampled: Object.keys(pids).length - 2,
    });
    expect(stages.length, 'the worker should run the hydrant, the notch and the bocca').toBe(3);
    for (const [k, v] of Object.entries(rss)) {
      expect(v.length, `RSS samples of ${k}`).toBeGreaterThanOrEqual(20);
      expect(Math.max(...v) - v[0]!, `RSS growth of ${k} in kB (samples ${v.join(', ')})`).toBeLessThanOrEqual(50 * 1024);
    }
    for (const [k, v] of Object.entries(queued)) expect(Math.max(...v), `queue of ${k}: ${v.join(', ')}`).toBeLessThanOrEqual(CAPACITY + LEASE_MAX);
    // The hydrant was held back: it offered 10 million, the master took in little more than what went out plus the queues.
    expect(runIn[runIn.length - 1]!).toBeLessThan(written1 + 4 * (CAPACITY + LEASE_MAX));
    const rate = (written1 - written0) / seconds;
    expect(rate).toBeGreaterThan(40);
    expect(rate).toBeLessThan(150);
  });
});

// ---------------------------------------------------------------------------

describe('hostile input', () => {
  const packr = new Packr({ useRecords: false });
  const enc = (v: unknown) => packr.pack(v);

  it('garbage, truncated frames, unknown kinds, unknown peers and a huge frame on the master port: logged, nothing goes down, typologies keep running', { timeout: 90_000 }, async () => {
    const s = await setup('garbage', ['a'], ['plain']);
    const m = s.master;
    const endpoint = `tcp://${m.address}`;
    const since = Date.now();
    const dealers: Dealer[] = [];
    const dealer = (routingId?: string) => {
      const d = new Dealer({ linger: 0, receiveTimeout: 3000, ...(routingId ? { routingId } : {}) });
      d.connect(endpoint);
      dealers.push(d);
      return d;
    };
    const header = enc({ k: 'p.done', lease: 1, out: 1, dropped: 0, failures: [], credit: 1, leaseSize: 1 });
    try {
      // Random routing ids, random and malformed frames.
      for (let i = 0; i < 5; i++) {
        const d = dealer(crypto.randomBytes(8).toString('hex'));
        await d.send(crypto.randomBytes(64 + i * 100));
        await d.send(Buffer.alloc(0));
        await d.send(enc(42)); // a header that is not a map
        await d.send(header.subarray(0, Math.floor(header.length / 2))); // truncated header
        await d.send([enc({ k: 'zz.unknown', i }), crypto.randomBytes(32)]); // well-formed header of an unknown kind
        await d.send(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])); // msgpack array32 claiming 4 billion elements
        await d.send(Buffer.from([0xdb, 0x7f, 0xff, 0xff, 0xff, 0x41])); // str32 claiming 2 GiB
      }
      // Peers that look like a stage process, a worker and a CLI client, but are not.
      const ghostProc = dealer('p:ghost.v1.x.999');
      await ghostProc.send([header, crypto.randomBytes(100)]);
      const ghostWorker = dealer('w:ghost');
      await ghostWorker.send(enc({ k: 'w.heartbeat', procs: ['x'] }));
      await ghostWorker.send(enc({ k: 'w.exited', procId: { not: 'a string' }, code: 'x' }));
      const ghostClient = dealer('c:ghost');
      await ghostClient.send(enc({ k: 'c.request', id: 1, command: 'describe', args: null }));
      await ghostClient.send(enc({ k: 'c.request', id: 2, command: { toString: 1 }, args: 7 }));
      await ghostClient.send(enc({ k: 'c.response', id: 3 }));
      // A huge frame (64 MiB of random bytes).
      const big = dealer(`big-${crypto.randomBytes(4).toString('hex')}`);
      await big.send(crypto.randomBytes(64 * 1024 * 1024));
      // The master answers the ghosts it can answer: drain for the unknown process, reject for the unknown worker.
      const [drain] = await ghostProc.receive();
      expect(packr.unpack(drain!)).toMatchObject({ k: 'p.drain' });
      const [reject] = await ghostWorker.receive();
      expect(packr.unpack(reject!)).toMatchObject({ k: 'w.reject' });
    } finally {
      for (const d of dealers) d.close();
    }
    // Plain TCP: random bytes instead of a ZMTP greeting; a valid greeting followed by a frame claiming 1 TiB; an idle connection.
    const [host, port] = [m.address.split(':')[0]!, Number(m.address.split(':')[1])];
    const tcp = (data: Buffer[]) =>
      new Promise<void>((resolve) => {
        const sock = net.connect(port, host, () => {
          for (const b of data) sock.write(b);
          setTimeout(() => sock.destroy(), 300);
        });
        sock.on('error', () => resolve());
        sock.on('close', () => resolve());
      });
    const greeting = Buffer.concat([Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0]), Buffer.from('NULL'.padEnd(20, '\0')), Buffer.alloc(32)]);
    const ready = (() => {
      const body = Buffer.concat([Buffer.from([5]), Buffer.from('READY'), Buffer.from([11]), Buffer.from('Socket-Type'), Buffer.from([0, 0, 0, 6]), Buffer.from('DEALER')]);
      return Buffer.concat([Buffer.from([0x04, body.length]), body]);
    })();
    const hugeFrameHeader = Buffer.alloc(9);
    hugeFrameHeader[0] = 0x02; // long frame, last
    hugeFrameHeader.writeBigUInt64BE(1n << 40n, 1);
    const idle = net.connect(port, host);
    idle.on('error', () => {});
    try {
      await Promise.all([
        tcp([crypto.randomBytes(4096)]),
        tcp([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]),
        tcp([greeting, ready, hugeFrameHeader, crypto.randomBytes(1024)]),
        tcp([greeting.subarray(0, 5)]),
      ]);

      // Still up, still serving the CLI and its workers, still running typologies.
      expect(m.process.running, m.process.describe()).toBe(true);
      const workers = await cliJson<WorkerRow[]>(['get', 'workers'], m.address);
      expect(workers.map((w) => w.name)).toEqual(['a']);
      const id = await trigger(m, 'plain');
      const run = await waitRunFinished(m, 'plain', id, 30_000, s.context);
      expect(run).toMatchObject({ in: 50, out: 50, failed: 0 });
      expect(sorted(jsonlNumbers(path.join(s.ws, 'out-plain.jsonl')))).toEqual(range(50));
    } finally {
      idle.destroy();
    }
    const lines = logLines(m.process.stderr).filter((l) => l.time >= since);
    const unknownPeer = lines.filter((l) => l.msg === 'message from an unknown peer ignored');
    const garbage = lines.filter((l) => l.msg === 'socket receive error');
    report('socket garbage (master)', {
      unknownPeerLogged: unknownPeer.length,
      unknownPeerKinds: [...new Set(unknownPeer.map((l) => l.kind))],
      garbageLogged: garbage.length,
      garbageErrors: [...new Set(garbage.map((l) => String(l.err).slice(0, 60)))],
      otherWarnings: [...new Set(lines.filter((l) => l.level >= 40 && l.msg !== 'socket receive error' && l.msg !== 'message from an unknown peer ignored').map((l) => l.msg))],
    });
    expect(unknownPeer.some((l) => l.kind === 'zz.unknown'), 'an unknown peer message is logged').toBe(true);
    // 5 dealers × 5 undecodable messages (random, empty, not a map, truncated, …) at least; the 64 MiB one too.
    expect(garbage.length).toBeGreaterThanOrEqual(25);
  });

  it('garbage from its master on a worker socket: logged, the worker stays up and joins when welcomed', { timeout: 60_000 }, async () => {
    const fake = new Router({ linger: 0, receiveTimeout: 10_000 });
    await fake.bind('tcp://127.0.0.1:0');
    const port = Number(fake.lastEndpoint!.split(':').pop());
    const worker = spawnCli(['worker', '--master', `127.0.0.1:${port}`, '--name', 'g'], { name: 'worker g', cwd: makeTempDir('worker-g') });
    try {
      const hello = async (): Promise<Buffer> => {
        for (;;) {
          const [peer, h] = await fake.receive();
          if ((packr.unpack(h!) as { k: string }).k === 'w.hello') return peer!;
        }
      };
      const peer = await hello();
      const send = (...frames: Buffer[]) => fake.send([peer, ...frames]);
      await send(crypto.randomBytes(100));
      await send(Buffer.alloc(0));
      await send(enc([1, 2, 3]));
      await send(enc({ k: 'w.spawn', proc: { procId: 'x' } }).subarray(0, 6));
      await send(enc({ k: 'zz.unknown' }), crypto.randomBytes(10));
      await send(enc({ k: 'w.module', hash: '../../../tmp/evil', code: 'x' }));
      await send(enc({ k: 'w.kill', procId: 'no-such-proc', graceful: 'yes' }));
      await send(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]));
      await send(crypto.randomBytes(8 * 1024 * 1024));
      // Now a proper welcome: the worker must answer with heartbeats.
      await send(enc({ k: 'w.welcome', workerId: 'w1', heartbeatMs: 200 }));
      const beat = await pollUntil(async () => {
        const [, h] = await fake.receive();
        return (packr.unpack(h!) as { k: string }).k === 'w.heartbeat';
      }, { timeoutMs: 10_000, what: 'a heartbeat from the worker after the garbage' });
      expect(beat).toBe(true);
      expect(worker.running, worker.describe()).toBe(true);
      const lines = logLines(worker.stderr);
      report('socket garbage (worker)', {
        garbageLogged: lines.filter((l) => l.msg === 'socket receive error').length,
        unknownKinds: lines.filter((l) => l.msg === 'unknown message from the master').map((l) => l.kind),
        handlingErrors: lines.filter((l) => l.msg === 'cannot handle a message from the master').map((l) => l.err),
      });
      expect(lines.some((l) => l.msg === 'unknown message from the master' && l.kind === 'zz.unknown')).toBe(true);
      expect(lines.filter((l) => l.msg === 'socket receive error').length).toBeGreaterThanOrEqual(5);
      expect(fs.existsSync('/tmp/evil.mjs')).toBe(false);
    } finally {
      fake.close();
    }
  });
});

// ---------------------------------------------------------------------------

describe('shutdown and recovery', () => {
  it('SIGTERM to a worker mid-run: it finishes or hands back its items (none lost) and exits 0; SIGTERM to the master: exits 0 promptly', { timeout: 120_000 }, async () => {
    const s = await setup('graceful', ['a', 'b'], ['graceful']);
    const m = s.master;
    const out = path.join(s.ws, 'out-graceful.jsonl');
    const hydrantOn = (await describeTypology(m, 'graceful')).stages.find((x) => x.role === 'hydrant')!.processes[0]!.worker!;
    // The worker without the hydrant: a hydrant stopped in the middle of its tick is a case of its own (failures-chaos.test.ts).
    const name = hydrantOn === 'a' ? 'b' : 'a';
    const leaving = s.workers.get(name)!;
    const notchPids = stageChildren(leaving).filter((x) => x.role === 'notch');
    expect(notchPids.length, `worker ${name} should run notch processes`).toBeGreaterThan(0);

    const id = await trigger(m, 'graceful');
    await pollUntil(() => jsonlNumbers(out).length >= 40, { timeoutMs: 30_000, what: '40 items through', context: s.context });
    const inFlight = (await describeTypology(m, 'graceful')).stages.find((x) => x.name === 'slow')?.inFlight;
    const termAt = Date.now();
    leaving.kill('SIGTERM');
    const exit = await leaving.waitForExit(20_000);
    const exitMs = Date.now() - termAt;
    const exits = linesWith(leaving, 'stage process exited');
    const run = await waitRunFinished(m, 'graceful', id, 60_000, s.context);
    const account = accountNumbers(jsonlNumbers(out), 400);
    const requeued = linesWith(m.process, 'requeued the items of a lost process').filter((l) => l.time >= termAt);
    const placedOnLeaving = linesWith(m.process, 'process placed', { worker: name }).filter((l) => l.time >= termAt);
    report('graceful worker', {
      inFlightAtTerm: inFlight,
      exit,
      exitMs,
      stageExits: exits.map((l) => ({ proc: l.proc, code: l.code, signal: l.signal })),
      itemsHandedBack: requeued.reduce((n, l) => n + Number(l.items), 0),
      placedOnLeavingWorkerAfterTerm: placedOnLeaving.map((l) => l.proc),
      duplicates: account.duplicates,
      missing: account.missingRanges,
      run: { in: run.in, out: run.out, failed: run.failed, seconds: run.seconds },
    });
    expect(exit).toEqual({ code: 0, signal: null });
    for (const l of exits) expect({ proc: l.proc, code: l.code, signal: l.signal }).toEqual({ proc: l.proc, code: 0, signal: null });
    expect(account.missing.length, `missing: ${account.missingRanges}`).toBe(0);
    expect(run).toMatchObject({ in: 400, out: 400, failed: 0 });

    // The master, mid-run: stops within its 5 s grace and a little more, exit code 0.
    const id2 = await trigger(m, 'graceful');
    await pollUntil(async () => ((await getRuns(m, 'graceful')).find((r) => r.id === id2)?.out ?? 0) > 0, { timeoutMs: 30_000, what: 'the second run to be under way' });
    const masterTermAt = Date.now();
    m.process.kill('SIGTERM');
    const masterExit = await m.process.waitForExit(20_000);
    const masterExitMs = Date.now() - masterTermAt;
    report('graceful master', { exit: masterExit, exitMs: masterExitMs });
    expect(masterExit).toEqual({ code: 0, signal: null });
    expect(masterExitMs).toBeLessThan(8000);
  });

  it('a worker and its stage processes SIGKILLed (a machine lost): its processes run elsewhere within seconds; a new worker started later takes load again', { timeout: 120_000 }, async () => {
    const s = await setup('steady', ['a', 'b'], ['steady']);
    const m = s.master;
    const out = path.join(s.ws, 'out-steady.jsonl');
    type Row = { id: string; done: number; pid: number };
    const placement = async () => (await describeTypology(m, 'steady')).stages.flatMap((st) => st.processes.map((p) => ({ stage: st.name, ...p })));
    await pollUntil(() => jsonl<Row>(out).length > 0, { timeoutMs: 30_000, what: 'the first items', context: s.context });
    const before = await placement();
    expect(new Set(before.map((p) => p.worker)), 'both workers run processes before the kill').toEqual(new Set(['a', 'b']));

    // 1. a dies: everything runs on b.
    const killedAt = Date.now();
    s.workers.get('a')!.killGroup('SIGKILL');
    const moved = await pollUntil(async () => {
      const p = await placement();
      return p.length === before.length && p.every((x) => x.state === 'ready' && x.worker === 'b') ? p : undefined;
    }, { timeoutMs: 15_000, intervalMs: 100, what: 'every process ready on b', context: s.context });
    const failoverMs = Date.now() - killedAt;
    const lostLine = linesWith(m.process, 'worker lost; placing its processes elsewhere', { worker: 'a' }).find((l) => l.time >= killedAt);
    const bPids = new Set(childPids(s.workers.get('b')!.pid));
    await pollUntil(() => jsonl<Row>(out).some((r) => r.done > killedAt + failoverMs && bPids.has(r.pid)), { timeoutMs: 15_000, what: 'items done on b after the failover' });

    // 2. c joins later: does it get processes while b is alive?
    const c = await startWorker(m, 'c');
    const joinedAt = Date.now();
    const rebalanced = await pollUntil(async () => (await placement()).some((x) => x.worker === 'c' && x.state === 'ready'), { timeoutMs: 10_000, what: 'a process placed on the new worker c' }).catch(() => false);
    const afterJoin = await placement();

    // 3. b dies: c takes everything, and items flow through it.
    const bKilledAt = Date.now();
    s.workers.get('b')!.killGroup('SIGKILL');
    await pollUntil(async () => {
      const p = await placement();
      return p.length === before.length && p.every((x) => x.state === 'ready' && x.worker === 'c');
    }, { timeoutMs: 15_000, intervalMs: 100, what: 'every process ready on c', context: s.context });
    const cFailoverMs = Date.now() - bKilledAt;
    const cPids = new Set(childPids(c.pid));
    await pollUntil(() => jsonl<Row>(out).some((r) => r.done > bKilledAt && cPids.has(r.pid)), { timeoutMs: 15_000, what: 'items done on c' });

    report('new worker takes load', {
      aLossNoticedMs: lostLine ? lostLine.time - killedAt : undefined,
      failoverToBMs: failoverMs,
      failoverToCMs: cFailoverMs,
      placementAfterAKilled: moved.map((p) => `${p.stage}@${p.worker}`),
      placementWithinTenSecondsOfCJoining: afterJoin.map((p) => `${p.stage}@${p.worker}`),
      cGotProcessesWhileBWasUp: rebalanced,
      cJoinedMsAfterAKill: joinedAt - killedAt,
    });
    // SPEC: "within 3 s". A whole machine lost is noticed by the heartbeat timeout (2 s), then the
    // processes start on b; the describe polling here adds up to ~0.5 s. bench/failover.mjs measures precisely.
    expect(failoverMs, 'every process of the lost worker ready elsewhere').toBeLessThan(5000);
    expect(rebalanced, `the new worker c got no process in 10 s while b ran all ${afterJoin.length}: ${afterJoin.map((p) => `${p.stage}@${p.worker}`).join(', ')}`).toBe(true);
  });
});
