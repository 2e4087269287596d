import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic, type Diagnostic } from '../../src/errors.js';
import { loadTypologyFile } from '../../src/spec/index.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/spec/', import.meta.url));
/** A YAML file that exists only as text; its modules resolve in the fixtures folder. */
const INLINE = path.join(FIXTURES, 'inline.yaml');

const HYDRANT = 'hydrant: { module: cityweather.ts, function: getCities }';

async function problems(text: string, options: { checkModules?: boolean } = {}): Promise<Diagnostic[]> {
  const result = await loadTypologyFile(INLINE, { text, ...options });
  if (result.ok) throw new Error('expected the file to be rejected');
  return result.diagnostics;
}

/** `line:col message (at path)` — what the tests compare, without the file name. */
function where(d: Diagnostic): string {
  return `${d.line}:${d.col}`;
}

function lines(...l: string[]): string {
  return `${l.join('\n')}\n`;
}

describe('loadTypologyFile: YAML problems', () => {
  it('reports a syntax error with its position and nothing else', async () => {
    const ds = await problems(lines('name: a', 'bocca: { backend: stdout', HYDRANT));
    expect(ds.length).toBeGreaterThanOrEqual(1);
    expect(ds.every((d) => d.code === 'E_YAML_SYNTAX')).toBe(true);
    expect(ds[0]!.message).toMatch(/^invalid YAML: /);
    expect(ds[0]!.line).toBe(3);
  });

  it('reports an unclosed quote', async () => {
    const ds = await problems(lines('name: "abc', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds.map((d) => d.code)).toContain('E_YAML_SYNTAX');
    expect(ds.some((d) => /quote/i.test(d.message))).toBe(true);
  });

  it('says to indent with spaces when a tab indents', async () => {
    const ds = await problems(lines('name: a', 'schedule:', '\tinterval: 10s', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('3:1');
    expect(ds[0]!.code).toBe('E_YAML_TAB');
    expect(ds[0]!.message).toContain('indent with spaces, not tabs');
  });

  it('points at the column of a tab after spaces', async () => {
    const ds = await problems(lines('name: a', 'bocca:', '  backend: stdout', '  \tmode: batch', HYDRANT));
    expect(where(ds[0]!)).toBe('4:3');
  });

  it('rejects a duplicate key and names the first one', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: stdout', '  threads: 2', '  threads: 3'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('6:3');
    expect(ds[0]).toMatchObject({ code: 'E_YAML_DUPLICATE_KEY', path: 'bocca.threads' });
    expect(ds[0]!.message).toBe('duplicate key "threads" — it is already set on line 5; keep one');
  });

  it('says to quote a cron expression that YAML reads as an alias', async () => {
    const ds = await problems(lines('name: a', 'schedule:', '  cron: */10 * * * * *', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('3:9');
    expect(ds[0]).toMatchObject({ code: 'E_CRON_UNQUOTED', path: 'schedule.cron' });
    expect(ds[0]!.message).toContain('quote the cron expression: cron: "*/10 * * * * *"');
  });

  it('catches an unquoted one-token cron (no YAML syntax error, an unresolved alias)', async () => {
    const ds = await problems(lines('name: a', 'schedule:', '  cron: */5', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ code: 'E_CRON_UNQUOTED', line: 3, col: 9 });
  });

  it('says to quote an unquoted cron in a flow mapping too', async () => {
    const ds = await problems(lines('name: a', 'schedule: { cron: */5 * * * *, timezone: UTC }', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ code: 'E_CRON_UNQUOTED', line: 2, col: 19 });
    expect(ds[0]!.message).toContain('cron: "*/5 * * * *"');
  });

  it('survives hostile nesting and alias bombs with a diagnostic', async () => {
    const deep = await problems(`name: a\nargs: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`);
    expect(deep[0]!.message).toBe('the file nests too deeply to read');
    const bomb = await problems(
      lines('a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]'),
    );
    expect(bomb[0]!.message).toContain('too many aliases');
  });

  it('reports any other unknown alias', async () => {
    const ds = await problems(lines('name: a', 'hydrant: { module: cityweather.ts, function: *fn }', 'bocca: { backend: stdout }'));
    expect(ds[0]).toMatchObject({ code: 'E_YAML_ALIAS', line: 2, path: 'hydrant.function' });
    expect(ds[0]!.message).toContain('must be quoted');
  });

  it('accepts anchors and aliases that resolve', async () => {
    const result = await loadTypologyFile(INLINE, {
      text: lines(
        'name: a',
        'hydrant: { module: &m cityweather.ts, function: getCities }',
        'notches:',
        '  - { module: *m, function: getCityWeather }',
        'bocca: { backend: stdout }',
      ),
    });
    expect(result.ok).toBe(true);
  });

  it('rejects several documents in one file', async () => {
    const ds = await problems(lines('name: a', '---', 'name: b'));
    expect(ds[0]!.message).toContain('only one typology per file');
  });

  it('rejects an empty file', async () => {
    const ds = await problems('# nothing yet\n');
    expect(ds).toEqual([expect.objectContaining({ code: 'E_FILE_EMPTY', line: 1, col: 1 })]);
  });

  it('reports a file that does not exist without a position', async () => {
    const result = await loadTypologyFile(path.join(FIXTURES, 'no-such.yaml'));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics).toEqual([expect.objectContaining({ code: 'E_FILE_READ', line: 0, message: 'file not found' })]);
  });
});

describe('loadTypologyFile: schema problems', () => {
  it('names an unknown field, at the key, with a suggestion', async () => {
    const ds = await problems(
      lines('name: a', HYDRANT, 'notches:', '  - module: cityweather.ts', '    function: getCityWeather', '    thread: 5', 'bocca: { backend: stdout }'),
    );
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('6:5');
    expect(ds[0]).toMatchObject({ code: 'E_SCHEMA_UNKNOWN_FIELD', path: 'notches[0].thread' });
    expect(ds[0]!.message).toBe('unknown field "thread" — did you mean "threads"?');
  });

  it('says where a misplaced schedule field belongs', async () => {
    const ds = await problems(lines('name: a', 'interval: 10s', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds[0]!.message).toBe('unknown field "interval" — it belongs under schedule:');
  });

  it('explains a wrong type with the value given', async () => {
    const ds = await problems(
      lines('name: a', HYDRANT, 'notches:', '  - module: cityweather.ts', '    function: getCityWeather', '    threads: five', 'bocca: { backend: stdout }'),
    );
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('6:14');
    expect(ds[0]).toMatchObject({ code: 'E_SCHEMA_TYPE', path: 'notches[0].threads' });
    expect(ds[0]!.message).toBe('threads must be a whole number from 1 to 100000, got "five"');
  });

  it('explains a number out of range', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: stdout', '  processes: 0'));
    expect(ds[0]).toMatchObject({ line: 5, col: 14, path: 'bocca.processes' });
    expect(ds[0]!.message).toBe('processes must be a whole number from 1 to 1000, got 0');
  });

  it('requires a hydrant, pointing at the top of the file', async () => {
    const ds = await problems(lines('name: a', 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('1:1');
    expect(ds[0]).toMatchObject({ code: 'E_SCHEMA_REQUIRED', path: 'hydrant' });
    expect(ds[0]!.message).toMatch(/^hydrant is required/);
  });

  it('refuses hydrant and hydrants together', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'hydrants:', '  - { module: cityweather.ts, function: getCities }', 'bocca: { backend: stdout }'));
    expect(ds[0]).toMatchObject({ line: 3, col: 1, code: 'E_SCHEMA_CONFLICT' });
    expect(ds[0]!.message).toContain('not both');
  });

  it('requires a bocca', async () => {
    const ds = await problems(lines('name: a', HYDRANT));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 1, col: 1, code: 'E_SCHEMA_REQUIRED', path: 'bocca' });
    expect(ds[0]!.message).toMatch(/^bocca is required/);
  });

  it('says an empty bocca is nothing, at its key', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:'));
    expect(ds[0]).toMatchObject({ line: 3, col: 1, path: 'bocca' });
    expect(ds[0]!.message).toBe('bocca must be a mapping with backend, got nothing');
  });

  it('requires a field of a nested object, pointing at its owner', async () => {
    const ds = await problems(lines('name: a', 'hydrant:', '  module: cityweather.ts', 'bocca: { backend: stdout }'));
    expect(ds[0]).toMatchObject({ line: 2, col: 1, path: 'hydrant.function', message: 'function is required' });
  });

  it('lists the backends when one is unknown', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: sqlit'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('4:12');
    expect(ds[0]).toMatchObject({ code: 'E_SCHEMA_ENUM', path: 'bocca.backend' });
    expect(ds[0]!.message).toBe(
      'unknown backend "sqlit" — one of stdout, file, sqlite, postgres, mysql, redis, module (did you mean "sqlite"?)',
    );
  });

  it('requires the options a backend needs', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: file'));
    expect(ds[0]).toMatchObject({ line: 3, col: 1, path: 'bocca.path', message: 'path is required for backend "file"' });
    const pg = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: postgres', '  url: mysql://x'));
    expect(pg[0]).toMatchObject({ line: 5, col: 8, path: 'bocca.url' });
    expect(pg[0]!.message).toContain('postgres://');
  });

  it('rejects options the backend does not use', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: stdout', '  table: results'));
    expect(ds[0]).toMatchObject({ line: 5, col: 3, code: 'E_SCHEMA_NOT_APPLICABLE' });
    expect(ds[0]!.message).toBe('table does not apply to backend "stdout" (stdout takes no options)');
  });

  it('rejects batch settings without mode: batch', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca:', '  backend: stdout', '  batch: { size: 10 }'));
    expect(ds[0]).toMatchObject({ line: 5, col: 3, path: 'bocca.batch' });
    expect(ds[0]!.message).toContain('add mode: batch');
  });

  it('rejects a typology name that cannot be one', async () => {
    const ds = await problems(lines('name: City Weather', HYDRANT, 'bocca: { backend: stdout }'));
    expect(ds[0]).toMatchObject({ line: 1, col: 7, path: 'name' });
    expect(ds[0]!.message).toContain('lowercase letters, digits, - and _');
  });

  it('rejects a list where the file should be a mapping', async () => {
    const ds = await problems(lines('- name: a'));
    expect(ds[0]!.message).toMatch(/^the file must be a mapping/);
  });
});

