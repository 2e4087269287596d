/**
 * Hot reload, invalid edits: bad YAML, a schema error, a missing function and
 * a TypeScript syntax error are each saved over a running typology. None may
 * stop it: the last good version keeps producing, the error (file:line:col)
 * is in the log, in `get typologies` (status `degraded: invalid spec`) and in
 * `describe`. Saving the good file again recovers without a restart.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTempDir, pollUntil, startMaster, startWorker, useProcessCleanup, type MasterHandle } from '../helpers/processes.js';
import {
  describeT,
  fixtureModule,
  getRuns,
  getTypologies,
  logsWith,
  procIds,
  saveInPlace,
  typologyYaml,
  waitForLog,
  waitReady,
  writeWorkspace,
} from '../helpers/reload-fixtures.js';

useProcessCleanup('each');

/** Waits for a run that was fired after `since` to finish; returns it. */
async function aRunFinishedAfter(master: MasterHandle, since: number) {
  return pollUntil(async () => (await getRuns(master, 'steady')).find((r) => r.fireTime > since && r.status === 'finished'), {
    timeoutMs: 10_000,
    what: `a run fired after ${new Date(since).toISOString()} to finish`,
    context: () => master.process.describe(),
  });
}

describe('hot reload: invalid edits never stop what runs', () => {
  it('bad YAML, schema error, missing function, TS error: old version keeps producing, error shown with file:line:col; fixing recovers without restart', { timeout: 90_000 }, async () => {
    const ws = makeTempDir('reload-invalid');
    const yamlFile = path.join(ws, 'steady.yaml');
    const moduleFile = path.join(ws, 'fx.ts');
    const good = typologyYaml({ name: 'steady', interval: '1s', count: 5, notches: [{ name: 'tag' }] });
    // The lines the errors point at (typologyYaml's layout).
    expect(good.split('\n')[6]).toBe('  args: [5]');
    expect(good.split('\n')[10]).toBe('    function: tag');
    writeWorkspace(ws, { 'steady.yaml': good });
    const master = await startMaster({ workspace: ws });
    await startWorker(master, 'a');
    await waitReady(master, 'steady');
    await aRunFinishedAfter(master, 0);
    const procsBefore = procIds(await describeT(master, 'steady'));

    const cases: Array<{ what: string; file: string; save: () => number; expected: string }> = [
      {
        what: 'bad YAML (unclosed flow sequence)',
        file: yamlFile,
        save: () => saveInPlace(yamlFile, good.replace('args: [5]', 'args: [5')),
        expected: `${yamlFile}:8:1: invalid YAML: flow sequence in block collection must be sufficiently indented and end with a ]`,
      },
      {
        what: 'schema error (unknown field)',
        file: yamlFile,
        save: () => saveInPlace(yamlFile, good.replace('    function: tag\n', '    function: tag\n    thread: 2\n')),
        expected: `${yamlFile}:12:5: unknown field "thread" — did you mean "threads"? (at notches[0].thread)`,
      },
      {
        what: 'missing function',
        file: yamlFile,
        save: () => saveInPlace(yamlFile, good.replace('    function: tag\n', '    function: nope\n')),
        expected: `${yamlFile}:11:15: function "nope" is not exported by fx.ts`,
      },
      {
        what: 'TypeScript syntax error in the module',
        file: moduleFile,
        save: () => {
          // The YAML is good again; its module does not compile.
          saveInPlace(yamlFile, good);
          return saveInPlace(moduleFile, `${fixtureModule()}export const broken = ;\n`);
        },
        expected: `${moduleFile}:${fixtureModule().split('\n').length}:`,
      },
    ];

    let seen = 0;
    for (const c of cases) {
      const savedAt = c.save();
      seen++;
      // The log says so, with the location.
      const logged = await waitForLog(master.process, 'invalid edit; the last good version keeps running', { typology: 'steady' }, { nth: seen, timeoutMs: 10_000 });
      expect((logged.errors as string[]).join('\n'), `${c.what}: the logged errors`).toContain(c.expected);
      // get typologies: degraded, the error with file:line:col.
      const row = await pollUntil(async () => (await getTypologies(master)).find((t) => t.name === 'steady' && t.error?.includes(c.expected)), {
        timeoutMs: 10_000,
        what: `${c.what}: the error in get typologies`,
        context: async () => JSON.stringify(await getTypologies(master), null, 2),
      });
      expect(row.status).toBe('degraded: invalid spec');
      expect(row.version).toBe(1);
      // describe: the diagnostics, rendered.
      const d = await describeT(master, 'steady');
      expect(d.invalid?.file, c.what).toBe(yamlFile);
      expect(d.invalid!.rendered.join('\n'), c.what).toContain(c.expected);
      expect(d.history, `${c.what}: no new version`).toHaveLength(1);
      // The old version keeps producing, on the same processes.
      const run = await aRunFinishedAfter(master, savedAt);
      expect(run).toMatchObject({ version: 1, in: 5, out: 5, failed: 0 });
      expect(procIds(await describeT(master, 'steady'))).toEqual(procsBefore);
    }
    // Nothing but the one module of the last case is wrong: the YAML file's own errors are gone.
    const last = (await getTypologies(master)).find((t) => t.name === 'steady')!;
    expect(last.error).not.toContain('unknown field');

    // Fix it: the module compiles again. Back to running, no restart, no new version (nothing changed).
    const fixedAt = saveInPlace(moduleFile, fixtureModule());
    await waitForLog(master.process, 'typology file is valid again', { typology: 'steady' }, { after: fixedAt - 1 });
    const row = await pollUntil(async () => (await getTypologies(master)).find((t) => t.name === 'steady' && t.status === 'running'), { timeoutMs: 10_000, what: 'status running again' });
    expect(row.error ?? undefined).toBeUndefined();
    const d = await describeT(master, 'steady');
    expect(d.invalid).toBeUndefined();
    expect(d.history).toHaveLength(1);
    expect(procIds(d)).toEqual(procsBefore);
    await aRunFinishedAfter(master, fixedAt);
    expect(master.process.running).toBe(true);
    expect(logsWith(master.process, 'master listening')).toHaveLength(1);
    expect(logsWith(master.process, 'typology removed; draining')).toEqual([]);
    expect(fs.readFileSync(yamlFile, 'utf8')).toBe(good);
  });
});
