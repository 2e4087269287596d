/**
 * Chaos tests of issue 4: numbered items through a master and several
 * workers (separate processes of the built CLI) while workers, stage
 * processes and the master are killed, frozen and restarted. Afterwards every
 * number must be in the SQLite bocca; duplicates are allowed (at-least-once)
 * and reported; the run's summary must count each item once.
 *
 * The typology (test/fixtures/failures/chaos): a hydrant yielding {n} for
 * n = 0…COUNT−1, two notches of 2 processes × 4 threads with a little async
 * work, a SQLite bocca in batch mode. One run lasts ~20–30 s on a 2-core
 * machine, so each fault lands mid-run (each test checks that it did).
 *
 * The heavy tests live in this one file so they run one after the other.
 * Needs the built CLI (`npx tsc -p .`). Numbers are printed as `[failures] …` lines.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  accountNumbers,
  childPids,
  describeTypology,
  editFile,
  fixtureWorkspace,
  getRuns,
  pidRunning,
  publishInto,
  report,
  restartMaster,
  signal,
  sqliteCount,
  sqliteNumbers,
  stageChildren,
  trigger,
  waitAllReady,
  waitCount,
  waitForLog,
  waitRunFinished,
  type NumberAccount,
  type RunRow,
} from '../helpers/failures.js';
import {
  cliJson,
  makeTempDir,
  pollUntil,
  sleep,
  spawnedProcesses,
  startMaster,
  startWorker,
  useProcessCleanup,
  type CliProcess,
  type MasterHandle,
  type WorkerRow,
} from '../helpers/processes.js';

useProcessCleanup('each');

const TYPOLOGY = 'chaos';
const TABLE = 'items';
/** hydrant + 2 + 2 notch processes + 1 bocca */
const PROCS = 6;

interface Cluster {
  ws: string;
  db: string;
  master: MasterHandle;
  workers: Map<string, CliProcess>;
  context: () => string;
}

/** Output of every process the current test started, for failure messages. */
function everything(): string {
  return spawnedProcesses()
    .filter((p) => p.name.startsWith('master') || p.name.startsWith('worker'))
    .map((p) => p.describe())
    .join('\n');
}

/**
 * A master and named workers, then the chaos typology (`count` items, optional
 * queue capacity) published into its workspace once every worker has joined,
 * so its processes are spread over all of them; returns when all are ready.
 */
async function cluster(label: string, names: string[], opts: { count: number; capacity?: number }): Promise<Cluster> {
  const staging = fixtureWorkspace('chaos', label);
  const yaml = path.join(staging, 'chaos.yaml');
  editFile(yaml, 'args: [100000]', `args: [${opts.count}]`);
  if (opts.capacity !== undefined) editFile(yaml, /^bocca:/m, `queue:\n  capacity: ${opts.capacity}\nbocca:`);
  const ws = makeTempDir(`${label}-workspace`);
  const master = await startMaster({ workspace: ws });
  const workers = new Map<string, CliProcess>();
  for (const [i, w] of (await Promise.all(names.map((n) => startWorker(master, n)))).entries()) workers.set(names[i]!, w);
  publishInto(staging, ws);
  await waitAllReady(master, TYPOLOGY, PROCS, 60_000, everything);
  return { ws, db: path.join(ws, 'out.sqlite'), master, workers, context: everything };
}

/** The name of the worker that runs the hydrant. */
async function hydrantWorker(c: Cluster): Promise<string> {
  const d = await describeTypology(c.master, TYPOLOGY);
  const w = d.stages.find((s) => s.role === 'hydrant')?.processes.find((p) => p.state === 'ready')?.worker;
  if (!w) throw new Error(`no ready hydrant process\n${JSON.stringify(d.stages)}`);
  return w;
}

async function runOf(m: MasterHandle, id: number): Promise<RunRow | undefined> {
  return (await getRuns(m, TYPOLOGY)).find((r) => r.id === id);
}

/** Fails the test (with a hint to retune the fixture) if the run is already over: the fault would not land mid-run. */
async function expectStillRunning(c: Cluster, run: number, before: string): Promise<void> {
  const r = await runOf(c.master, run);
  expect(r?.status, `the run finished before ${before}: the fault would not land mid-run; make chaos.ts slower`).toBe('running');
}

