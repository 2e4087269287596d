/**
 * Hot reload, a structural change: a notch inserted by saving the typology
 * file while 10,000 items of a run are flowing (queues bounded, so items wait
 * in the queues and in the hydrant when the save lands). The typology moves
 * to a new version; the old one drains and is retired.
 *
 * The notches stamp each item with `stage@vVERSION` and the recording bocca
 * with `bocca@vVERSION`, so each line of the output names the whole chain the
 * item went through: the old one (a@v1 → bocca@v1) or the new one
 * (a@v2 → b@v2 → bocca@v2), never a mix.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTempDir, pollUntil, runCli, startMaster, startWorker, useProcessCleanup } from '../helpers/processes.js';
import {
  checkDelivery,
  describeT,
  getRuns,
  readJsonl,
  recordingBoccaModule,
  saveInPlace,
  typologyYaml,
  waitForLog,
  waitReady,
  writeWorkspace,
  type Described,
  type OutItem,
} from '../helpers/reload-fixtures.js';

useProcessCleanup('each');

const COUNT = 10_000;

describe('hot reload: a notch inserted mid-stream', () => {
  it('while 10,000 items flow: every id arrives exactly once, each through the old chain or the new one, never mixed', { timeout: 90_000 }, async () => {
    const ws = makeTempDir('reload-flow');
    const yamlFile = path.join(ws, 'flow.yaml');
    const outFile = path.join(ws, 'results', 'flow.jsonl');
    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    const spec = (notches: Array<{ name: string; function?: string; threads?: number }>) =>
      typologyYaml({
        name: 'flow',
        // Runs only when triggered, so the test knows which run is which version's.
        startTime: '2099-01-01 00:00:00',
        hydrant: 'stream',
        count: COUNT,
        notches,
        bocca: { backend: 'module', module: 'recorder.ts', mode: 'batch', size: 200, linger: '20ms' },
        queueCapacity: 500,
      });
    // `a` takes ~2 ms an item, 8 at a time: a 10,000-item run takes a few seconds.
    writeWorkspace(ws, { 'flow.yaml': spec([{ name: 'a', function: 'slow', threads: 8 }]), 'recorder.ts': recordingBoccaModule(outFile) }, { slowMs: 2 });
    const master = await startMaster({ workspace: ws });
    await startWorker(master, 'a');
    await waitReady(master, 'flow');

    const t1 = await runCli(['trigger', 'flow', '--master', master.address]);
    expect(t1.code, t1.describe()).toBe(0);
    await pollUntil(() => readJsonl(outFile).length >= 1000 || undefined, { timeoutMs: 20_000, intervalMs: 50, what: '1,000 items of run 1 through', context: () => master.process.describe() });

    // Insert notch b after a, while run 1 is mid-stream.
    saveInPlace(yamlFile, spec([{ name: 'a', function: 'slow', threads: 8 }, { name: 'b', function: 'tag' }]));
    const configured = await waitForLog(master.process, 'typology configured', { typology: 'flow', version: 2 });
    expect(configured).toMatchObject({ kind: 'version', source: 'edit' });
    expect(configured.changes).toEqual(expect.arrayContaining([expect.stringMatching(/^notchOrder a → a → b$/)]));
    const atSwitch = readJsonl(outFile).length;
    const during: Described = await describeT(master, 'flow');
    // Evidence the switch happened mid-stream: run 1 was not through, v1 still held items.
    expect(atSwitch, 'items of run 1 through when v2 was configured').toBeLessThan(COUNT);
    const runsAtSwitch = await getRuns(master, 'flow');
    expect(runsAtSwitch.find((r) => r.id === 1)?.status).toBe('running');

    const t2 = await runCli(['trigger', 'flow', '--master', master.address]);
    expect(t2.code, t2.describe()).toBe(0);
    const runs = await pollUntil(async () => {
      const rs = await getRuns(master, 'flow');
      return rs.length === 2 && rs.every((r) => r.status === 'finished') ? rs : undefined;
    }, { timeoutMs: 45_000, what: 'both runs to finish', context: () => `${master.process.describe()}\nlines: ${readJsonl(outFile).length}` });
    await waitForLog(master.process, 'version retired', { typology: 'flow', version: 1 }, { timeoutMs: 15_000 });

    const items = readJsonl<OutItem>(outFile);
    const delivery = checkDelivery(items, COUNT);
    const report = {
      lines: items.length,
      unique: new Set(items.map((i) => i.id)).size,
      duplicates: delivery.duplicates.length,
      firstDuplicates: delivery.duplicates.slice(0, 5),
      incomplete: delivery.incomplete.map((x) => ({ tick: x.tick, missingFirst: x.missing })),
      runs: runs.map((r) => ({ id: r.id, version: r.version, in: r.in, out: r.out, failed: r.failed, dropped: r.dropped })),
      atSwitch,
      retiringAtSwitch: during.retiringVersions,
    };
    console.info(`notch inserted mid-stream: ${JSON.stringify(report)}`);
    expect(delivery.duplicates, `ids that arrived twice (${delivery.duplicates.length})`).toEqual([]);
    expect(delivery.incomplete, 'ids that never arrived').toEqual([]);
    expect(items.length).toBe(2 * COUNT);
    expect(runs.map((r) => [r.id, r.version, r.in, r.out, r.failed, r.dropped])).toEqual([
      [1, 1, COUNT, COUNT, 0, 0],
      [2, 2, COUNT, COUNT, 0, 0],
    ]);

    // Each item: exactly one whole chain. Run 1's tick went through v1, run 2's through v2.
    const chain = (i: OutItem) => [...i.via, i.bocca].join(' → ');
    const chains = new Map<string, number>();
    for (const i of items) chains.set(chain(i), (chains.get(chain(i)) ?? 0) + 1);
    expect(Object.fromEntries(chains)).toEqual({ 'a@v1 → bocca@v1': COUNT, 'a@v2 → b@v2 → bocca@v2': COUNT });
    for (const [tick, list] of delivery.byTick) {
      expect(new Set(list.map(chain)).size, `tick ${tick} went through one chain`).toBe(1);
    }

    const after = await describeT(master, 'flow');
    expect(after.retiringVersions).toEqual([]);
    expect(after.stages.map((s) => s.name)).toEqual(['stream', 'a', 'b', 'bocca']);
    expect(after.stages.flatMap((s) => s.processes).every((p) => p.id.startsWith('flow.v2.'))).toBe(true);
    expect(after.history.at(-1)).toMatchObject({ version: 2, source: 'edit', kind: 'version' });
  });
});
