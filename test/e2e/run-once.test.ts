/**
 * `rezina run FILE --once` on the two examples, copied into temp dirs:
 * the embedded master + worker run one tick and exit with a summary line.
 * Needs the built CLI (`npx tsc -p .`).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getCities } from '../../pipelines/cityweather.js';
import { startWeatherService } from '../../pipelines/weather-service.mjs';
import { copyExample, makeTempDir, runCli, useProcessCleanup } from '../helpers/processes.js';

useProcessCleanup('each');

/** `run 1 of NAME finished in 1.2 s: 50 in, 40 out, 10 dropped, 0 failed` */
const SUMMARY = /^run (\d+) of (\S+) finished in ([\d.]+) s: (\d+) in, (\d+) out, (\d+) dropped, (\d+) failed/m;

function parseSummary(stderr: string) {
  const m = SUMMARY.exec(stderr);
  if (!m) return undefined;
  return { run: Number(m[1]), typology: m[2], seconds: Number(m[3]), in: Number(m[4]), out: Number(m[5]), dropped: Number(m[6]), failed: Number(m[7]) };
}

describe('rezina run --once', () => {
  it('numericalcalc: 50 in, 40 out, 10 dropped, and exactly the 40 expected values in SQLite', { timeout: 90_000 }, async () => {
    const dir = makeTempDir('numericalcalc');
    const yaml = copyExample('numericalcalc', dir);
    // 19 stage processes start first: slow on a loaded 2-core machine, hence the generous limit.
    const r = await runCli(['run', yaml, '--once', '--state-dir', path.join(dir, 'state')], { cwd: dir, timeoutMs: 80_000 });

    expect(r.code, r.describe()).toBe(0);
    const s = parseSummary(r.stderr);
    expect(s, r.describe()).toMatchObject({ run: 1, typology: 'numericalcalc', in: 50, out: 40, dropped: 10, failed: 0 });

    const dbFile = path.join(dir, 'results', 'numericalcalc.sqlite');
    expect(fs.existsSync(dbFile), `${dbFile} should exist\n${r.describe()}`).toBe(true);
    const db = new Database(dbFile, { readonly: true });
    try {
      const rows = db.prepare('SELECT n, value FROM results').all() as Array<{ n: number; value: number }>;
      expect(rows).toHaveLength(40);
      const expected = new Set<number>();
      for (let n = 0; n < 50; n++) if ((2 * (n + 1)) % 10 !== 0) expected.add(2 * (n + 1));
      expect(new Set(rows.map((row) => row.value))).toEqual(expected);
      // Each row still carries the number it came from.
      for (const row of rows) expect(row.value).toBe(2 * (row.n + 1));
    } finally {
      db.close();
    }
  });

  describe('cityweather against the local weather service', () => {
    const LATENCY_MS = 1000;
    let service: { url: string; close(): Promise<void> };

    beforeAll(async () => {
      service = await startWeatherService({ port: 0, latencyMs: LATENCY_MS });
    });
    afterAll(async () => {
      await service?.close();
    });

    it('prints 10 JSON lines with real city names, fetched in parallel', { timeout: 60_000 }, async () => {
      const dir = makeTempDir('cityweather');
      const yaml = copyExample('cityweather', dir);
      const r = await runCli(['run', yaml, '--once', '--state-dir', path.join(dir, 'state')], {
        cwd: dir,
        env: { REZINA_WEATHER_URL: service.url },
        timeoutMs: 50_000,
      });

      expect(r.code, r.describe()).toBe(0);
      const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
      expect(lines, r.describe()).toHaveLength(10);
      const items = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const item of items) {
        expect(item).toEqual({
          city: expect.any(String),
          country: expect.stringMatching(/^[A-Z]{2}$/),
          temperature: expect.any(Number),
          conditions: expect.stringMatching(/^(Clear|Cloudy|Fog|Drizzle|Rain|Snow|Showers|Thunderstorm|Unknown)$/),
        });
      }
      const expected = (await getCities(10)).map((c) => c.name).sort();
      expect(items.map((i) => i.city as string).sort()).toEqual(expected);

      const s = parseSummary(r.stderr);
      expect(s, r.describe()).toMatchObject({ typology: 'cityweather', in: 10, out: 10, dropped: 0, failed: 0 });
      if (process.env.REZINA_E2E_VERBOSE) console.info(`cityweather run took ${s!.seconds} s (run --once: ${r.ms} ms in all)`);
      // Ten fetches of 1 s each, one after the other, would take 10 s.
      expect(s!.seconds).toBeLessThan(5);
    });
  });
});