const rows = (c: Cluster) => () => sqliteCount(c.db, TABLE);

/** Results handed from a fault test to the test that checks its run accounting. */
const results = new Map<string, { account: NumberAccount; run: RunRow | undefined; count: number }>();

describe('chaos: 100,000 items, two notches of 2×4, SQLite bocca (batch)', () => {
  it('one worker SIGKILLed, one frozen 5 s (SIGSTOP/SIGCONT), one stage process SIGKILLed: no number missing', { timeout: 180_000 }, async () => {
    const COUNT = 100_000;
    const c = await cluster('chaos', ['a', 'b', 'c'], { count: COUNT });
    // The hydrant's worker is the "third worker" (only one of its stage processes is killed):
    // a lost hydrant in the middle of a tick is a case of its own (see below).
    const third = await hydrantWorker(c);
    const [killName, stopName] = ['a', 'b', 'c'].filter((n) => n !== third) as [string, string];
    const killed = c.workers.get(killName)!;
    const frozen = c.workers.get(stopName)!;
    const host = c.workers.get(third)!;

    const run = await trigger(c.master, TYPOLOGY);
    const startedAt = Date.now();

    // 1. SIGKILL one worker process (only the worker: its stage processes must exit by themselves).
    await waitCount(rows(c), 10_000, 'rows in SQLite', 60_000, c.context);
    await expectStillRunning(c, run, 'the worker kill');
    const orphans = childPids(killed.pid);
    expect(orphans.length, `worker ${killName} (pid ${killed.pid}) should run stage processes; placement: ${JSON.stringify((await describeTypology(c.master, TYPOLOGY)).stages.map((s) => s.processes))}; children: ${JSON.stringify([...c.workers].map(([n, w]) => [n, w.pid, childPids(w.pid)]))}`).toBeGreaterThan(0);
    const killedAt = Date.now();
    signal(killed.pid, 'SIGKILL');
    await pollUntil(() => orphans.every((pid) => !pidRunning(pid)), {
      timeoutMs: 10_000,
      intervalMs: 50,
      what: `the stage processes ${orphans.join(', ')} of the SIGKILLed worker ${killName} to exit by themselves`,
    });
    const orphansGoneMs = Date.now() - killedAt;
    const lost = await waitForLog(c.master.process, 'worker lost; placing its processes elsewhere', { fields: { worker: killName }, since: killedAt, timeoutMs: 15_000 });
    const detectKillMs = lost.time - killedAt;

    // 2. Freeze another worker and its stage processes (a machine that stops answering) for 5 s.
    await waitCount(rows(c), sqliteCount(c.db, TABLE) + 10_000, 'rows in SQLite after the worker kill', 60_000, c.context);
    await expectStillRunning(c, run, 'the SIGSTOP');
    const stoppedAt = Date.now();
    signal(-frozen.pid, 'SIGSTOP');
    await sleep(5000); // the fault itself: a 5 s freeze
    signal(-frozen.pid, 'SIGCONT');
    const frozenLost = await waitForLog(c.master.process, 'worker lost; placing its processes elsewhere', { fields: { worker: stopName }, since: stoppedAt, timeoutMs: 5000 });
    const detectStopMs = frozenLost.time - stoppedAt;
    const rejoined = await waitForLog(c.master.process, 'worker joined', { fields: { worker: stopName }, since: stoppedAt, timeoutMs: 15_000 });

    // 3. SIGKILL one notch process of the third worker.
    await waitCount(rows(c), sqliteCount(c.db, TABLE) + 5000, 'rows in SQLite after the freeze', 60_000, c.context);
    await expectStillRunning(c, run, 'the stage-process kill');
    const victim = await pollUntil(() => stageChildren(host).find((s) => s.role === 'notch' && s.typology === TYPOLOGY), {
      timeoutMs: 10_000,
      what: `a notch process on worker ${third}`,
    });
    const stageKilledAt = Date.now();
    signal(victim.pid, 'SIGKILL');
    await waitForLog(c.master.process, 'stage process ended', { fields: { proc: victim.procId }, since: stageKilledAt, timeoutMs: 10_000 });

    const summary = await waitRunFinished(c.master, TYPOLOGY, run, 150_000, c.context);
    const account = accountNumbers(sqliteNumbers(c.db, TABLE), COUNT);
    results.set('workers', { account, run: summary, count: COUNT });
    report('chaos (workers)', {
      seconds: (Date.now() - startedAt) / 1000,
      rows: account.rows,
      distinct: account.distinct,
      duplicates: account.duplicates,
      missing: account.missing.length,
      missingRanges: account.missingRanges,
      run: { in: summary.in, out: summary.out, dropped: summary.dropped, failed: summary.failed, errors: summary.errors },
      killedWorkerDetectedMs: detectKillMs,
      killedWorkerChildrenGoneMs: orphansGoneMs,
      frozenWorkerDetectedMs: detectStopMs,
      frozenWorkerRejoinedAfterMs: rejoined.time - stoppedAt,
      killedStage: victim.stage,
    });

    expect(account.missing.length, `missing numbers: ${account.missingRanges}`).toBe(0);
    expect(account.outOfRange).toBe(0);
    // "Noticed within 2 s by default" (heartbeat timeout 2000 ms, checked every 250 ms), plus scheduling slack.
    expect(detectKillMs).toBeLessThan(3500);
    expect(detectStopMs).toBeLessThan(3500);
    expect(c.master.process.running, c.master.process.describe()).toBe(true);
    expect(frozen.running && host.running).toBe(true);
  });

  it('…and the run summary counts each item once (in = out = 100,000)', () => {
    const r = results.get('workers');
    if (!r) return expect.fail('the chaos test above did not get to the end of its run');
    expect(r.run, JSON.stringify(r.run)).toMatchObject({ status: 'finished', in: r.count, out: r.count, dropped: 0, failed: 0 });
  });

  it('master SIGKILLed while the hydrant is still emitting, restarted on the same port, state dir and workspace: no number missing', { timeout: 180_000 }, async () => {
    const COUNT = 100_000;
    const c = await cluster('chaos-master', ['a', 'b', 'c'], { count: COUNT });
    const run = await trigger(c.master, TYPOLOGY);
    const startedAt = Date.now();
    await waitCount(rows(c), 30_000, 'rows in SQLite', 60_000, c.context);
    const before = await runOf(c.master, run);
    expect(before?.status, 'the run should still be going when the master is killed').toBe('running');
    const rowsAtKill = sqliteCount(c.db, TABLE);
    c.master.process.kill('SIGKILL');
    await c.master.process.waitForExit(5000);

    const restarted = await restartMaster(c.master);
    const restored = await waitForLog(restarted.process, 'queued items restored', { timeoutMs: 15_000 });
    // Workers reconnect by themselves.
    await pollUntil(async () => (await cliJson<WorkerRow[]>(['get', 'workers'], restarted.address)).length === 3, {
      timeoutMs: 20_000,
      what: 'the three workers to rejoin the restarted master',
      context: c.context,
    });
    const summary = await waitRunFinished(restarted, TYPOLOGY, run, 150_000, c.context).catch(() => undefined);
    // Give stragglers nothing to hide behind: read what arrived once nothing is left to do.
    const account = accountNumbers(sqliteNumbers(c.db, TABLE), COUNT);
    results.set('master', { account, run: summary, count: COUNT });
    report('chaos (master SIGKILL while emitting)', {
      seconds: (Date.now() - startedAt) / 1000,
      hydrantEmittedBeforeKill: before?.in,
      rowsAtKill,
      restoredItems: restored.items,
      rows: account.rows,
      distinct: account.distinct,
      duplicates: account.duplicates,
      missing: account.missing.length,
      missingRanges: account.missingRanges,
      runAfterRestart: summary,
    });
    expect(summary, `run ${run} did not finish after the restart\n${c.context()}`).toBeDefined();
    expect(account.missing.length, `${account.missing.length} numbers missing: ${account.missingRanges} (the hydrant had emitted ${before?.in} before the kill)`).toBe(0);
  });

  it('…and the run summary after the restart counts each item once (in = out = 100,000)', () => {
    const r = results.get('master');
    if (!r) return expect.fail('the master-restart test above did not get to the end of its run');
    expect(r.run, JSON.stringify(r.run)).toMatchObject({ status: 'finished', in: r.count, out: r.count, failed: 0 });
  });

  it('master SIGKILLed after the hydrant emitted all 100,000 items (most still queued), restarted: nothing queued is lost', { timeout: 180_000 }, async () => {
    const COUNT = 100_000;
    // A queue that holds the whole run: the hydrant is done in a moment and everything else is queued.
    const c = await cluster('chaos-journal', ['a', 'b', 'c'], { count: COUNT, capacity: 200_000 });
    const run = await trigger(c.master, TYPOLOGY);
    const startedAt = Date.now();
    await pollUntil(async () => (await runOf(c.master, run))?.in === COUNT, { timeoutMs: 30_000, what: 'the hydrant to emit every item', context: c.context });
    await waitCount(rows(c), 20_000, 'rows in SQLite', 60_000, c.context);
    await expectStillRunning(c, run, 'the master kill');
    const rowsAtKill = sqliteCount(c.db, TABLE);
    c.master.process.kill('SIGKILL');
    await c.master.process.waitForExit(5000);

    const restarted = await restartMaster(c.master);
    const restored = await waitForLog(restarted.process, 'queued items restored', { timeoutMs: 15_000 });
    const summary = await waitRunFinished(restarted, TYPOLOGY, run, 150_000, c.context).catch(() => undefined);
    const account = accountNumbers(sqliteNumbers(c.db, TABLE), COUNT);
    report('chaos (master SIGKILL, items queued)', {
      seconds: (Date.now() - startedAt) / 1000,
      rowsAtKill,
      restoredItems: restored.items,
      rows: account.rows,
      distinct: account.distinct,
      duplicates: account.duplicates,
      missing: account.missing.length,
      missingRanges: account.missingRanges,
      runAfterRestart: summary,
    });
    expect(summary, `run ${run} did not finish after the restart\n${c.context()}`).toBeDefined();
    expect(Number(restored.items), 'items restored from the journal').toBeGreaterThan(0);
    expect(account.missing.length, `${account.missing.length} numbers missing: ${account.missingRanges}`).toBe(0);
  });

  it('the worker running the hydrant SIGKILLed in the middle of its tick: no number missing', { timeout: 150_000 }, async () => {
    const COUNT = 30_000;
    const c = await cluster('chaos-hydrant', ['a', 'b'], { count: COUNT });
    const victimName = await hydrantWorker(c);
    const victim = c.workers.get(victimName)!;
    const run = await trigger(c.master, TYPOLOGY);
    await waitCount(rows(c), 5000, 'rows in SQLite', 60_000, c.context);
    const before = await runOf(c.master, run);
    expect(before?.in, 'the hydrant should still be emitting (held back by the full first queue)').toBeLessThan(COUNT);
    const killedAt = Date.now();
    victim.killGroup('SIGKILL');
    await waitForLog(c.master.process, 'worker lost; placing its processes elsewhere', { fields: { worker: victimName }, since: killedAt, timeoutMs: 15_000 });
    const summary = await waitRunFinished(c.master, TYPOLOGY, run, 120_000, c.context).catch(() => undefined);
    const account = accountNumbers(sqliteNumbers(c.db, TABLE), COUNT);
    report('chaos (hydrant worker SIGKILL)', {
      hydrantEmittedBeforeKill: before?.in,
      rows: account.rows,
      duplicates: account.duplicates,
      missing: account.missing.length,
      missingRanges: account.missingRanges,
      run: summary,
    });
    expect(summary, `run ${run} did not finish\n${c.context()}`).toBeDefined();
    expect(account.missing.length, `${account.missing.length} numbers missing: ${account.missingRanges} (the hydrant had emitted ${before?.in} when its worker was killed; run: ${JSON.stringify(summary)})`).toBe(0);
  });
});
