/**
 * Hot reload and the file system: how editors save (in place, temp file then
 * rename, vim's backup dance, swap/backup/autosave files, bursts of saves, a
 * slow two-part write, delete-and-recreate) and what happens to typology
 * files as files (deleted, renamed, duplicated).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliJson, makeTempDir, pollUntil, runCli, sleep, startMaster, startWorker, useProcessCleanup, type MasterHandle, type WorkerRow } from '../helpers/processes.js';
import {
  checkDelivery,
  describeT,
  getRuns,
  getTypologies,
  logLines,
  logsWith,
  procIds,
  readJsonl,
  saveByRename,
  saveInPlace,
  saveInTwoParts,
  saveVimStyle,
  typologyYaml,
  waitForLog,
  waitReady,
  writeWorkspace,
} from '../helpers/reload-fixtures.js';

useProcessCleanup('each');

/** A typology that never fires on its own (hour-long interval): only its reloads matter here. */
const quiet = (name: string, interval: string) => typologyYaml({ name, interval, count: 3, notches: [{ name: 'tag' }] });

async function startWith(files: Record<string, string>, ready: string[]): Promise<{ master: MasterHandle; ws: string }> {
  const ws = makeTempDir('reload-files');
  writeWorkspace(ws, files);
  const master = await startMaster({ workspace: ws });
  await startWorker(master, 'a');
  for (const name of ready) await waitReady(master, name);
  return { master, ws };
}

const versionsOf = async (master: MasterHandle, name: string) => (await describeT(master, name)).history.map((h) => [h.version, h.source, h.changes.join('; ')]);

