import { compileModule } from '../../src/spec/index.js';
import { test } from 'vitest';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
test('scratch', async () => {
  const r = await compileModule(path.resolve('test/fixtures/spec/uses-npm.ts'));
  if (!r.ok) { console.log(r.diagnostics); return; }
  console.log(r.module.code.slice(0, 1500), r.module.exports, r.module.inputs);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rz-'));
  const f = path.join(dir, 'm.mjs');
  writeFileSync(f, r.module.code);
  const m = await import(pathToFileURL(f).href);
  console.log(m.render('hi'), m.ownSource().length);
  try { execFileSync(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(f).href)}); m.fails();`], { cwd: '/', encoding: 'utf8', stdio: 'pipe' }); } catch (e: any) { console.log(e.stderr); }
  const b = await compileModule(path.resolve('test/fixtures/spec/bad-import.ts'));
  console.log(JSON.stringify(b));
  const c = await compileModule(path.resolve('test/fixtures/spec/nope.ts'));
  console.log(JSON.stringify(c));
});
