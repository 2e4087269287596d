/**
 * Hot reload, the changes that must not restart anything: a schedule edit
 * (interval 2 s → 1 s) and a scale edit (processes 1 → 3 → 1), made by saving
 * the typology file in the master's workspace. Real master, real worker,
 * real stage processes; the bocca file tells what arrived and through which
 * process.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTempDir, pollUntil, sleep, startMaster, startWorker, useProcessCleanup } from '../helpers/processes.js';
import {
  describeT,
  getRuns,
  logsWith,
  procIds,
  readJsonl,
  saveInPlace,
  stopAndCheckNothingLost,
  typologyYaml,
  waitForLog,
  waitReady,
  writeWorkspace,
  type Described,
  type RunRow,
} from '../helpers/reload-fixtures.js';

useProcessCleanup('each');

/** Waits until the wall clock is `phaseMs` past a multiple of `periodMs` (to save at a known point between ticks). */
async function alignTo(periodMs: number, phaseMs: number): Promise<void> {
  const now = Date.now();
  const wait = (phaseMs - (now % periodMs) + periodMs) % periodMs;
  await sleep(wait < 20 ? wait + periodMs : wait);
}

describe('hot reload: schedule and scale edits', () => {
  it('interval 2s → 1s: the next tick follows the new interval, applied within 1 s of the save; stage processes untouched', { timeout: 60_000 }, async () => {
    const ws = makeTempDir('reload-ticker');
    const yamlFile = path.join(ws, 'ticker.yaml');
    const outFile = path.join(ws, 'results', 'ticker.jsonl');
    const spec = { name: 'ticker', count: 3, notches: [{ name: 'tag' }] };
    writeWorkspace(ws, { 'ticker.yaml': typologyYaml({ ...spec, interval: '2s' }) });
    const master = await startMaster({ workspace: ws });
    await startWorker(master, 'a');
    await waitReady(master, 'ticker');

    // Two runs on the old schedule: 2 s apart, on even seconds.
    const old = await pollUntil(async () => {
      const rs = (await getRuns(master, 'ticker')).filter((r) => r.status === 'finished');
      return rs.length >= 2 ? rs : undefined;
    }, { timeoutMs: 15_000, what: 'two runs on the 2 s schedule', context: () => master.process.describe() });
    for (const r of old) expect(r.fireTime % 2000, `fire times of a 2 s interval: ${old.map((x) => x.fireTime)}`).toBe(0);

    const before = await describeT(master, 'ticker');
    const pidsBefore = new Set(readJsonl(outFile).map((i) => i.pids[0]));
    expect(pidsBefore.size).toBe(1);

    // Save 100 ms after an even second: the old schedule's next tick is 1.9 s
    // away, the new one's 0.9 s, so the first 1 s-spaced tick proves the change.
    await alignTo(2000, 100);
    const savedAt = saveInPlace(yamlFile, typologyYaml({ ...spec, interval: '1s' }));
    const configured = await waitForLog(master.process, 'typology configured', { typology: 'ticker', version: 2 });
    expect(configured).toMatchObject({ kind: 'schedule', changes: ['schedule.interval 2s → 1s'], source: 'edit' });
    expect(configured.time - savedAt, 'ms from the save to "typology configured"').toBeLessThan(1000);
    console.info(`interval 2s → 1s: configured ${configured.time - savedAt} ms after the save`);

    const after = await pollUntil(async () => {
      const rs = (await getRuns(master, 'ticker')).filter((r) => r.fireTime > savedAt);
      return rs.length >= 4 ? rs : undefined;
    }, { timeoutMs: 15_000, what: 'four runs after the save', context: () => master.process.describe() });
    const fires = after.map((r) => r.fireTime).sort((a, b) => a - b);
    // The first tick after the save is the next whole second after the change took effect…
    expect(fires[0], `first fire time after the save (saved at ${savedAt}, configured at ${configured.time})`).toBe(Math.ceil(configured.time / 1000) * 1000);
    // …which is within 1 s of the save, before the old schedule's next tick.
    expect(fires[0]! - savedAt).toBeLessThanOrEqual(1000);
    expect(fires.slice(1).map((f, i) => f - fires[i]!), 'spacing of the runs after the change').toEqual([1000, 1000, 1000]);

    // Nothing restarted: the same processes (ids in describe, pids in the items).
    const afterDescribe = await describeT(master, 'ticker');
    expect(procIds(afterDescribe)).toEqual(procIds(before));
    expect(afterDescribe.stages.flatMap((s) => s.processes).every((p) => p.state === 'ready')).toBe(true);
    const pidsAfter = new Set(readJsonl(outFile).map((i) => i.pids[0]));
    expect(pidsAfter).toEqual(pidsBefore);
    expect(afterDescribe.history.at(-1)).toMatchObject({ version: 2, source: 'edit', kind: 'schedule', changes: ['schedule.interval 2s → 1s'] });
    expect(logsWith(master.process, 'process placed', { typology: 'ticker' }), 'processes placed: only the first three').toHaveLength(3);
    expect(logsWith(master.process, 'version retired', { typology: 'ticker' })).toEqual([]);
  });

  it('processes 1 → 3 → 1 of a notch: describe shows 3 then 1; other stages untouched; no item lost or doubled', { timeout: 90_000 }, async () => {
    const ws = makeTempDir('reload-scaler');
    const yamlFile = path.join(ws, 'scaler.yaml');
    const outFile = path.join(ws, 'results', 'scaler.jsonl');
    const COUNT = 30;
    // 30 items × 50 ms, 2 threads: a run takes ~0.75 s on one process, ~0.25 s on three.
    const spec = (processes: number) => typologyYaml({ name: 'scaler', interval: '1s', count: COUNT, notches: [{ name: 'work', function: 'slow', processes, threads: 2 }] });
    writeWorkspace(ws, { 'scaler.yaml': spec(1) }, { slowMs: 50 });
    const master = await startMaster({ workspace: ws });
    await startWorker(master, 'a');
    await waitReady(master, 'scaler');
    await pollUntil(async () => (await getRuns(master, 'scaler')).some((r) => r.status === 'finished'), { timeoutMs: 15_000, what: 'a first run', context: () => master.process.describe() });
    const d1 = await describeT(master, 'scaler');
    const work1 = procIds(d1).work!;
    expect(work1).toHaveLength(1);

    // Up: 1 → 3, saved while a run is in progress.
    await alignTo(1000, 100);
    saveInPlace(yamlFile, spec(3));
    const up = await waitForLog(master.process, 'typology configured', { typology: 'scaler', version: 2 });
    expect(up).toMatchObject({ kind: 'scale', changes: ['notches[work].processes 1 → 3'] });
    const d3 = await pollUntil(async () => {
      const d = await describeT(master, 'scaler');
      const work = d.stages.find((s) => s.name === 'work')!;
      return work.processes.length === 3 && work.processes.every((p) => p.state === 'ready') ? d : undefined;
    }, { timeoutMs: 20_000, what: 'three ready processes of work', context: () => master.process.describe() });
    expect(d3.stages.find((s) => s.name === 'work')!.desired).toBe('3×2');
    expect(procIds(d3).work).toEqual(expect.arrayContaining(work1));
    const others = (d: Described) => Object.entries(procIds(d)).filter(([stage]) => stage !== 'work');
    expect(others(d3), 'hydrant and bocca processes').toEqual(others(d1));
    // The three really work: items come out stamped by three pids.
    await pollUntil(() => new Set(readJsonl(outFile).map((i) => i.pids[0])).size >= 3 || undefined, {
      timeoutMs: 15_000,
      what: 'items handled by three work processes',
      context: () => `${[...new Set(readJsonl(outFile).map((i) => i.pids[0]))]}`,
    });

    // Down: 3 → 1, saved right after a tick, while items are in flight on the processes that go.
    await alignTo(1000, 60);
    saveInPlace(yamlFile, spec(1));
    const down = await waitForLog(master.process, 'typology configured', { typology: 'scaler', version: 3 });
    expect(down).toMatchObject({ kind: 'scale', changes: ['notches[work].processes 3 → 1'] });
    const d1again = await pollUntil(async () => {
      const d = await describeT(master, 'scaler');
      const work = d.stages.find((s) => s.name === 'work')!;
      return work.processes.length === 1 && work.processes[0]!.state === 'ready' ? d : undefined;
    }, { timeoutMs: 20_000, what: 'work back to one process', context: () => master.process.describe() });
    expect(d1again.stages.find((s) => s.name === 'work')!.desired).toBe('1×2');
    expect(others(d1again), 'hydrant and bocca processes').toEqual(others(d1));
    // A couple more runs on one process, then stop and count.
    const lastRun = Math.max(...(await getRuns(master, 'scaler')).map((r: RunRow) => r.id));
    await pollUntil(async () => (await getRuns(master, 'scaler')).some((r) => r.id >= lastRun + 2 && r.status === 'finished'), { timeoutMs: 15_000, what: 'two more runs on one process' });

    const { runs } = await stopAndCheckNothingLost(master, 'scaler', outFile, COUNT);
    expect(runs.length).toBeGreaterThanOrEqual(5);
    const d = await describeT(master, 'scaler');
    expect(d.history.map((h) => [h.version, h.source, h.kind])).toEqual([
      [1, 'start', 'created'],
      [2, 'edit', 'scale'],
      [3, 'edit', 'scale'],
    ]);
    expect(logsWith(master.process, 'requeued the items of a lost process')).toEqual([]);
    expect(logsWith(master.process, 'stage process ended')).toEqual([]);
  });
});
