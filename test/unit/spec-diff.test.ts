import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTypologyFile } from '../../src/spec/load.js';
import { classifyChanges, diffTypologies, formatChange } from '../../src/spec/diff.js';
import { setStageScaling } from '../../src/spec/edit.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rezina-diff-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.writeFileSync(path.join(dir, 'm.ts'), 'export const src = () => [1];\nexport const f = (x: number) => x;\nexport const g = (x: number) => x;\n');

const base = `# comment kept
name: d
schedule:
  interval: 10s
hydrant: { module: m.ts, function: src }
notches:
  - name: fetch
    module: m.ts
    function: f
    processes: 2
bocca: { backend: stdout }
`;

async function load(text: string) {
  const file = path.join(dir, 'd.yaml');
  const r = await loadTypologyFile(file, { text });
  if (!r.ok) throw new Error(JSON.stringify(r.diagnostics));
  return r.typology;
}

describe('diffTypologies', () => {
  it('classifies a schedule change and prints it as the user wrote it', async () => {
    const changes = diffTypologies(await load(base), await load(base.replace('10s', '5s')));
    expect(changes.map(formatChange)).toEqual(['schedule.interval 10s → 5s']);
    expect(classifyChanges(changes)).toBe('schedule');
  });

  it('classifies processes/threads as a scale change', async () => {
    const changes = diffTypologies(await load(base), await load(base.replace('processes: 2', 'processes: 4')));
    expect(changes.map(formatChange)).toEqual(['notches[fetch].processes 2 → 4']);
    expect(classifyChanges(changes)).toBe('scale');
  });

  it('treats a new notch as a new version', async () => {
    const more = base.replace('bocca:', '  - { name: g, module: m.ts, function: g }\nbocca:');
    const changes = diffTypologies(await load(base), await load(more));
    expect(classifyChanges(changes)).toBe('version');
    expect(changes.map(formatChange)).toContain('notchOrder fetch → fetch → g');
  });

  it('finds nothing between identical files', async () => {
    expect(diffTypologies(await load(base), await load(base))).toEqual([]);
  });
});

describe('setStageScaling', () => {
  it('edits processes of a notch and keeps comments', async () => {
    const text = setStageScaling(base, 'fetch', { processes: 7 });
    expect(text).toContain('# comment kept');
    expect((await load(text)).notches[0]!.processes).toBe(7);
  });

  it('refuses an unknown stage', () => {
    expect(() => setStageScaling(base, 'nope', { processes: 1 })).toThrow(/no notch or bocca named "nope"/);
  });
});
