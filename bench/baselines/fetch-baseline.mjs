/**
 * Baseline of the cityweather benchmark: a hand-written Node program doing
 * the same fetches with the same number of processes, no rezina.
 *
 *   child 0: getCities(count) (the typology's hydrant code; the city list is
 *      │  loaded on the first call in a fresh process, as in rezina's hydrant)
 *   parent: split round-robin into `processes` shares, sent over IPC
 *      ▼
 *   child × processes: fetch its share, `concurrency` requests at once,
 *      oneWordConditionsForCity(answer), result thrown away
 *
 * Two HTTP clients:
 * - `http-agent`: node:http `http.get` with keep-alive `http.Agent`s, as the
 *   module's first version did: 64 agents taken in turn, together holding
 *   `concurrency` sockets. (One Agent with 12,500 sockets does not work:
 *   Agent keeps its sockets in arrays searched linearly, and on this machine
 *   every request of a 2 × 12,500 run timed out.)
 * - `module`: the pipeline module's own `getCityWeather` (its HttpJsonClient,
 *   pipelines/lib/http-json-client.ts) — the same client code rezina runs, so
 *   the ratio to it is rezina's own overhead.
 *
 * The module (pipelines/cityweather.ts) is bundled with esbuild into
 * node_modules/.cache/rezina-bench/, the way rezina compiles it.
 * Timed from the parent's request for the cities (children already started
 * and ready, as rezina's `run --once` waits for its stage processes) to the
 * last child's "done". With `rounds: 2` the same children run the job twice
 * and each round is timed: the second one reuses the kept-alive sockets, as
 * a long-running pipeline's second run does.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { forkGroup, killGroup, message, timeout, exited, sleep } from '../lib/procs.mjs';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '../..');
const CACHE = path.join(ROOT, 'node_modules/.cache/rezina-bench');
const AGENT_SHARDS = 64;
/** As in bench/workloads/cityweather-50k.yaml: timeout 8s, retries 2 (rezina's default backoff: 1 s, doubled). */
const ATTEMPT_TIMEOUT_MS = 8000;
const RETRIES = 2;
const RETRY_BACKOFF_MS = 1000;

