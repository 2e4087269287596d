/**
 * A worker killed with SIGKILL while a slow typology (test/fixtures/e2e/slow,
 * a run every second) runs on a master and two workers: its stages move to the
 * surviving worker within seconds, runs keep finishing, the master stays up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cliJson,
  copyFixtures,
  describeJson,
  livePidsInGroup,
  makeTempDir,
  pollUntil,
  runCli,
  startMaster,
  startWorker,
  useProcessCleanup,
  type WorkerRow,
} from '../helpers/processes.js';

useProcessCleanup('each');

interface RunRow {
  id: number;
  status: 'running' | 'finished';
  startedAt: number;
  finishedAt?: number;
  in: number;
  out: number;
  dropped: number;
  failed: number;
  errors: string[];
}

interface Described {
  stages: Array<{ name: string; processes: Array<{ id: string; worker?: string; state: string }> }>;
}

/** hydrant 1 + slowly 2 + pass 2 + bocca 1 */
const PROCESSES = 6;
/**
 * The longest a killed worker's stages may take to be placed on the other
 * worker (the master notices within its 2 s heartbeat timeout), and to be up
 * and ready there (starting node processes is slow on a loaded 2-core machine).
 */
const PLACED_MS = 5000;
const RECOVERY_MS = 8000;

describe('losing a worker', () => {
  it('kill -9 of a worker: its processes move to the other one and runs keep finishing', { timeout: 90_000 }, async () => {
    const master = await startMaster();
    const [a, b] = await Promise.all([startWorker(master, 'a'), startWorker(master, 'b')]);
    const context = () => [master.process, a, b].map((p) => p.describe()).join('\n');

    const src = makeTempDir('slow-src');
    copyFixtures(['slow/slow.yaml', 'slow/slow.ts'], src);
    const applied = await runCli(['apply', '-f', path.join(src, 'slow', 'slow.yaml'), '--master', master.address]);
    expect(applied.code, applied.describe()).toBe(0);
    expect(applied.stdout).toBe('typology/slow created\n');

    const placed = await pollUntil(
      async () => {
        const d = await describeJson<Described>('slow', master.address);
        const procs = d.stages.flatMap((s) => s.processes);
        return procs.length === PROCESSES && procs.every((p) => p.state === 'ready') ? procs : undefined;
      },
      { timeoutMs: 30_000, what: `all ${PROCESSES} processes of slow to be ready`, context },
    );
    // Both workers have work, so losing one matters.
    expect(new Set(placed.map((p) => p.worker))).toEqual(new Set(['a', 'b']));
    const onA = placed.filter((p) => p.worker === 'a').length;
    expect(onA).toBeGreaterThan(0);

    const results = path.join(master.workspace, 'slow', 'results', 'slow.jsonl');
    const written = () =>
      (fs.existsSync(results) ? fs.readFileSync(results, 'utf8') : '')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { n: number; tickAt: number; pid: number });
    const runs = () => cliJson<RunRow[]>(['get', 'runs', 'slow'], master.address);
    await pollUntil(async () => (await runs()).some((r) => r.status === 'finished' && r.out === 8), {
      timeoutMs: 20_000,
      what: 'a first finished run',
      context,
    });

    // Only the worker process, like a crash: not its process group.
    const killedAt = Date.now();
    a.kill('SIGKILL');
    await a.exited;

    // Two moments: the master has placed every process on b (it noticed the
    // loss), and every one of them is up and ready (the stages run again).
    let placedAt: number | undefined;
    const moved = await pollUntil(
      async () => {
        const d = await describeJson<Described>('slow', master.address);
        const procs = d.stages.flatMap((s) => s.processes);
        const allOnB = procs.length === PROCESSES && procs.every((p) => p.worker === 'b');
        if (allOnB) placedAt ??= Date.now();
        return allOnB && procs.every((p) => p.state === 'ready') ? procs : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'every process of slow to run on worker b', context },
    );
    const recoveredAt = Date.now();
    const placedMs = placedAt! - killedAt;
    const recoveryMs = recoveredAt - killedAt;
    if (process.env.REZINA_E2E_VERBOSE) console.info(`placed on b after ${placedMs} ms, all ready after ${recoveryMs} ms`);
    expect(moved).toHaveLength(PROCESSES);
    expect(placedMs, `the killed worker's stages were placed on b after ${placedMs} ms`).toBeLessThan(PLACED_MS);
    expect(recoveryMs, `the killed worker's stages ran on b again after ${recoveryMs} ms`).toBeLessThan(RECOVERY_MS);

    const workers = await cliJson<WorkerRow[]>(['get', 'workers'], master.address);
    expect(workers.map((w) => ({ name: w.name, processes: w.processes }))).toEqual([{ name: 'b', processes: PROCESSES }]);

    // It keeps producing: runs that start after the recovery finish, with all their items written.
    const later = await pollUntil(
      async () => {
        const finished = (await runs()).filter((r) => r.status === 'finished' && r.startedAt > recoveredAt);
        return finished.length >= 2 ? finished : undefined;
      },
      { timeoutMs: 20_000, what: 'two runs started after the recovery to finish', context },
    );
    for (const r of later) expect(r, JSON.stringify(r)).toMatchObject({ in: 8, out: 8, failed: 0, errors: [] });
    // Their items are in the file. The hydrant stamps each item with the time
    // of its tick, which falls just after its run's start; a lease is
    // acknowledged only once written, so a finished run's items are all there.
    const snapshot = (await runs()).sort((x, y) => x.startedAt - y.startedAt);
    const perRun = new Map<number, number>();
    for (const item of written()) {
      const run = snapshot.filter((r) => r.startedAt <= item.tickAt).at(-1);
      if (run) perRun.set(run.id, (perRun.get(run.id) ?? 0) + 1);
    }
    const done = snapshot.filter((r) => r.status === 'finished' && r.startedAt > recoveredAt);
    expect(done.length).toBeGreaterThanOrEqual(2);
    for (const r of done) expect(perRun.get(r.id), `items written per run: ${JSON.stringify([...perRun])}`).toBe(8);

    // Runs that were under way when the worker died still finish, and no item is lost.
    const before = (await runs()).filter((r) => r.startedAt < killedAt);
    const earlier = await pollUntil(
      async () => {
        const all = (await runs()).filter((r) => r.startedAt < killedAt);
        return all.every((r) => r.status === 'finished') ? all : undefined;
      },
      { timeoutMs: 15_000, what: 'every run started before the kill to finish', context },
    );
    expect(earlier.length).toBe(before.length);
    for (const r of earlier) expect(r.out, JSON.stringify(r)).toBeGreaterThanOrEqual(r.in);

    // The killed worker's stage processes do not linger, and the rest stays up.
    await pollUntil(() => livePidsInGroup(a.pid).length === 0, {
      timeoutMs: 10_000,
      what: `the stage processes of the killed worker (process group ${a.pid}) to exit`,
    });
    expect(master.process.running, context()).toBe(true);
    expect(b.running, context()).toBe(true);
  });
});
