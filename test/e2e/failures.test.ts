/**
 * User code that fails (test/fixtures/e2e/failing): a hydrant that throws on
 * every tick, a notch that throws for some items, a notch whose output is a
 * function. The master and the worker stay up, runs finish, failed items are
 * dead-lettered with their error.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  cliJson,
  copyFixtures,
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
  status: 'running' | 'finished';
  in: number;
  out: number;
  dropped: number;
  failed: number;
  errors: string[];
}

interface TypologyRow {
  name: string;
  status: string;
  processes: string;
  error?: string;
}

interface DeadLetterRow {
  id: string;
  typology: string;
  stage: string;
  run: number;
  error: string;
  at?: string;
  attempts: number;
  item: unknown;
}

const TYPOLOGIES = ['hydrantfails', 'notchfails', 'unserializable'];

describe('failing user code', () => {
  let master: MasterHandle;
  let worker: CliProcess;
  const context = () => [master.process, worker].map((p) => p.describe()).join('\n');

  async function triggerAndWait(typology: string, id: number): Promise<RunRow> {
    const t = await runCli(['trigger', typology, '--master', master.address]);
    expect(t.code, t.describe()).toBe(0);
    expect(JSON.parse(t.stdout)).toEqual({ run: id });
    return pollUntil(
      async () => (await cliJson<RunRow[]>(['get', 'runs', typology], master.address)).find((r) => r.id === id && r.status === 'finished'),
      { timeoutMs: 20_000, what: `run ${id} of ${typology} to finish`, context },
    );
  }

  const stillUp = async () => {
    expect(master.process.running, context()).toBe(true);
    expect(worker.running, context()).toBe(true);
    const workers = await cliJson<WorkerRow[]>(['get', 'workers'], master.address);
    expect(workers.map((w) => [w.name, w.pid])).toEqual([['w', worker.pid]]);
  };

  beforeAll(async () => {
    master = await startMaster();
    worker = await startWorker(master, 'w');
    const src = makeTempDir('failing-src');
    copyFixtures(['failing.ts', ...TYPOLOGIES.map((t) => `${t}.yaml`)].map((f) => path.join('failing', f)), src);
    const r = await runCli(['apply', '-f', path.join(src, 'failing'), '--master', master.address]);
    expect(r.code, r.describe()).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(TYPOLOGIES.map((t) => `typology/${t} created`));
    await pollUntil(
      async () => {
        const rows = await cliJson<TypologyRow[]>(['get', 'typologies'], master.address);
        return TYPOLOGIES.every((t) => rows.some((row) => row.name === t && /^(\d+)\/\1$/.test(row.processes)));
      },
      { timeoutMs: 30_000, what: 'every process of the three typologies to be ready', context },
    );
  }, 60_000);

  it('a hydrant that throws: the run finishes with its error, every time; nothing goes down', { timeout: 40_000 }, async () => {
    for (const id of [1, 2]) {
      const run = await triggerAndWait('hydrantfails', id);
      expect(run).toMatchObject({ in: 0, out: 0, dropped: 0 });
      expect(run.errors).toHaveLength(1);
      // Names the stage and the message, and where in the user's file it was thrown.
      expect(run.errors[0]).toBe(`explode: hydrant exploded on purpose (at ${path.join(master.workspace, 'hydrantfails', 'failing.ts')}:13:9)`);
    }
    await stillUp();
    const rows = await cliJson<TypologyRow[]>(['get', 'typologies'], master.address);
    expect(rows.find((r) => r.name === 'hydrantfails')!.processes).toBe('2/2');
  });

  it('a notch that throws for some items: failed > 0, the rest written, dead letters with their errors', { timeout: 40_000 }, async () => {
    const run = await triggerAndWait('notchfails', 1);
    expect(run).toMatchObject({ in: 10, out: 6, dropped: 0, failed: 4 });

    const written = fs
      .readFileSync(path.join(master.workspace, 'notchfails', 'results', 'notchfails.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { n: number });
    expect(written.map((i) => i.n).sort((a, b) => a - b)).toEqual([1, 2, 4, 5, 7, 8]);

    const letters = await cliJson<DeadLetterRow[]>(['get', 'deadletters', 'notchfails'], master.address);
    expect(letters).toHaveLength(4);
    const byN = new Map(letters.map((l) => [(l.item as { n: number }).n, l]));
    expect([...byN.keys()].sort((a, b) => a - b)).toEqual([0, 3, 6, 9]);
    for (const [n, l] of byN) {
      expect(l).toMatchObject({ typology: 'notchfails', stage: 'picky', run: 1, error: `no multiples of three: ${n}`, attempts: 2, item: { n } });
      // Where the user's code threw: the workspace copy of failing.ts, line 18.
      expect(l.at).toBe(`${path.join(master.workspace, 'notchfails', 'failing.ts')}:18:31`);
    }
    await stillUp();
  });

  it('a notch whose output is a function: failed, with a message naming the stage', { timeout: 40_000 }, async () => {
    const run = await triggerAndWait('unserializable', 1);
    expect(run).toMatchObject({ in: 3, out: 0, failed: 3 });

    const letters = await cliJson<DeadLetterRow[]>(['get', 'deadletters', 'unserializable'], master.address);
    expect(letters).toHaveLength(3);
    for (const l of letters) {
      expect(l).toMatchObject({
        typology: 'unserializable',
        stage: 'makesFunctions',
        run: 1,
        error: 'cannot send the output of stage "makesFunctions" to the next stage: output is a function',
      });
    }
    expect(letters.map((l) => (l.item as { n: number }).n).sort()).toEqual([0, 1, 2]);
    await stillUp();

    // The dead letters of all typologies together.
    const all = await cliJson<DeadLetterRow[]>(['get', 'deadletters'], master.address);
    expect(all.map((l) => l.typology).sort()).toEqual([...Array(4).fill('notchfails'), ...Array(3).fill('unserializable')]);
  });

  it('after all that, a failing typology still runs again', { timeout: 30_000 }, async () => {
    const run = await triggerAndWait('notchfails', 2);
    expect(run).toMatchObject({ in: 10, out: 6, failed: 4 });
    await stillUp();
  });
});