/** Bundle pipelines/cityweather.ts (and its local imports) to an importable .mjs; bare imports stay external. */
export async function bundleCityweather() {
  const esbuild = await import('esbuild');
  fs.mkdirSync(CACHE, { recursive: true });
  const outfile = path.join(CACHE, 'cityweather.mjs');
  await esbuild.build({
    entryPoints: [path.join(ROOT, 'pipelines/cityweather.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    logLevel: 'error',
  });
  return outfile;
}

/**
 * @param {{ count: number, processes: number, concurrency: number, client: 'http-agent' | 'module',
 *           url: string, timeoutMs?: number }} options
 * @returns {Promise<{ seconds: number, items: number, failed: number }>}
 */
export async function runFetchBaseline({ count, processes, concurrency, client, url, rounds = 1, timeoutMs = 120_000 }) {
  const bundle = await bundleCityweather();
  const env = {
    ...process.env,
    REZINA_WEATHER_URL: url,
    BENCH_BUNDLE: bundle,
    BENCH_CONCURRENCY: String(concurrency),
    BENCH_CLIENT: client,
  };
  const procs = [];
  try {
    return await timeout(
      (async () => {
        for (let i = 0; i < processes; i++) procs.push(forkGroup(SELF, ['child'], { env }));
        await Promise.all(procs.map((p) => message(p, (m) => m.type === 'ready')));
        const done = [];
        for (let round = 0; round < rounds; round++) {
          const t0 = performance.now();
          // What the hydrant does in a run: load and sort the city list (first time in a
          // fresh process, like rezina's hydrant process), take the first `count`.
          const got = message(procs[0], (m) => m.type === 'cities');
          procs[0].send({ type: 'getCities', count });
          const { cities } = await got;
          const shares = Array.from({ length: processes }, () => []);
          cities.forEach((c, i) => shares[i % processes].push(c));
          const dones = procs.map((p) => message(p, (m) => m.type === 'done'));
          procs.forEach((p, i) => p.send({ type: 'go', cities: shares[i] }));
          const results = await Promise.all(dones);
          done.push({
            seconds: (performance.now() - t0) / 1000,
            items: results.reduce((n, r) => n + r.ok, 0),
            failed: results.reduce((n, r) => n + r.failed, 0),
            retried: results.reduce((n, r) => n + r.retried, 0),
            errors: results.flatMap((r) => r.errors),
          });
        }
        for (const p of procs) p.send({ type: 'exit' });
        await Promise.all(procs.map((p) => timeout(exited(p), 5000, 'fetch baseline exit').catch(() => killGroup(p.pid))));
        return { ...done[0], rounds: done };
      })(),
      timeoutMs,
      `fetch baseline (${client})`,
    );
  } finally {
    for (const p of procs) killGroup(p.pid);
  }
}

async function child() {
  const mod = await import(pathToFileURL(process.env.BENCH_BUNDLE).href);
  const concurrency = Number(process.env.BENCH_CONCURRENCY);
  const base = process.env.REZINA_WEATHER_URL.replace(/\/+$/, '');
  const agents = Array.from({ length: AGENT_SHARDS }, () => new http.Agent({ keepAlive: true, maxSockets: Math.ceil(concurrency / AGENT_SHARDS), timeout: 60_000 }));
  let nextAgent = 0;

  /** node:http + keep-alive Agent: GET, parse JSON, shape like getCityWeather does. */
  const viaAgent = (city) =>
    new Promise((resolve, reject) => {
      const url = `${base}/v1/forecast?latitude=${city.latitude}&longitude=${city.longitude}&current_weather=true`;
      nextAgent = (nextAgent + 1) % AGENT_SHARDS;
      const req = http.get(url, { agent: agents[nextAgent], headers: { accept: 'application/json' } }, (res) => {
        res.setEncoding('utf8');
        let body = '';
        res.on('data', (s) => (body += s));
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== 200) return reject(new Error(`${url} answered ${res.statusCode}`));
          try {
            const cw = JSON.parse(body).current_weather;
            resolve({ ...city, weather: { temperature: cw.temperature, windspeed: cw.windspeed, weathercode: cw.weathercode } });
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', reject);
      });
      const timer = setTimeout(() => req.destroy(new Error(`${url} timed out`)), ATTEMPT_TIMEOUT_MS);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  const fetchOne = process.env.BENCH_CLIENT === 'module' ? (city) => mod.getCityWeather(city, { timeoutMs: ATTEMPT_TIMEOUT_MS }) : viaAgent;

  process.on('disconnect', () => process.exit(1));
  process.on('message', async (m) => {
    if (m.type === 'exit') process.exit(0);
    if (m.type === 'getCities') {
      process.send({ type: 'cities', cities: await mod.getCities(m.count) });
      return;
    }
    if (m.type !== 'go') return;
    const cities = m.cities;
    let next = 0;
    let ok = 0;
    let failed = 0;
    let retried = 0;
    const errors = [];
    const lane = async () => {
      while (next < cities.length) {
        const city = cities[next++];
        // The typology's policy: 8 s per attempt, 2 retries after 1 s and 2 s.
        for (let attempt = 0; ; attempt++) {
          try {
            const simple = mod.oneWordConditionsForCity(await fetchOne(city));
            if (simple) ok++;
            break;
          } catch (err) {
            if (attempt < RETRIES) {
              retried++;
              await sleep(RETRY_BACKOFF_MS * 2 ** attempt);
              continue;
            }
            failed++;
            if (errors.length < 3) errors.push(String(err?.message ?? err));
            break;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, cities.length) }, lane));
    process.send({ type: 'done', ok, failed, retried, errors });
  });
  process.send({ type: 'ready' });
}

if (process.argv[1] === SELF && process.argv[2] === 'child') {
  child().catch((err) => {
    process.stderr.write(`fetch-baseline child: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
