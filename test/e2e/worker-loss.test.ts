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
/** The longest a killed worker's stages may take to run again elsewhere. */
const RECOVERY_MS = 5000;

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

    const results = path.join(master.workspace, 'results', 'slow.jsonl');
    const lines = () => (fs.existsSync(results) ? fs.readFileSync(results, 'utf8').split('\n').filter(Boolean).length : 0);
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

    const moved = await pollUntil(
      async () => {
        const d = await describeJson<Described>('slow', master.address);
        const procs = d.stages.flatMap((s) => s.processes);
        return procs.length === PROCESSES && procs.every((p) => p.worker === 'b' && p.state === 'ready') ? procs : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: 'every process of slow to run on worker b', context },
    );
    const recoveredAt = Date.now();
    const recoveryMs = recoveredAt - killedAt;
    expect(moved).toHaveLength(PROCESSES);
    if (process.env.REZINA_E2E_VERBOSE) console.info(`recovered in ${recoveryMs} ms`);
    expect(recoveryMs, `the killed worker's stages ran on b again after ${recoveryMs} ms`).toBeLessThan(RECOVERY_MS);

    const workers = await cliJson<WorkerRow[]>(['get', 'workers'], master.address);
    expect(workers.map((w) => ({ name: w.name, processes: w.processes }))).toEqual([{ name: 'b', processes: PROCESSES }]);

    // It keeps producing: runs that start after the recovery finish, with all their items written.
    const linesAtRecovery = lines();
    const later = await pollUntil(
      async () => {
        const finished = (await runs()).filter((r) => r.status === 'finished' && r.startedAt > recoveredAt);
        return finished.length >= 2 ? finished : undefined;
      },
      { timeoutMs: 20_000, what: 'two runs started after the recovery to finish', context },
    );
    for (const r of later) expect(r, JSON.stringify(r)).toMatchObject({ in: 8, out: 8, failed: 0, errors: [] });
    expect(lines()).toBeGreaterThanOrEqual(linesAtRecovery + 16);

    // Runs that were under way when the worker died still finish, and no item is lost.
    const before = (await runs()).filter((r) => r.startedAt < killedAt);
    const unfinished = await pollUntil(
      async () => {
        const all = (await runs()).filter((r) => r.startedAt < killedAt);
        return all.every((r) => r.status === 'finished') ? all : undefined;
      },
      { timeoutMs: 15_000, what: 'every run started before the kill to finish', context },
    );
    expect(unfinished.length).toBe(before.length);
    for (const r of unfinished) expect(r.out, JSON.stringify(r)).toBeGreaterThanOrEqual(r.in);

    // The killed worker's stage processes do not linger, and the rest stays up.
    await pollUntil(() => livePidsInGroup(a.pid).length === 0, {
      timeoutMs: 10_000,
      what: `the stage processes of the killed worker (process group ${a.pid}) to exit`,
    });
    expect(master.process.running, context()).toBe(true);
    expect(b.running, context()).toBe(true);
  });
});