describe('loadTypologyFile: schedule', () => {
  const typology = (...schedule: string[]) => lines('name: a', 'schedule:', ...schedule.map((s) => `  ${s}`), HYDRANT, 'bocca: { backend: stdout }');

  it('refuses interval and cron together', async () => {
    const ds = await problems(typology('interval: 10s', 'cron: "*/10 * * * *"'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 4, col: 3, code: 'E_SCHEMA_CONFLICT', path: 'schedule.cron' });
    expect(ds[0]!.message).toBe('interval and cron cannot be used together — keep one of them');
  });

  it.each([
    ['0', '3:13', 'interval must be more than 0, got 0'],
    ['0s', '3:13', 'interval must be more than 0, got "0s"'],
    ['-5s', '3:13', 'interval must be more than 0, got "-5s"'],
    ['-5', '3:13', 'interval must be more than 0, got -5'],
    ['ten seconds', '3:13', 'interval must be a duration such as 500ms, 10s, 5m, 1h or 1h30m, or a number of seconds, got "ten seconds"'],
  ])('rejects interval: %s', async (value, at, message) => {
    const ds = await problems(typology(`interval: ${value}`));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe(at);
    expect(ds[0]!.message).toBe(message);
  });

  it('rejects a cron step larger than its field', async () => {
    const ds = await problems(typology('cron: "*/75 * * * *"'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 3, col: 9, code: 'E_CRON', path: 'schedule.cron' });
    expect(ds[0]!.message).toContain('step 75 is larger than the minute field');
  });

  it('rejects a six-field cron whose seconds field fires every second, suggesting fixes', async () => {
    const ds = await problems(typology('cron: "* */5 * * * *"'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 3, col: 9, code: 'E_CRON' });
    expect(ds[0]!.message).toContain('"*/5 * * * *"');
    expect(ds[0]!.message).toContain('"0 */5 * * * *"');
  });

  it('accepts a six-field cron with a seconds step', async () => {
    const result = await loadTypologyFile(INLINE, { text: typology('cron: "*/10 * * * * *"', 'timezone: Europe/Berlin') });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.typology.schedule).toEqual({ cron: '*/10 * * * * *', timezone: 'Europe/Berlin', overlap: 'allow' });
  });

  it('names an unknown time zone with a suggestion', async () => {
    const ds = await problems(typology('cron: "0 * * * *"', 'timezone: Europe/Berln'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 4, col: 13, code: 'E_TIMEZONE', path: 'schedule.timezone' });
    expect(ds[0]!.message).toBe('unknown time zone "Europe/Berln" — did you mean "Europe/Berlin"?');
  });

  it.each([
    ['tomorrow', 'is not a date and time'],
    ['2026-02-30 10:00', 'is not a real date'],
    ['2026-12-03 25:00', 'is not a real time of day'],
    ['2026-03-29 02:30', 'does not exist in Europe/Berlin'],
  ])('rejects startTime %j', async (value, fragment) => {
    const ds = await problems(typology('interval: 10s', 'timezone: Europe/Berlin', `startTime: "${value}"`));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 5, col: 14, code: 'E_START_TIME', path: 'schedule.startTime' });
    expect(ds[0]!.message).toContain(fragment);
  });

  it.each([
    ['"2026-12-03 20:18:03"', 'Europe/Berlin', '2026-12-03T19:18:03.000Z'],
    ['"2026-07-01T08:00"', 'Europe/Berlin', '2026-07-01T06:00:00.000Z'],
    ['"2026-12-03 20:18:03Z"', 'Europe/Berlin', '2026-12-03T20:18:03.000Z'],
    ['"2026-12-03T20:18:03+05:30"', 'UTC', '2026-12-03T14:48:03.000Z'],
    ['2026-12-03', 'America/New_York', '2026-12-03T05:00:00.000Z'],
    // Clocks go back at 03:00 in Berlin: 02:30 happens twice; the first one counts.
    ['"2026-10-25 02:30"', 'Europe/Berlin', '2026-10-25T00:30:00.000Z'],
  ])('reads startTime %s in %s', async (value, zone, iso) => {
    const result = await loadTypologyFile(INLINE, { text: typology(`timezone: ${zone}`, `startTime: ${value}`) });
    expect(result.ok).toBe(true);
    if (result.ok) expect(new Date(result.typology.schedule.startTime!).toISOString()).toBe(iso);
  });
});