describe("hot reload: editors' save patterns", () => {
  it('temp-then-rename and vim-style saves are picked up; swap, backup and autosave files are ignored', { timeout: 60_000 }, async () => {
    const { master, ws } = await startWith({ 'ed.yaml': quiet('ed', '1h') }, ['ed']);
    const file = path.join(ws, 'ed.yaml');
    const procs = procIds(await describeT(master, 'ed'));

    // VS Code style: a hidden temp file renamed over the original.
    saveByRename(file, quiet('ed', '2h'));
    await waitForLog(master.process, 'typology configured', { typology: 'ed', version: 2 });
    // JetBrains style: write NAME___jb_tmp___, move the original to NAME___jb_old___, rename, delete.
    fs.writeFileSync(`${file}___jb_tmp___`, quiet('ed', '3h'));
    fs.renameSync(file, `${file}___jb_old___`);
    fs.renameSync(`${file}___jb_tmp___`, file);
    fs.rmSync(`${file}___jb_old___`);
    await waitForLog(master.process, 'typology configured', { typology: 'ed', version: 3 });
    // vim (backupcopy=no): the original becomes ed.yaml~, a new ed.yaml is written, the backup removed.
    saveVimStyle(file, quiet('ed', '4h'));
    await waitForLog(master.process, 'typology configured', { typology: 'ed', version: 4 });

    // Swap, backup and autosave files — even valid typologies under other names — are not typology files.
    fs.writeFileSync(path.join(ws, '.ed.yaml.swp'), Buffer.from([0x62, 0x30, 0x56, 0x49, 0x4d, 0x20, 0x37, 0x2e, 0x34, 0x00, 0xff, 0xfe]));
    fs.writeFileSync(path.join(ws, 'ed.yaml~'), quiet('ghost-backup', '1h'));
    fs.writeFileSync(path.join(ws, '#ed.yaml#'), quiet('ghost-autosave', '1h'));
    fs.writeFileSync(path.join(ws, '.#ed.yaml'), quiet('ghost-lock', '1h'));
    fs.writeFileSync(path.join(ws, '4913'), '');
    // A real save afterwards: its reload sees all of them.
    saveInPlace(file, quiet('ed', '5h'));
    await waitForLog(master.process, 'typology configured', { typology: 'ed', version: 5 });
    const rows = await getTypologies(master);
    expect(rows.map((r) => [r.name, r.status, r.error ?? null])).toEqual([['ed', 'running', null]]);

    expect(await versionsOf(master, 'ed')).toEqual([
      [1, 'start', ''],
      [2, 'edit', 'schedule.interval 1h → 2h'],
      [3, 'edit', 'schedule.interval 2h → 3h'],
      [4, 'edit', 'schedule.interval 3h → 4h'],
      [5, 'edit', 'schedule.interval 4h → 5h'],
    ]);
    // Each save was one reload: one "configured" each, never removed or re-created, nothing restarted.
    expect(logsWith(master.process, 'typology configured', { typology: 'ed' })).toHaveLength(4);
    expect(logsWith(master.process, 'typology removed; draining')).toEqual([]);
    expect(logsWith(master.process, 'typology created')).toHaveLength(1);
    expect(logsWith(master.process, 'invalid typology file')).toEqual([]);
    expect(procIds(await describeT(master, 'ed'))).toEqual(procs);
  });

  it('a burst of 20 saves within ~1 s is one reload; a file written in two parts is applied once, whole', { timeout: 60_000 }, async () => {
    const { master, ws } = await startWith({ 'burst.yaml': quiet('burst', '20s') }, ['burst']);
    const file = path.join(ws, 'burst.yaml');

    const savedAt: number[] = [];
    for (let i = 1; i <= 20; i++) {
      // Alternate in-place writes and rename-over saves, ~50 ms apart.
      if (i % 2 === 0) savedAt.push(saveInPlace(file, quiet('burst', `${20 + i}s`)));
      else savedAt.push(saveByRename(file, quiet('burst', `${20 + i}s`)));
      if (i < 20) await sleep(50);
    }
    const gaps = savedAt.slice(1).map((t, i) => t - savedAt[i]!);
    // The debounce is 150 ms: a burst with no gap that long must be one reload.
    expect(Math.max(...gaps), `gaps between the saves: ${gaps}`).toBeLessThan(120);
    const configured = await waitForLog(master.process, 'typology configured', { typology: 'burst', version: 2 });
    expect(configured.changes, `one reload for the whole burst (saves at +${savedAt.map((t) => t - savedAt[0]!)} ms, reload at +${configured.time - savedAt[0]!} ms)`).toEqual(['schedule.interval 20s → 40s']);

    // A slow writer: half the file, a 40 ms pause, the rest. Never applied as the (invalid) half.
    await saveInTwoParts(file, quiet('burst', '50s'), 40);
    const whole = await waitForLog(master.process, 'typology configured', { typology: 'burst', version: 3 });
    expect(whole.changes).toEqual(['schedule.interval 40s → 50s']);

    expect(await versionsOf(master, 'burst')).toEqual([
      [1, 'start', ''],
      [2, 'edit', 'schedule.interval 20s → 40s'],
      [3, 'edit', 'schedule.interval 40s → 50s'],
    ]);
    expect(logsWith(master.process, 'typology configured', { typology: 'burst' })).toHaveLength(2);
    expect(logsWith(master.process, 'invalid edit; the last good version keeps running')).toEqual([]);
    expect(logsWith(master.process, 'typology removed; draining')).toEqual([]);
  });

  it('a file deleted and recreated within a second keeps its typology (not removed, same processes)', { timeout: 60_000 }, async () => {
    const { master, ws } = await startWith({ 'phoenix.yaml': typologyYaml({ name: 'phoenix', interval: '1s', count: 3, notches: [{ name: 'tag' }] }) }, ['phoenix']);
    const file = path.join(ws, 'phoenix.yaml');
    const before = await describeT(master, 'phoenix');

    fs.rmSync(file);
    await sleep(500); // the gap between delete and re-create is what is under test
    const recreatedAt = saveInPlace(file, typologyYaml({ name: 'phoenix', interval: '2s', count: 3, notches: [{ name: 'tag' }] }));
    // The reload that saw the new file: configured (right), or created again after a removal (wrong).
    const reloaded = await pollUntil(
      () => logLines(master.process).find((l) => l.typology === 'phoenix' && l.time >= recreatedAt && ['typology configured', 'typology created', 'typology resumed'].includes(l.msg)),
      { timeoutMs: 10_000, intervalMs: 25, what: 'the reload of the re-created file', context: () => master.process.describe() },
    );
    expect(logsWith(master.process, 'typology removed; draining', { typology: 'phoenix' }), 'the typology was removed in between').toEqual([]);
    expect(reloaded).toMatchObject({ msg: 'typology configured', version: 2, changes: ['schedule.interval 1s → 2s'] });
    const after = await describeT(master, 'phoenix');
    expect(after.history.map((h) => [h.version, h.kind])).toEqual([
      [1, 'created'],
      [2, 'schedule'],
    ]);
    expect(procIds(after)).toEqual(procIds(before));
    const run = await pollUntil(async () => (await getRuns(master, 'phoenix')).find((r) => r.fireTime > recreatedAt && r.status === 'finished'), { timeoutMs: 10_000, what: 'a run after the re-create' });
    expect(run.fireTime % 2000).toBe(0);
  });
});

