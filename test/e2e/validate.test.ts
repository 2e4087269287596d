/**
 * `rezina validate FILE...`: offline checks with file:line:col diagnostics on
 * stderr and exit code 2; valid files print `ok` and exit 0. The broken
 * fixtures are in test/fixtures/e2e/validate; each one's comment names the
 * line of its mistake.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { E2E_FIXTURES, PIPELINES, runCli, useProcessCleanup } from '../helpers/processes.js';

useProcessCleanup('each');

const DIR = path.join(E2E_FIXTURES, 'validate');
const at = (file: string) => path.join(DIR, file);

/** The diagnostic lines of stderr (`file:line:col: message`), without the closing `error: N problems found`. */
function diagnostics(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l !== '' && !l.startsWith('error:') && !l.startsWith('{'));
}

const BROKEN: Array<{ fixture: string; expected: string }> = [
  {
    fixture: 'bad-yaml.yaml',
    expected: `${at('bad-yaml.yaml')}:4:14: invalid YAML: a value on the same line as its key cannot itself be "key: value" — check the indentation, or quote the value`,
  },
  {
    fixture: 'unknown-field.yaml',
    expected: `${at('unknown-field.yaml')}:8:5: unknown field "thread" — did you mean "threads"? (at notches[0].thread)`,
  },
  {
    fixture: 'missing-bocca.yaml',
    // A missing field has no line of its own: the top of the file.
    expected: `${at('missing-bocca.yaml')}:1:1: bocca is required — where results go, such as bocca: { backend: stdout } (at bocca)`,
  },
  {
    fixture: 'missing-export.yaml',
    expected: `${at('missing-export.yaml')}:7:15: function "secret" is not exported by ok.ts (it exports double, numbers) (at notches[0].function)`,
  },
  {
    fixture: 'ts-syntax.yaml',
    // A compile error points into the module, not the YAML.
    expected: `${at('broken.ts')}:4:16: Expected ")" but found ";" (at notches[0].module)`,
  },
];

describe('rezina validate', () => {
  for (const { fixture, expected } of BROKEN) {
    it(`${fixture}: exit 2 and ${expected.slice(DIR.length + 1, expected.indexOf(': '))}`, { timeout: 30_000 }, async () => {
      const r = await runCli(['validate', at(fixture)], { cwd: DIR, timeoutMs: 25_000 });
      expect(r.code, r.describe()).toBe(2);
      expect(diagnostics(r.stderr), r.describe()).toEqual([expected]);
      expect(r.stderr).toMatch(/^error: 1 problem found$/m);
      expect(r.stdout).toBe('');
    });
  }

  it('reports every broken file of a batch, and still exits 2 when some are valid', { timeout: 30_000 }, async () => {
    const r = await runCli(['validate', ...BROKEN.map((b) => at(b.fixture)), at('valid.yaml')], { cwd: DIR, timeoutMs: 25_000 });
    expect(r.code, r.describe()).toBe(2);
    expect(diagnostics(r.stderr).sort(), r.describe()).toEqual(BROKEN.map((b) => b.expected).sort());
    expect(r.stderr).toMatch(/^error: 5 problems found$/m);
    expect(r.stdout).toMatch(/valid\.yaml: ok \(typology valid\)/);
  });

  it('accepts every example under pipelines/ and the e2e fixtures that the other tests run', { timeout: 30_000 }, async () => {
    const files = [
      ...fs.readdirSync(PIPELINES).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(PIPELINES, f)),
      at('valid.yaml'),
      ...['failing', 'slow'].flatMap((d) =>
        fs.readdirSync(path.join(E2E_FIXTURES, d)).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(E2E_FIXTURES, d, f)),
      ),
    ];
    expect(files.length).toBeGreaterThanOrEqual(4);
    const r = await runCli(['validate', ...files], { timeoutMs: 25_000 });
    expect(r.code, r.describe()).toBe(0);
    expect(r.stderr, r.describe()).toBe('');
    const okLines = r.stdout.split('\n').filter((l) => / ok \(typology [a-z0-9_-]+\)$/.test(l));
    expect(okLines, r.describe()).toHaveLength(files.length);
  });
});