describe('loadTypologyFile: names and modules', () => {
  it('rejects two stages with the same name, defaulted from the function', async () => {
    const ds = await problems(
      lines('name: a', HYDRANT, 'notches:', '  - { module: cityweather.ts, function: getCityWeather }', '  - { module: cityweather.ts, function: getCityWeather }', 'bocca: { backend: stdout }'),
    );
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ line: 5, col: 41, code: 'E_NAME_DUPLICATE', path: 'notches[1].function' });
    expect(ds[0]!.message).toContain('two stages are named "getCityWeather" (the other is notches[0])');
  });

  it('reserves the name bocca', async () => {
    const ds = await problems(lines('name: a', 'hydrant: { name: bocca, module: cityweather.ts, function: getCities }', 'bocca: { backend: stdout }'));
    expect(ds[0]).toMatchObject({ line: 2, col: 18, code: 'E_NAME_RESERVED', path: 'hydrant.name' });
  });

  it('reports a module file that does not exist, with a suggestion', async () => {
    const ds = await problems(lines('name: a', 'hydrant:', '  module: cityweathr.ts', '  function: getCities', 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('3:11');
    expect(ds[0]).toMatchObject({ code: 'E_MODULE_MISSING', path: 'hydrant.module' });
    expect(ds[0]!.message).toContain('module file "cityweathr.ts" does not exist');
    expect(ds[0]!.message).toContain('did you mean "cityweather.ts"?');
  });

  it('reports a function the module does not export', async () => {
    const ds = await problems(lines('name: a', 'hydrant:', '  module: cityweather.ts', '  function: getCitys', 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(where(ds[0]!)).toBe('4:13');
    expect(ds[0]).toMatchObject({ code: 'E_FUNCTION_MISSING', path: 'hydrant.function' });
    expect(ds[0]!.message).toBe(
      'function "getCitys" is not exported by cityweather.ts — did you mean "getCities"? (it exports getCities, getCityWeather, oneWordConditionsForCity)',
    );
  });

  it('reports a TypeScript syntax error at the file:line:col of the module', async () => {
    const ds = await problems(lines('name: a', 'hydrant:', '  module: broken.ts', '  function: getCities', 'bocca: { backend: stdout }'));
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ file: path.join(FIXTURES, 'broken.ts'), line: 3, col: 23, code: 'E_MODULE_COMPILE', path: 'hydrant.module' });
    expect(formatDiagnostic(ds[0]!)).toBe(`${path.join(FIXTURES, 'broken.ts')}:3:23: Expected "]" but found "'b'" (at hydrant.module)`);
  });

  it('reports an import that does not resolve, in the module', async () => {
    const ds = await problems(lines('name: a', 'hydrant: { module: bad-import.ts, function: getCities }', 'bocca: { backend: stdout }'));
    expect(ds[0]).toMatchObject({ file: path.join(FIXTURES, 'bad-import.ts'), line: 1, col: 25, code: 'E_MODULE_IMPORT' });
  });

  it('checks the export of a custom bocca module', async () => {
    const ds = await problems(lines('name: a', HYDRANT, 'bocca: { backend: module, module: mybocca.ts, export: Bocca }'));
    expect(ds[0]).toMatchObject({ line: 3, col: 55, code: 'E_FUNCTION_MISSING', path: 'bocca.export' });
    expect(ds[0]!.message).toBe('export "Bocca" is not exported by mybocca.ts (it exports default)');
  });

  it('skips module checks when asked', async () => {
    const result = await loadTypologyFile(INLINE, {
      text: lines('name: a', 'hydrant: { module: nowhere.ts, function: f }', 'bocca: { backend: stdout }'),
      checkModules: false,
    });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.modules.size).toBe(0);
  });

  it('writes diagnostics with the YAML path as given and module paths in the same style', async () => {
    const relative = path.relative(process.cwd(), INLINE);
    const result = await loadTypologyFile(relative, { text: lines('name: a', 'hydrant: { module: broken.ts, function: getCities }', 'bocca: { backend: stdout }') });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.diagnostics[0]!.file).toBe(path.join(path.dirname(relative), 'broken.ts'));
  });
});

