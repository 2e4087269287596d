/**
 * A master and two workers as separate processes; `rezina apply` of
 * numericalcalc (a temp copy), a triggered run, `describe` / `get`, re-apply
 * (unchanged), a scale change (configured, with the change line), and invalid
 * files refused without touching what runs.
 *
 * The tests of this file share one master and build on each other, in order.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  E2E_FIXTURES,
  cliJson,
  describeJson,
  copyExample,
  editYaml,
  makeTempDir,
  pollUntil,
  runCli,
  startMaster,
  startWorker,
  useProcessCleanup,
  type CliProcess,
  type MasterHandle,
  type WorkerRow,
} from '../helpers/processes.js';

useProcessCleanup('all');

interface RunRow {
  id: number;
  typology: string;
  version: number;
  status: 'running' | 'finished';
  startedAt: number;
  in: number;
  out: number;
  dropped: number;
  failed: number;
  errors: string[];
}

interface TypologyRow {
  name: string;
  file: string;
  version: number;
  status: string;
  processes: string;
  error?: string;
}

interface Described {
  name: string;
  version: number;
  history: Array<{ version: number; source: string; kind: string; changes: string[] }>;
  stages: Array<{ name: string; role: string; desired?: string; processes: Array<{ id: string; worker?: string; state: string }> }>;
}

/** The 40 values one numericalcalc run writes: 2(n+1) for n in 0..49, multiples of ten dropped. */
const EXPECTED_VALUES = new Set(Array.from({ length: 50 }, (_, n) => 2 * (n + 1)).filter((v) => v % 10 !== 0));