describe('hot reload: typology files deleted, renamed, duplicated', () => {
  it('file deleted: the typology drains (queued items still arrive) and is removed', { timeout: 60_000 }, async () => {
    const COUNT = 200;
    const yaml = typologyYaml({ name: 'gone', startTime: '2099-01-01 00:00:00', count: COUNT, notches: [{ name: 'work', function: 'slow', threads: 2 }] });
    const { master, ws } = await startWith({ 'gone.yaml': yaml }, ['gone']);
    const outFile = path.join(ws, 'results', 'gone.jsonl');
    const t = await runCli(['trigger', 'gone', '--master', master.address]);
    expect(t.code, t.describe()).toBe(0);
    await pollUntil(() => readJsonl(outFile).length >= 20 || undefined, { timeoutMs: 15_000, intervalMs: 50, what: 'the first items through' });

    fs.rmSync(path.join(ws, 'gone.yaml'));
    await waitForLog(master.process, 'typology removed; draining', { typology: 'gone' });
    const atRemoval = readJsonl(outFile).length;
    expect(atRemoval, 'items were still queued when the file went').toBeLessThan(COUNT);
    await waitForLog(master.process, 'version retired', { typology: 'gone' }, { timeoutMs: 20_000 });

    const items = readJsonl(outFile);
    const delivery = checkDelivery(items, COUNT);
    expect(delivery.duplicates).toEqual([]);
    expect(delivery.incomplete).toEqual([]);
    expect(items).toHaveLength(COUNT);
    expect((await getTypologies(master)).map((r) => r.name)).toEqual([]);
    const d = await runCli(['describe', 'gone', '--master', master.address]);
    expect(d.code, d.describe()).not.toBe(0);
    expect(d.stderr).toContain('no typology named "gone"');
    // Its processes are stopped: the worker runs nothing any more.
    await pollUntil(async () => (await cliJson<WorkerRow[]>(['get', 'workers'], master.address)).every((w) => w.processes === 0), { timeoutMs: 10_000, what: 'the worker to run no process', context: () => master.process.describe() });
  });

  it('renamed with the same name inside: same typology, no new version, nothing restarted', { timeout: 60_000 }, async () => {
    const { master, ws } = await startWith({ 'ren.yaml': typologyYaml({ name: 'ren', interval: '1s', count: 3, notches: [{ name: 'tag' }] }) }, ['ren']);
    const before = await describeT(master, 'ren');
    const renamedAt = Date.now();
    fs.renameSync(path.join(ws, 'ren.yaml'), path.join(ws, 'renamed.yaml'));
    const after = await pollUntil(async () => {
      const d = await describeT(master, 'ren');
      return d.file === path.join(ws, 'renamed.yaml') ? d : undefined;
    }, { timeoutMs: 10_000, what: 'describe to show the new file name', context: () => master.process.describe() });
    expect(after.history).toEqual(before.history);
    expect(procIds(after)).toEqual(procIds(before));
    expect(logsWith(master.process, 'typology removed; draining')).toEqual([]);
    expect(logsWith(master.process, 'typology created')).toHaveLength(1);
    const run = await pollUntil(async () => (await getRuns(master, 'ren')).find((r) => r.fireTime > renamedAt && r.status === 'finished'), { timeoutMs: 10_000, what: 'a run after the rename' });
    expect(run).toMatchObject({ version: 1, in: 3, out: 3 });
  });

  it('two files declare the same name: a conflict error on the second; the first keeps running and keeps taking edits', { timeout: 60_000 }, async () => {
    const original = (interval: string) => typologyYaml({ name: 'twin', interval, count: 3, notches: [{ name: 'tag' }] });
    const { master, ws } = await startWith({ 'twin.yaml': original('1s') }, ['twin']);
    const first = path.join(ws, 'twin.yaml');
    // Sorts before the running one: "first" means the one already running, not the first by name.
    const second = path.join(ws, 'a-twin.yaml');
    const before = await describeT(master, 'twin');

    const savedAt = saveInPlace(second, original('5s'));
    await waitForLog(master.process, 'two files declare the same typology; the first one keeps running', { typology: 'twin', file: second });
    const conflict = await pollUntil(async () => (await getTypologies(master)).find((r) => r.file === second), { timeoutMs: 10_000, what: 'a row for the second file' });
    expect(conflict.status).toBe('invalid');
    expect(conflict.error).toBe(`${second}:1:1: typology "twin" is already defined in ${first}; rename one of them (at name)`);
    const twin = (await getTypologies(master)).find((r) => r.name === 'twin')!;
    expect(twin).toMatchObject({ file: first, version: 1, status: 'running' });
    const during = await describeT(master, 'twin');
    expect(during.history).toEqual(before.history);
    expect(procIds(during)).toEqual(procIds(before));
    await pollUntil(async () => (await getRuns(master, 'twin')).find((r) => r.fireTime > savedAt && r.status === 'finished'), { timeoutMs: 10_000, what: 'a run with the twin present' });

    // The first file still takes edits; the second stays refused.
    saveInPlace(first, original('2s'));
    const configured = await waitForLog(master.process, 'typology configured', { typology: 'twin', version: 2 });
    expect(configured.changes).toEqual(['schedule.interval 1s → 2s']);
    expect((await getTypologies(master)).find((r) => r.file === second)?.status).toBe('invalid');

    // Remove the duplicate: the error goes, the typology is as it was.
    fs.rmSync(second);
    await pollUntil(async () => !(await getTypologies(master)).some((r) => r.file === second), { timeoutMs: 10_000, what: 'the conflict row to go' });
    const rows = await getTypologies(master);
    expect(rows.map((r) => [r.name, r.file, r.status])).toEqual([['twin', first, 'running']]);
    expect(logsWith(master.process, 'typology removed; draining')).toEqual([]);
  });
});