describe('loadTypologyFile: several errors at once', () => {
  it('reports every problem of every pass, in file order, each at its place', async () => {
    const text = lines(
      'name: Bad Name', //                  1
      'schedule:', //                       2
      '  cron: "*/75 * * * *"', //          3
      '  timezone: Europe/Berln', //        4
      '  startTime: tomorrow', //           5
      'hydrant:', //                        6
      '  module: cityweather.ts', //        7
      '  function: getCitys', //            8
      'notches:', //                        9
      '  - module: nothere.ts', //          10
      '    function: x', //                 11
      '    thread: 5', //                   12
      '  - module: cityweather.ts', //      13
      '    function: getCityWeather', //    14
      '    threads: five', //               15
      '  - module: broken.ts', //           16
      '    function: getCities', //         17
      '    timeout: 0s', //                 18
      'bocca:', //                          19
      '  backend: sqlit', //                20
    );
    const ds = await problems(text);
    const shown = ds.map((d) => `${d.file === INLINE ? '' : path.basename(d.file)}${d.line}:${d.col} ${d.path}`);
    expect(shown).toEqual([
      '1:7 name',
      '3:9 schedule.cron',
      '4:13 schedule.timezone',
      '5:14 schedule.startTime',
      '8:13 hydrant.function',
      '10:13 notches[0].module',
      '12:5 notches[0].thread',
      '15:14 notches[1].threads',
      '18:14 notches[2].timeout',
      '20:12 bocca.backend',
      'broken.ts3:23 notches[2].module',
    ]);
    for (const d of ds) expect(formatDiagnostic(d)).toMatch(/^\S+:\d+:\d+: .+ \(at \S+\)$/);
  });
});

