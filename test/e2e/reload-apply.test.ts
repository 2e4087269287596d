/**
 * `rezina apply -f`, `--dry-run` and `diff -f` against a running master: the
 * same path as a saved edit, from a directory outside the workspace. Invalid
 * files are refused with file:line:col errors (exit 2) and change nothing; a
 * module code edit takes effect with no item lost.
 *
 * The tests of this file share one master and build on each other, in order.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, pollUntil, runCli, startMaster, startWorker, useProcessCleanup, type CliProcess, type MasterHandle } from '../helpers/processes.js';
import {
  describeT,
  fixtureModule,
  getTypologies,
  logsWith,
  markModule,
  procIds,
  readJsonl,
  stopAndCheckNothingLost,
  typologyYaml,
  waitForLog,
  waitReady,
  type Described,
} from '../helpers/reload-fixtures.js';

useProcessCleanup('all');

const COUNT = 10;
/** hydrant fx.ts → tag (mark.ts) → file bocca. */
const spec = (o: { interval: string; processes?: number }) =>
  typologyYaml({ name: 'ap', interval: o.interval, count: COUNT, notches: [{ name: 'tag', module: 'mark.ts', processes: o.processes }] });

describe('rezina apply / diff / --dry-run', () => {
  let master: MasterHandle;
  let worker: CliProcess;
  /** Where apply reads from (not the master's workspace). */
  let src: string;
  let srcYaml: string;
  let wsYaml: string;
  let outFile: string;

  const apply = (...args: string[]) => runCli(['apply', '-f', ...args, '--master', master.address]);
  const context = () => `${master.process.describe()}\n${worker.describe()}`;

  beforeAll(async () => {
    master = await startMaster();
    worker = await startWorker(master, 'a');
    src = makeTempDir('apply-src');
    srcYaml = path.join(src, 'ap.yaml');
    fs.writeFileSync(path.join(src, 'fx.ts'), fixtureModule());
    fs.writeFileSync(path.join(src, 'mark.ts'), markModule('one'));
    fs.writeFileSync(srcYaml, spec({ interval: '2s' }));
    wsYaml = path.join(master.workspace, 'ap', 'ap.yaml');
    outFile = path.join(master.workspace, 'ap', 'results', 'ap.jsonl');
  }, 60_000);

  it('apply -f of a new file prints created and the typology runs', { timeout: 40_000 }, async () => {
    const r = await apply(srcYaml);
    expect(r.code, r.describe()).toBe(0);
    expect(r.stdout).toBe('typology/ap created\n');
    expect(fs.readFileSync(wsYaml, 'utf8')).toBe(fs.readFileSync(srcYaml, 'utf8'));
    await waitReady(master, 'ap');
    await pollUntil(() => readJsonl(outFile).length >= COUNT || undefined, { timeoutMs: 15_000, what: 'a first run through', context });
  });

  it('diff -f and apply --dry-run print the changes and change nothing', { timeout: 40_000 }, async () => {
    const before = await describeT(master, 'ap');
    const wsText = fs.readFileSync(wsYaml, 'utf8');
    fs.writeFileSync(srcYaml, spec({ interval: '1s', processes: 2 }));
    const changes = ['schedule.interval 2s → 1s', 'notches[tag].processes 1 → 2'];

    const diff = await runCli(['diff', '-f', srcYaml, '--master', master.address]);
    expect(diff.code, diff.describe()).toBe(0);
    expect(diff.stdout).toBe(`typology/ap: configured\n${changes.map((c) => `  ${c}\n`).join('')}`);

    const dry = await apply(srcYaml, '--dry-run');
    expect(dry.code, dry.describe()).toBe(0);
    expect(dry.stdout).toBe(`typology/ap configured (dry run)\n${changes.map((c) => `  ${c}\n`).join('')}`);

    const after = await describeT(master, 'ap');
    expect(after.version).toBe(before.version);
    expect(after.history).toEqual(before.history);
    expect(procIds(after)).toEqual(procIds(before));
    expect(fs.readFileSync(wsYaml, 'utf8')).toBe(wsText);
    expect(logsWith(master.process, 'typology configured')).toEqual([]);
  });

  it('apply -f of the changed file prints configured with the diff lines, and applies them', { timeout: 40_000 }, async () => {
    const r = await apply(srcYaml);
    expect(r.code, r.describe()).toBe(0);
    expect(r.stdout).toBe('typology/ap configured\n  schedule.interval 2s → 1s\n  notches[tag].processes 1 → 2\n');
    expect(fs.readFileSync(wsYaml, 'utf8')).toBe(fs.readFileSync(srcYaml, 'utf8'));
    const d = await pollUntil(async () => {
      const x = await describeT(master, 'ap');
      const tag = x.stages.find((s) => s.name === 'tag')!;
      return tag.processes.length === 2 && tag.processes.every((p) => p.state === 'ready') ? x : undefined;
    }, { timeoutMs: 20_000, what: 'tag on two processes', context });
    expect(d.history.map((h) => [h.version, h.source, h.kind, h.changes])).toEqual([
      [1, 'apply', 'created', []],
      [2, 'apply', 'scale', ['schedule.interval 2s → 1s', 'notches[tag].processes 1 → 2']],
    ]);
  });

  it('describe and get typologies report the applied version (the last in history)', { timeout: 20_000 }, async () => {
    const d = await describeT(master, 'ap');
    const row = (await getTypologies(master)).find((t) => t.name === 'ap')!;
    const applied = d.history.at(-1)!.version;
    expect({ describe: d.version, getTypologies: row.version }).toEqual({ describe: applied, getTypologies: applied });
  });

  describe('invalid files are refused with file:line:col errors, exit 2, and change nothing', () => {
    const cases = [
      {
        what: 'schema error',
        edit: (t: string) => t.replace('    processes: 2\n', '    processes: 2\n    thread: 2\n'),
        error: (f: string) => `${f}:13:5: unknown field "thread" — did you mean "threads"? (at notches[0].thread)`,
      },
      {
        what: 'missing function',
        edit: (t: string) => t.replace('    function: tag\n', '    function: nope\n'),
        error: (f: string) => `${f}:11:15: function "nope" is not exported by mark.ts`,
      },
      {
        what: 'bad YAML',
        edit: (t: string) => t.replace(`args: [${COUNT}]`, `args: [${COUNT}`),
        error: (f: string) => `${f}:8:1: invalid YAML: flow sequence in block collection must be sufficiently indented and end with a ]`,
      },
    ];
    for (const c of cases) {
      it(`${c.what}: refused like validate refuses it`, { timeout: 40_000 }, async () => {
        const dir = makeTempDir('apply-bad');
        const file = path.join(dir, 'ap.yaml');
        fs.copyFileSync(path.join(src, 'fx.ts'), path.join(dir, 'fx.ts'));
        fs.copyFileSync(path.join(src, 'mark.ts'), path.join(dir, 'mark.ts'));
        fs.writeFileSync(file, c.edit(fs.readFileSync(srcYaml, 'utf8')));
        const before = await describeT(master, 'ap');
        const wsText = fs.readFileSync(wsYaml, 'utf8');

        const validate = await runCli(['validate', file]);
        expect(validate.code, validate.describe()).toBe(2);
        expect(validate.stderr).toContain(c.error(file));

        for (const args of [[file], [file, '--dry-run']]) {
          const r = await apply(...args);
          expect(r.code, r.describe()).toBe(2);
          expect(r.stdout).toBe('');
          expect(r.stderr).toContain(c.error(file));
          // The same diagnostics as validate, line for line.
          const diags = (s: string) => s.split('\n').filter((l) => l.startsWith(`${file}:`));
          expect(diags(r.stderr)).toEqual(diags(validate.stderr));
        }
        const after: Described = await describeT(master, 'ap');
        expect(after.history).toEqual(before.history);
        expect(after.invalid).toBeUndefined();
        expect(fs.readFileSync(wsYaml, 'utf8')).toBe(wsText);
        expect((await getTypologies(master)).map((t) => [t.name, t.status])).toEqual([['ap', 'running']]);
      });
    }
  });

  let codeEditAt = 0;
  let beforeCodeEdit: Described;
  let afterCodeEdit: Described;

  it("a module code edit (the notch's output changes) applies: new items carry the new output, no item lost", { timeout: 60_000 }, async () => {
    beforeCodeEdit = await describeT(master, 'ap');
    fs.writeFileSync(path.join(src, 'mark.ts'), markModule('two'));
    codeEditAt = Date.now();
    const r = await apply(srcYaml);
    expect(r.code, r.describe()).toBe(0);
    expect(r.stdout).toMatch(/^typology\/ap configured\n {2}notches\[tag\]\.code [0-9a-f]{12} → [0-9a-f]{12}\n$/);
    expect(fs.readFileSync(path.join(master.workspace, 'ap', 'mark.ts'), 'utf8')).toBe(markModule('two'));
    const v = (await describeT(master, 'ap')).history.at(-1)!;
    expect(v).toMatchObject({ source: 'apply', changes: [expect.stringMatching(/^notches\[tag\]\.code /)] });

    // New items carry the new mark; a couple of runs later, stop and count everything.
    await pollUntil(() => readJsonl(outFile).filter((i) => i.mark === 'two').length >= 2 * COUNT || undefined, { timeoutMs: 20_000, what: 'two runs of items with the new mark', context });
    afterCodeEdit = await describeT(master, 'ap');
    const { items, delivery } = await stopAndCheckNothingLost(master, 'ap', outFile, COUNT);
    // A code edit rolls the stage's processes one at a time (issue 3), so a tick in
    // progress may see both codes; what must hold is per item: each item was
    // handled by exactly one code, matching the process that ran it (below).
    expect(delivery.byTick.size).toBeGreaterThan(0);
    expect(new Set(items.map((i) => i.mark))).toEqual(new Set(['one', 'two']));
    // The new code ran exactly in the new version's tag processes.
    const newTag = `tag@v${v.version}`;
    expect(items.filter((i) => (i.mark === 'two') !== (i.via[0] === newTag)), `items whose mark does not match their version (${newTag} has the new code)`).toEqual([]);
    const lastRun = await waitForLog(master.process, 'typology configured', { typology: 'ap', source: 'apply' }, { after: codeEditAt - 1 });
    expect(lastRun.changes).toEqual([expect.stringMatching(/^notches\[tag\]\.code /)]);
  });

  it('a module code edit restarts only the stages that use the module (hydrant and bocca keep their processes)', { timeout: 20_000 }, async () => {
    expect(afterCodeEdit, 'runs after the code-edit test').toBeDefined();
    const after = afterCodeEdit;
    const keep = (d: Described) => Object.fromEntries(Object.entries(procIds(d)).filter(([stage]) => stage !== 'tag'));
    const placedAfterEdit = logsWith(master.process, 'process placed', { typology: 'ap' }).filter((l) => l.time >= codeEditAt).map((l) => l.stage);
    expect({ processes: keep(after), placedAfterEdit: [...new Set(placedAfterEdit)].sort() }).toEqual({ processes: keep(beforeCodeEdit), placedAfterEdit: ['tag'] });
  });
});
