import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModule } from '../../src/spec/index.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/spec/', import.meta.url));
const run = promisify(execFile);
const temps: string[] = [];

/** A fresh directory outside the project, so nothing resolves through the project's node_modules by accident. */
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rezina-spec-'));
  temps.push(dir);
  return dir;
}

afterAll(async () => {
  await Promise.all(temps.map((d) => rm(d, { recursive: true, force: true })));
});

async function compiled(file: string) {
  const result = await compileModule(file);
  if (!result.ok) throw new Error(JSON.stringify(result.diagnostics));
  return result.module;
}

/** Write the bundle where a worker might, and import it. */
async function importBundle(code: string): Promise<Record<string, (...args: unknown[]) => unknown>> {
  const file = path.join(await tempDir(), 'bundle.mjs');
  await writeFile(file, code);
  return (await import(pathToFileURL(file).href)) as Record<string, (...args: unknown[]) => unknown>;
}

describe('compileModule', () => {
  it('bundles local imports, keeps npm packages external by file URL, and runs from a temp dir', async () => {
    const source = path.join(FIXTURES, 'uses-npm.ts');
    const module = await compiled(source);
    expect(module.source).toBe(source);
    expect(module.exports).toEqual(['fails', 'ownSource', 'render']);
    expect(module.inputs).toEqual([source, path.join(FIXTURES, 'helper.ts')]);
    expect(module.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(module.code).toMatch(/from "file:\/\/\/[^"]+\/node_modules\/yaml\/[^"]+"/);
    expect(module.code).toContain('from "node:fs"');

    const m = await importBundle(module.code);
    expect(m.render!('hi')).toBe('greeting: HI!');
    // import.meta.url still means the source file, so files next to it are found.
    expect(m.ownSource!()).toContain('export function shout');
  });

  it('points stack traces at the user file:line through the inline source map', async () => {
    const module = await compiled(path.join(FIXTURES, 'uses-npm.ts'));
    const file = path.join(await tempDir(), 'bundle.mjs');
    await writeFile(file, module.code);
    const script = `const m = await import(${JSON.stringify(pathToFileURL(file).href)}); try { m.fails(); } catch (e) { console.log(e.stack); }`;
    const { stdout } = await run(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', script], { cwd: os.tmpdir() });
    expect(stdout).toContain(`${path.join(FIXTURES, 'uses-npm.ts')}:15:9`);
  });

  it('resolves packages like Node ESM: ESM-only, conditional exports, subpaths, scoped', async () => {
    const dir = await tempDir();
    const pkg = async (name: string, json: object, files: Record<string, string>) => {
      const root = path.join(dir, 'node_modules', name);
      await mkdir(root, { recursive: true });
      await writeFile(path.join(root, 'package.json'), JSON.stringify({ name, version: '1.0.0', ...json }));
      for (const [f, text] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(root, f)), { recursive: true });
        await writeFile(path.join(root, f), text);
      }
    };
    await pkg('esm-only', { type: 'module', exports: { '.': { import: './index.js' }, './sub': { import: './sub.js' } } }, {
      'index.js': 'export const kind = "esm-only";',
      'sub.js': 'export const sub = "subpath";',
    });
    await pkg('dual', { exports: { '.': { module: './wrong.mjs', import: './esm.mjs', require: './cjs.cjs' } } }, {
      'esm.mjs': 'export const kind = "import condition";',
      'wrong.mjs': 'export const kind = "module condition";',
      'cjs.cjs': 'exports.kind = "require condition";',
    });
    await pkg('@scope/old-cjs', { main: 'lib/main.js', module: 'lib/esm.js' }, {
      'lib/main.js': 'exports.kind = "main";',
      'lib/esm.js': 'export const kind = "module field";',
    });
    const source = path.join(dir, 'app.ts');
    await writeFile(
      source,
      [
        "import { kind as a } from 'esm-only';",
        "import { sub } from 'esm-only/sub';",
        "import { kind as b } from 'dual';",
        "import old from '@scope/old-cjs';",
        'export function kinds(): string[] { return [a, sub, b, old.kind]; }',
      ].join('\n'),
    );
    const module = await compiled(source);
    // Moved away from the node_modules it was resolved against: the URLs still point there.
    const m = await importBundle(module.code);
    expect(m.kinds!()).toEqual(['esm-only', 'subpath', 'import condition', 'main']);
  });

  it('reports a syntax error at the module file:line:col', async () => {
    const result = await compileModule(path.join(FIXTURES, 'broken.ts'));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics).toEqual([
      { file: path.join(FIXTURES, 'broken.ts'), line: 3, col: 23, path: '', code: 'E_MODULE_COMPILE', message: 'Expected "]" but found "\'b\'"' },
    ]);
  });

  it('reports a local import that does not resolve', async () => {
    const result = await compileModule(path.join(FIXTURES, 'bad-import.ts'));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics[0]).toMatchObject({ line: 1, col: 25, code: 'E_MODULE_IMPORT', message: 'Could not resolve "./no-such-helper.js"' });
  });

  it('reports an npm package that is not installed, at the import', async () => {
    const dir = await tempDir();
    const source = path.join(dir, 'needs-pkg.ts');
    await writeFile(source, "export { x } from 'not-installed-pkg/deep';\n");
    const result = await compileModule(source);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics[0]).toMatchObject({ file: source, line: 1, col: 19, code: 'E_MODULE_IMPORT' });
    expect(result.diagnostics[0]!.message).toContain('is the package "not-installed-pkg" installed?');
  });

  it('reports a missing file', async () => {
    const result = await compileModule(path.join(FIXTURES, 'nope.ts'));
    expect(result).toEqual({ ok: false, diagnostics: [expect.objectContaining({ code: 'E_MODULE_MISSING', line: 0 })] });
  });

  it('caches until the module or a local file it imports changes', async () => {
    const dir = await tempDir();
    const main = path.join(dir, 'main.ts');
    const dep = path.join(dir, 'dep.ts');
    await writeFile(main, "import { n } from './dep.js';\nexport const value = (): number => n;\n");
    await writeFile(dep, 'export const n = 1;\n');
    const first = await compiled(main);
    expect(await compiled(main)).toBe(first);

    await writeFile(dep, 'export const n = 22;\n');
    await utimes(dep, new Date(), new Date(Date.now() + 5000));
    const second = await compiled(main);
    expect(second.hash).not.toBe(first.hash);
    expect((await importBundle(second.code)).value!()).toBe(22);
  });
});