describe('loadTypologyFile: the happy path', () => {
  it('normalizes defaults, durations and paths, compiles modules, and freezes the result', async () => {
    const file = path.join(FIXTURES, 'cityweather.yaml');
    const result = await loadTypologyFile(file);
    if (!result.ok) throw new Error(result.diagnostics.map(formatDiagnostic).join('\n'));
    const t = result.typology;
    const module = path.join(FIXTURES, 'cityweather.ts');
    expect(t).toEqual({
      name: 'city-weather',
      file,
      dir: path.dirname(file),
      description: 'Weather of some cities',
      schedule: { intervalMs: 5_400_000, timezone: 'Europe/Berlin', startTime: Date.parse('2026-12-03T19:18:03Z'), overlap: 'allow' },
      hydrants: [{ name: 'getCities', module, moduleAsWritten: 'cityweather.ts', function: 'getCities', args: [2] }],
      notches: [
        {
          name: 'fetch',
          module,
          moduleAsWritten: 'cityweather.ts',
          function: 'getCityWeather',
          processes: 2,
          threads: 5,
          timeoutMs: 5000,
          retries: 2,
          retryBackoffMs: 1000,
        },
        {
          name: 'oneWordConditionsForCity',
          module,
          moduleAsWritten: './cityweather.ts',
          function: 'oneWordConditionsForCity',
          processes: 1,
          threads: 1,
          retries: 0,
          retryBackoffMs: 1000,
        },
      ],
      bocca: {
        name: 'bocca',
        backend: 'sqlite',
        mode: 'batch',
        batchSize: 100,
        lingerMs: 200,
        processes: 1,
        threads: 1,
        options: { path: path.join(FIXTURES, 'city-weather.sqlite'), table: 'city_weather' },
      },
      queueCapacity: 10_000,
      persistQueues: true,
    });

    expect([...result.modules.keys()]).toEqual([module]);
    expect(result.modules.get(module)!.exports).toContain('getCities');

    expect(Object.isFrozen(t)).toBe(true);
    expect(Object.isFrozen(t.schedule)).toBe(true);
    expect(Object.isFrozen(t.notches[0])).toBe(true);
    expect(Object.isFrozen(t.hydrants[0]!.args)).toBe(true);
    expect(Object.isFrozen(t.bocca.options)).toBe(true);
    expect(() => {
      (t.notches[0] as { threads: number }).threads = 9;
    }).toThrow(TypeError);
  });

  it('fills the defaults of a minimal typology', async () => {
    const result = await loadTypologyFile(INLINE, { text: lines('name: tiny', HYDRANT, 'notches:', 'bocca: { backend: stdout }') });
    if (!result.ok) throw new Error(result.diagnostics.map(formatDiagnostic).join('\n'));
    expect(result.typology.schedule).toEqual({ overlap: 'allow' });
    expect(result.typology.notches).toEqual([]);
    expect(result.typology.hydrants[0]!.args).toEqual([]);
    expect(result.typology.bocca).toMatchObject({ mode: 'stream', batchSize: 500, lingerMs: 200, processes: 1, threads: 1, options: {} });
    expect(result.typology.queueCapacity).toBe(10_000);
  });

  it.each([
    ['backend: file\n  path: out/x.jsonl', { path: path.join(FIXTURES, 'out/x.jsonl') }],
    ['backend: postgres\n  url: postgres://127.0.0.1:5432/test', { url: 'postgres://127.0.0.1:5432/test', table: 'my_pipe' }],
    ['backend: mysql\n  url: mysql://127.0.0.1/test\n  table: results', { url: 'mysql://127.0.0.1/test', table: 'results' }],
    ['backend: redis', { url: 'redis://127.0.0.1:6379', key: 'rezina:my-pipe', type: 'list' }],
    ['backend: redis\n  type: stream\n  key: k', { url: 'redis://127.0.0.1:6379', key: 'k', type: 'stream' }],
    [
      'backend: module\n  module: mybocca.ts',
      { module: path.join(FIXTURES, 'mybocca.ts'), moduleAsWritten: 'mybocca.ts', export: 'default' },
    ],
  ])('fills bocca options: %s', async (bocca, options) => {
    const result = await loadTypologyFile(INLINE, { text: lines('name: my-pipe', HYDRANT, 'bocca:', `  ${bocca}`) });
    if (!result.ok) throw new Error(result.diagnostics.map(formatDiagnostic).join('\n'));
    expect(result.typology.bocca.options).toEqual(options);
  });

  it('accepts a list of hydrants and batch settings', async () => {
    const result = await loadTypologyFile(INLINE, {
      text: lines(
        'name: many',
        'hydrants:',
        '  - { name: a, module: cityweather.ts, function: getCities, args: [1] }',
        '  - { name: b, module: cityweather.ts, function: getCities, args: [2] }',
        'bocca: { backend: stdout, mode: batch, batch: { size: 10, linger: 1s } }',
        'queue: { capacity: 50 }',
      ),
    });
    if (!result.ok) throw new Error(result.diagnostics.map(formatDiagnostic).join('\n'));
    expect(result.typology.hydrants.map((h) => [h.name, h.args[0]])).toEqual([['a', 1], ['b', 2]]);
    expect(result.typology.bocca).toMatchObject({ batchSize: 10, lingerMs: 1000 });
    expect(result.typology.queueCapacity).toBe(50);
  });
});
