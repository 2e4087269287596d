import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { loadTypologyFile } from '../../src/spec/index.js';

const SCHEMA = fileURLToPath(new URL('../../schemas/typology.schema.json', import.meta.url));
const INLINE = fileURLToPath(new URL('../fixtures/spec/inline.yaml', import.meta.url));

/** Which options each backend takes, and one valid value for each. */
const TAKES: Record<string, Record<string, string>> = {
  stdout: {},
  file: { path: 'out.jsonl' },
  sqlite: { path: 'x.sqlite', table: 't' },
  postgres: { url: 'postgres://127.0.0.1/x', table: 't' },
  mysql: { url: 'mysql://127.0.0.1/x', table: 't' },
  redis: { url: 'redis://127.0.0.1:6379', key: 'k', type: 'stream' },
  module: { module: 'mybocca.ts', export: 'default' },
};
const ALL_OPTIONS: Record<string, string> = { path: 'p.txt', table: 't', url: 'x://y', key: 'k', type: 'list', module: 'm.ts', export: 'e' };

function typology(bocca: Record<string, string>): string {
  const fields = Object.entries(bocca).map(([k, v]) => `  ${k}: "${v}"`);
  return ['name: a', 'hydrant: { module: cityweather.ts, function: getCities }', 'bocca:', ...fields, ''].join('\n');
}

describe('typology.schema.json', () => {
  it('is a valid draft-07 schema that ajv compiles in strict mode', () => {
    const schema = JSON.parse(readFileSync(SCHEMA, 'utf8')) as object;
    const ajv = new Ajv({ strict: true, allowUnionTypes: true, strictTypes: false, strictRequired: false });
    ajv.addKeyword({ keyword: 'x-expect', schemaType: 'string' });
    expect(() => ajv.compile(schema)).not.toThrow();
    expect(path.basename(SCHEMA)).toBe('typology.schema.json');
  });

  describe.each(Object.entries(TAKES))('backend %s', (backend, takes) => {
    it('accepts its own options', async () => {
      const result = await loadTypologyFile(INLINE, { text: typology({ backend, ...takes }), checkModules: false });
      expect(result.ok ? [] : result.diagnostics.map((d) => d.message)).toEqual([]);
    });

    it('rejects every other option by name', async () => {
      const others = Object.keys(ALL_OPTIONS).filter((o) => !(o in takes));
      for (const option of others) {
        const result = await loadTypologyFile(INLINE, { text: typology({ backend, ...takes, [option]: ALL_OPTIONS[option]! }), checkModules: false });
        expect(result.ok).toBe(false);
        if (result.ok) continue;
        expect(result.diagnostics.map((d) => [d.path, d.code])).toEqual([[`bocca.${option}`, 'E_SCHEMA_NOT_APPLICABLE']]);
      }
    });
  });
});
