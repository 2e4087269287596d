import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../src/errors.js';
import { loadTypologyFile } from '../../src/spec/load.js';

const root = path.resolve(import.meta.dirname, '../..');
const files: string[] = [];
const walk = (d: string) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.ya?ml$/.test(e.name)) files.push(p);
  }
};
walk(path.join(root, 'pipelines'));
walk(path.join(root, 'bench'));

describe('every typology shipped in pipelines/ and bench/ is valid', () => {
  it('finds the examples', () => {
    expect(files.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['cityweather.yaml', 'numericalcalc.yaml']));
  });
  it.each(files.map((f) => [path.relative(root, f), f]))('%s', async (_rel, file) => {
    const r = await loadTypologyFile(file);
    expect(r.ok ? [] : r.diagnostics.map(formatDiagnostic)).toEqual([]);
  });
});