describe('master + two workers: apply, run, describe, reconfigure', () => {
  let master: MasterHandle;
  let workerA: CliProcess;
  let workerB: CliProcess;
  /** Where `apply -f` reads from (not the master's workspace). */
  let srcDir: string;
  let srcYaml: string;
  /** The YAML as last applied successfully. */
  let appliedText: string;

  const context = () => [master.process, workerA, workerB].map((p) => p.describe()).join('\n');
  const describeTypology = () => describeJson<Described>('numericalcalc', master.address);

  beforeAll(async () => {
    master = await startMaster();
    [workerA, workerB] = await Promise.all([startWorker(master, 'a'), startWorker(master, 'b')]);
    srcDir = makeTempDir('apply-src');
    srcYaml = copyExample('numericalcalc', srcDir);
    // Runs only when triggered: the first scheduled run is in 2099, so the
    // test knows exactly which rows one run wrote.
    editYaml(srcYaml, (doc) => doc.setIn(['schedule', 'startTime'], '2099-01-01 00:00:00'));
    appliedText = fs.readFileSync(srcYaml, 'utf8');
  }, 60_000);

  it('apply prints created; a triggered run writes exactly the 40 expected rows', { timeout: 60_000 }, async () => {
    const r = await runCli(['apply', '-f', srcYaml, '--master', master.address]);
    expect(r.code, r.describe()).toBe(0);
    expect(r.stdout).toBe('typology/numericalcalc created\n');

    // The applied files land in the master's workspace.
    expect(fs.readFileSync(path.join(master.workspace, 'numericalcalc', 'numericalcalc.yaml'), 'utf8')).toBe(appliedText);
    expect(fs.existsSync(path.join(master.workspace, 'numericalcalc', 'numericalcalc.ts'))).toBe(true);

    await pollUntil(
      async () => (await cliJson<TypologyRow[]>(['get', 'typologies'], master.address)).find((t) => t.name === 'numericalcalc' && t.processes === '19/19'),
      { timeoutMs: 40_000, what: 'all 19 processes of numericalcalc to be ready', context },
    );
    expect(await cliJson<RunRow[]>(['get', 'runs'], master.address)).toEqual([]);

    const t = await runCli(['trigger', 'numericalcalc', '--master', master.address]);
    expect(t.code, t.describe()).toBe(0);
    expect(JSON.parse(t.stdout)).toEqual({ run: 1 });

    const run = await pollUntil(
      async () => (await cliJson<RunRow[]>(['get', 'runs', 'numericalcalc'], master.address)).find((x) => x.id === 1 && x.status === 'finished'),
      { timeoutMs: 30_000, what: 'run 1 to finish', context },
    );
    expect(run).toMatchObject({ typology: 'numericalcalc', version: 1, in: 50, out: 40, dropped: 10, failed: 0, errors: [] });

    const db = new Database(path.join(master.workspace, 'numericalcalc', 'results', 'numericalcalc.sqlite'), { readonly: true });
    try {
      const rows = db.prepare('SELECT n, value FROM results').all() as Array<{ n: number; value: number }>;
      expect(rows).toHaveLength(40);
      expect(new Set(rows.map((x) => x.value))).toEqual(EXPECTED_VALUES);
    } finally {
      db.close();
    }
  });

  it('describe places processes on both workers; get workers lists both, busy', { timeout: 30_000 }, async () => {
    const d = await describeTypology();
    const procs = d.stages.flatMap((s) => s.processes);
    expect(procs).toHaveLength(19);
    expect(new Set(procs.map((p) => p.worker))).toEqual(new Set(['a', 'b']));
    expect(procs.every((p) => p.state === 'ready')).toBe(true);
    expect(d.stages.map((s) => [s.name, s.processes.length])).toEqual([
      ['numbers', 1],
      ['addOne', 10],
      ['multiplyByTwo', 5],
      ['discardMultiplesOfTen', 2],
      ['bocca', 1],
    ]);

    const workers = await cliJson<WorkerRow[]>(['get', 'workers'], master.address);
    expect(workers.map((w) => w.name).sort()).toEqual(['a', 'b']);
    for (const w of workers) expect(w.processes, JSON.stringify(workers)).toBeGreaterThan(0);
    expect(workers.reduce((n, w) => n + w.processes, 0)).toBe(19);
    expect(workers.find((w) => w.name === 'a')!.pid).toBe(workerA.pid);
    expect(workers.find((w) => w.name === 'b')!.pid).toBe(workerB.pid);
  });

  it('re-applying the same file is unchanged; a new process count is configured, with the change', { timeout: 60_000 }, async () => {
    const same = await runCli(['apply', '-f', srcYaml, '--master', master.address]);
    expect(same.code, same.describe()).toBe(0);
    expect(same.stdout).toBe('typology/numericalcalc unchanged\n');

    editYaml(srcYaml, (doc) => doc.setIn(['notches', 0, 'processes'], 4));
    const scaled = await runCli(['apply', '-f', srcYaml, '--master', master.address]);
    expect(scaled.code, scaled.describe()).toBe(0);
    expect(scaled.stdout).toBe('typology/numericalcalc configured\n  notches[addOne].processes 10 → 4\n');
    appliedText = fs.readFileSync(srcYaml, 'utf8');

    // The scale-down happens: six addOne processes drain away, nothing else restarts.
    const d = await pollUntil(
      async () => {
        const x = await describeTypology();
        const addOne = x.stages.find((s) => s.name === 'addOne')!;
        return addOne.processes.length === 4 && addOne.processes.every((p) => p.state === 'ready') ? x : undefined;
      },
      { timeoutMs: 20_000, what: 'addOne to run 4 processes', context },
    );
    expect(d.stages.find((s) => s.name === 'addOne')!.desired).toBe('4×5');
    expect(d.history.at(-1)).toMatchObject({ version: 2, source: 'apply', kind: 'scale', changes: ['notches[addOne].processes 10 → 4'] });
    const rows = await cliJson<TypologyRow[]>(['get', 'typologies'], master.address);
    expect(rows.find((t) => t.name === 'numericalcalc')).toMatchObject({ status: 'running', processes: '13/13' });
    // The version a typology shows is the one applied last (SPEC: "Every typology shows its applied version").
    expect({ describe: d.version, getTypologies: rows.find((t) => t.name === 'numericalcalc')!.version }).toEqual({ describe: 2, getTypologies: 2 });
  });

  describe('invalid files are refused and the running typology is untouched', () => {
    let badDir: string;
    /** What the master showed before the refused applies. */
    let before: { row: TypologyRow; history: Described['history'] };
    beforeAll(async () => {
      const rows = await cliJson<TypologyRow[]>(['get', 'typologies'], master.address);
      before = { row: rows.find((t) => t.name === 'numericalcalc')!, history: (await describeTypology()).history };
      expect(before.row).toMatchObject({ status: 'running', processes: '13/13' });
      badDir = makeTempDir('apply-bad');
      for (const f of ['numericalcalc-invalid.yaml', 'numericalcalc-missing-function.yaml']) fs.copyFileSync(path.join(E2E_FIXTURES, 'apply', f), path.join(badDir, f));
      fs.copyFileSync(path.join(srcDir, 'numericalcalc.ts'), path.join(badDir, 'numericalcalc.ts'));
    });

    const cases = [
      {
        file: 'numericalcalc-invalid.yaml',
        errors: (f: string) => [
          `${f}:14:5: unknown field "thread" — did you mean "threads"? (at notches[0].thread)`,
          `${f}:19:16: processes must be a whole number from 1 to 1000, got 0 (at notches[1].processes)`,
        ],
      },
      {
        file: 'numericalcalc-missing-function.yaml',
        errors: (f: string) => [
          `${f}:11:15: function "addTwo" is not exported by numericalcalc.ts (it exports addOne, discardMultiplesOfTen, multiplyByTwo, numbers) (at notches[0].function)`,
        ],
      },
    ];

    for (const c of cases) {
      it(`apply -f ${c.file}: exit 2, the same file:line:col errors as validate, nothing changes`, { timeout: 40_000 }, async () => {
        const file = path.join(badDir, c.file);
        const expected = c.errors(file);

        const v = await runCli(['validate', file]);
        expect(v.code, v.describe()).toBe(2);
        const validateLines = v.stderr.split('\n').filter((l) => l.startsWith(file));
        expect(validateLines).toEqual(expected);

        const r = await runCli(['apply', '-f', file, '--master', master.address]);
        expect(r.code, r.describe()).toBe(2);
        expect(r.stdout, r.describe()).toBe('');
        expect(r.stderr.split('\n').filter((l) => l.startsWith(file)), r.describe()).toEqual(expected);
        expect(r.stderr).toMatch(/^error: .*nothing was applied/m);

        // What runs is what ran before.
        const rows = await cliJson<TypologyRow[]>(['get', 'typologies'], master.address);
        expect(rows).toHaveLength(1);
        // Same version, status, process count, applied-at; no error recorded.
        expect(rows[0]).toEqual(before.row);
        expect(rows[0]!.error ?? undefined).toBeUndefined();
        expect(fs.readFileSync(path.join(master.workspace, 'numericalcalc', 'numericalcalc.yaml'), 'utf8')).toBe(appliedText);
        const d = await describeTypology();
        expect(d.history).toEqual(before.history);
        expect(d.stages.find((s) => s.name === 'addOne')!.desired).toBe('4×5');
      });
    }

    it('the typology still runs after the refused applies', { timeout: 30_000 }, async () => {
      const t = await runCli(['trigger', 'numericalcalc', '--master', master.address]);
      expect(t.code, t.describe()).toBe(0);
      const run = await pollUntil(
        async () => (await cliJson<RunRow[]>(['get', 'runs', 'numericalcalc'], master.address)).find((x) => x.id === 2 && x.status === 'finished'),
        { timeoutMs: 25_000, what: 'run 2 to finish', context },
      );
      expect(run).toMatchObject({ in: 50, out: 40, dropped: 10, failed: 0 });
      expect(master.process.running).toBe(true);
      expect(workerA.running && workerB.running).toBe(true);
    });

    it('an invalid edit saved in the workspace shows the same errors and keeps the last good version', { timeout: 30_000 }, async () => {
      const wsYaml = path.join(master.workspace, 'numericalcalc', 'numericalcalc.yaml');
      fs.copyFileSync(path.join(badDir, 'numericalcalc-invalid.yaml'), wsYaml);
      const row = await pollUntil(
        async () => (await cliJson<TypologyRow[]>(['get', 'typologies'], master.address)).find((t) => t.name === 'numericalcalc' && t.status !== 'running'),
        { timeoutMs: 10_000, what: 'the master to notice the invalid edit', context },
      );
      expect(row).toMatchObject({ version: before.row.version, status: 'degraded: invalid spec', processes: '13/13' });
      expect(row.error!.split('\n')).toEqual(cases[0]!.errors(wsYaml));

      fs.writeFileSync(wsYaml, appliedText);
      const back = await pollUntil(
        async () => (await cliJson<TypologyRow[]>(['get', 'typologies'], master.address)).find((t) => t.name === 'numericalcalc' && t.status === 'running'),
        { timeoutMs: 10_000, what: 'the typology to be valid again', context },
      );
      expect(back).toEqual(before.row);
    });
  });
});
