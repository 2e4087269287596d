#!/usr/bin/env node
/**
 * rezina's performance benchmarks, side by side with their baselines, in one
 * process-run (`npm run bench` = `tsc -p tsconfig.json && node bench/run.mjs`).
 *
 * 1. Small-item throughput. hydrant → pass-through notch → null bocca, one
 *    process of one thread per stage, 500,000 items of 100 bytes
 *    (bench/workloads/small-items.yaml), measured with
 *    `rezina run … --once` (items / the run's seconds). Against:
 *    A. raw ZeroMQ PUSH/PULL, msgpack frames of 512 items, source → pass →
 *       sink processes, same items (bench/baselines/zmq-chain.mjs);
 *    B. BullMQ on the local Redis, a queue per hop and a Worker per stage
 *       process, 20,000 items (bench/baselines/bullmq-chain.mjs).
 *    rezina also runs without its queue journal (`queue: { persist: false }`)
 *    to show what the journal costs. Repetitions interleave the contenders
 *    (ABBA order), so all see the same machine.
 * 2. cityweather at 50,000 cities against the stand-in weather service at
 *    2000 ms latency (bench/workloads/cityweather-50k.yaml: fetch notch
 *    2 processes × 12,500 threads, simplify notch, null bocca), measured with
 *    `rezina run … --once`; against a hand-written Node program doing the same
 *    fetches with the same processes and concurrency
 *    (bench/baselines/fetch-baseline.mjs), with node:http Agents and with the
 *    module's own HTTP client. `--once` runs are cold (every connection is
 *    new); the steady state of a pipeline that runs every 10 s is measured
 *    too: the second of two runs in one long-running `rezina run` (triggered
 *    with `rezina trigger`) against the second round of the same baseline
 *    processes. Other processes × threads splits are tried (fewer
 *    repetitions).
 *
 * Every measurement is repeated (--reps, default 5) and reported as a median
 * with its min–max; ratios are ratios of medians measured in this run. The
 * share of idle CPU in the half second before each measurement (when none of
 * the bench's processes run) and the 1-minute load average are recorded: the
 * machine is shared, and other people's work shows up in the numbers.
 *
 * Output: a table on stdout, progress on stderr, everything in
 * bench/results/latest.json. Exit code 0 when every benchmark produced its
 * numbers (whatever they are), 1 when one could not run.
 *
 * Every process is started in its own process group and killed by group when
 * its measurement ends, fails or times out, and when the bench is interrupted.
 *
 * Options (all optional):
 *   --reps N              repetitions per measurement (5)
 *   --only LIST           throughput,cityweather (both)
 *   --items N             items per throughput run (500000)
 *   --batch N             raw ZeroMQ frame size, items (512)
 *   --bull-items N        items per BullMQ run (20000)
 *   --bull-concurrency N  jobs at once per BullMQ Worker (200)
 *   --bull-reps N         BullMQ repetitions (3)
 *   --cities N            cities per cityweather run (50000)
 *   --split PxT           main processes × threads of the fetch notch (2x12500)
 *   --agent-reps N        repetitions of the node:http Agent baseline, main split
 *                         only (2: at 12,500 sockets a process it times out and
 *                         retries for a minute or more a run)
 *   --warm-reps N         repetitions of the steady-state measurement, main
 *                         split: one long-running `rezina run` (and one set of
 *                         baseline processes) doing two runs, the second timed (3)
 *   --variants LIST       other splits to try, e.g. 2x10000,4x6250 ("" for none)
 *   --variant-reps N      repetitions of each other split (2)
 *   --weather-workers N   weather service processes (2)
 *   --quiet-wait SEC      before each measurement, wait up to SEC seconds for the
 *                         machine to be at least 70% idle (the machine is
 *                         shared); what it was is recorded either way (30)
 *   --budget MIN          wall-clock budget of the whole bench; measurements that
 *                         would start after it are skipped and reported (45)
 *   --cpu-prof DIR        V8 CPU profiles of every rezina process (slows rezina down)
 *   --out FILE            results file (bench/results/latest.json)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { killAll, killAllOnExit, sleep } from './lib/procs.mjs';
import { machineInfo, load1, idleShare } from './lib/machine.mjs';
import { rezinaRunOnce, rezinaRunsInOneProcess, typologyCopy } from './lib/rezina-run.mjs';
import { startWeatherProcess } from './lib/weather.mjs';
import { runZmqChain } from './baselines/zmq-chain.mjs';
import { runBullmqChain } from './baselines/bullmq-chain.mjs';
import { runFetchBaseline } from './baselines/fetch-baseline.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKLOADS = path.join(ROOT, 'bench/workloads');

const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    only: { type: 'string', default: 'throughput,cityweather' },
    items: { type: 'string', default: '500000' },
    batch: { type: 'string', default: '512' },
    'bull-items': { type: 'string', default: '20000' },
    'bull-concurrency': { type: 'string', default: '200' },
    'bull-reps': { type: 'string', default: '3' },
    cities: { type: 'string', default: '50000' },
    split: { type: 'string', default: '2x12500' },
    'agent-reps': { type: 'string', default: '2' },
    'warm-reps': { type: 'string', default: '3' },
    variants: { type: 'string', default: '1x18000,2x10000,4x6250' },
    'variant-reps': { type: 'string', default: '2' },
    'weather-workers': { type: 'string', default: '2' },
    budget: { type: 'string', default: '45' },
    'quiet-wait': { type: 'string', default: '30' },
    'cpu-prof': { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench/results/latest.json') },
  },
});

const int = (name) => {
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got "${opt[name]}"`);
  return n;
};
const split = (s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`a split is PROCESSESxTHREADS such as 2x12500, got "${s}"`);
  return { processes: Number(m[1]), threads: Number(m[2]), label: `${m[1]}×${m[2]}` };
};

const REPS = Math.max(1, int('reps'));
const ONLY = new Set(opt.only.split(',').map((s) => s.trim()));
const ITEMS = int('items');
const CITIES = int('cities');
const cpuProfDir = opt['cpu-prof'] ? path.resolve(opt['cpu-prof']) : undefined;
const DEADLINE = Date.now() + int('budget') * 60_000;
let skipped = 0;

const log = (s) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------- statistics

function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function stats(xs) {
  const ok = xs.filter((x) => Number.isFinite(x));
  return { median: median(ok), min: Math.min(...ok), max: Math.max(...ok), n: ok.length };
}

/** Runs `fn` and records its value or its error; one failed repetition does not end the benchmark. */
async function measure(what, samples, fn) {
  if (Date.now() > DEADLINE) {
    skipped++;
    log(`  ${what}: skipped (the --budget of ${opt.budget} min is spent)`);
    return undefined;
  }
  // On a shared machine, start when the others are quiet, if they get quiet soon.
  const quietUntil = Date.now() + int('quiet-wait') * 1000;
  let idle = await idleShare(500);
  while (idle !== undefined && idle < 0.7 && Date.now() < quietUntil) idle = await idleShare(500);
  const load = load1();
  const t = performance.now();
  try {
    const r = await fn();
    samples.push({ ...r, load1: load, idleBefore: idle });
    log(`  ${what}: ${describe(r)}  (machine idle before: ${idle === undefined ? '?' : `${Math.round(idle * 100)}%`}, load ${load}, ${((performance.now() - t) / 1000).toFixed(1)} s)`);
    return r;
  } catch (err) {
    samples.push({ error: String(err?.message ?? err), load1: load, idleBefore: idle });
    // Its own processes were killed by group where it failed; the weather service stays up.
    log(`  ${what}: FAILED: ${String(err?.message ?? err).split('\n')[0]}`);
    return undefined;
  }
}

function describe(r) {
  const parts = [];
  if (r.itemsPerSecond !== undefined) parts.push(`${fmtInt(r.itemsPerSecond)} items/s`);
  if (r.seconds !== undefined) parts.push(`${r.seconds.toFixed(3)} s`);
  if (r.failed) parts.push(`${r.failed} failed`);
  if (r.retried) parts.push(`${r.retried} retried`);
  return parts.join(', ');
}

const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const fmtS = (x) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '—');

// ---------------------------------------------------------------- 1. throughput

async function throughput(tmp) {
  log(`\n== 1. small-item throughput: ${fmtInt(ITEMS)} items of 100 bytes, 1×1 per stage ==`);
  const file = typologyCopy(path.join(WORKLOADS, 'small-items.yaml'), tmp, 'small-items', (doc) => {
    doc.hydrant.args = [ITEMS];
  });
  // The same typology without the master's queue journal (queue.persist: false), to show what the journal costs.
  const fileNoJournal = typologyCopy(path.join(WORKLOADS, 'small-items.yaml'), tmp, 'small-items-no-journal', (doc) => {
    doc.hydrant.args = [ITEMS];
    doc.queue = { ...doc.queue, persist: false };
  });
  const rezina = [];
  const rezinaNoJournal = [];
  const raw = [];
  const bull = [];
  const runRezina = async (f = file) => {
    const r = await rezinaRunOnce(f, { timeoutMs: 180_000, cpuProfDir });
    if (r.out !== ITEMS || r.failed !== 0) throw new Error(`rezina run moved ${r.out} of ${ITEMS} items (${r.failed} failed)`);
    return { ...r, items: r.out, itemsPerSecond: r.out / r.seconds };
  };
  const runRaw = () => runZmqChain({ n: ITEMS, batch: int('batch'), timeoutMs: 120_000 });
  for (let i = 0; i < REPS; i++) {
    // ABBA: neither contender always goes first.
    const order = i % 2 === 0 ? ['rezina', 'raw', 'nojournal'] : ['nojournal', 'raw', 'rezina'];
    for (const who of order) {
      if (who === 'rezina') await measure(`rep ${i + 1} rezina`, rezina, () => runRezina());
      else if (who === 'nojournal') await measure(`rep ${i + 1} rezina, queue.persist: false`, rezinaNoJournal, () => runRezina(fileNoJournal));
      else await measure(`rep ${i + 1} raw ZeroMQ`, raw, runRaw);
    }
  }
  const bullItems = int('bull-items');
  for (let i = 0; i < Math.max(1, int('bull-reps')); i++) {
    await measure(`rep ${i + 1} BullMQ (${fmtInt(bullItems)} items)`, bull, () =>
      runBullmqChain({ n: bullItems, concurrency: int('bull-concurrency'), timeoutMs: 300_000 }),
    );
  }
  const rate = (xs) => stats(xs.map((s) => s.itemsPerSecond));
  const r = { rezina: rate(rezina), rezinaNoJournal: rate(rezinaNoJournal), raw: rate(raw), bullmq: rate(bull) };
  // Paired ratios (each repetition's rezina over the raw run beside it) as a check on the ratio of medians.
  const paired = rezina.map((s, i) => s.itemsPerSecond / raw[i]?.itemsPerSecond).filter(Number.isFinite);
  return {
    config: { items: ITEMS, itemBytes: 100, batch: int('batch'), processesPerStage: 1, threads: 1, reps: REPS, bullmq: { items: bullItems, concurrency: int('bull-concurrency'), reps: bull.length } },
    samples: { rezina, rezinaNoJournal, raw, bullmq: bull },
    itemsPerSecond: r,
    ratios: {
      rezinaOverRaw: r.rezina.median / r.raw.median,
      rezinaOverRawPairedMedian: median(paired),
      rezinaOverBullmq: r.rezina.median / r.bullmq.median,
      rezinaNoJournalOverRaw: r.rezinaNoJournal.median / r.raw.median,
    },
    goals: {
      halfOfRaw: { goal: '>= 0.5', value: r.rezina.median / r.raw.median, met: r.rezina.median / r.raw.median >= 0.5 },
      tensOfTimesBullmq: { goal: '>= 10', value: r.rezina.median / r.bullmq.median, met: r.rezina.median / r.bullmq.median >= 10 },
    },
  };
}

// ---------------------------------------------------------------- 2. cityweather

async function cityweather(tmp) {
  const main = split(opt.split);
  const variants = opt.variants.split(',').filter((s) => s.trim()).map(split).filter((v) => v.label !== main.label);
  const workers = Math.max(1, int('weather-workers'));
  log(`\n== 2. cityweather: ${fmtInt(CITIES)} cities, 2000 ms per fetch, fetch notch ${main.label} ==`);
  const service = await startWeatherProcess({ latencyMs: 2000, workers });
  log(`  weather service: ${service.url} (${workers} processes)`);
  const env = { REZINA_WEATHER_URL: service.url };
  const fileFor = (s) =>
    typologyCopy(path.join(WORKLOADS, 'cityweather-50k.yaml'), tmp, `cityweather-${s.processes}x${s.threads}`, (doc) => {
      doc.hydrant.args = [CITIES];
      const fetch = doc.notches.find((n) => n.name === 'fetch');
      fetch.processes = s.processes;
      fetch.threads = s.threads;
    });
  const runRezina = (s) => async () => {
    const r = await rezinaRunOnce(fileFor(s), { env, timeoutMs: 180_000, cpuProfDir });
    if (r.out + r.failed !== CITIES) throw new Error(`rezina run accounted for ${r.out + r.failed} of ${CITIES} cities`);
    return r;
  };
  const runBaseline = (s, client) => async () => {
    const r = await runFetchBaseline({ count: CITIES, processes: s.processes, concurrency: s.threads, client, url: service.url, timeoutMs: 180_000 });
    return r;
  };
  // Let the sockets of one measurement close before the next one opens thousands more.
  const pause = () => sleep(2000);
  const splits = [];
  try {
    for (const s of [main, ...variants]) {
      const reps = s === main ? REPS : Math.max(1, int('variant-reps'));
      const rezina = [];
      const baseModule = [];
      const baseAgent = [];
      log(` -- fetch ${s.label} (${s.processes * s.threads} requests in flight at most), ${reps} repetitions`);
      for (let i = 0; i < reps; i++) {
        const order = i % 2 === 0 ? ['rezina', 'module', 'agent'] : ['agent', 'module', 'rezina'];
        for (const who of order) {
          if (who === 'rezina') await measure(`rep ${i + 1} rezina ${s.label}`, rezina, runRezina(s));
          else if (who === 'module') await measure(`rep ${i + 1} baseline ${s.label} (module's client)`, baseModule, runBaseline(s, 'module'));
          else if (s === main && i < int('agent-reps')) await measure(`rep ${i + 1} baseline ${s.label} (node:http Agents)`, baseAgent, runBaseline(s, 'http-agent'));
          else continue;
          await pause();
        }
      }
      const sec = (xs) => stats(xs.map((x) => x.seconds));
      const seconds = { rezina: sec(rezina), baselineModuleClient: sec(baseModule), baselineHttpAgent: sec(baseAgent) };
      splits.push({
        split: s.label,
        processes: s.processes,
        threads: s.threads,
        main: s === main,
        samples: { rezina, baselineModuleClient: baseModule, baselineHttpAgent: baseAgent },
        seconds,
        ratios: {
          rezinaOverBaselineModuleClient: seconds.rezina.median / seconds.baselineModuleClient.median,
          rezinaOverBaselineHttpAgent: seconds.rezina.median / seconds.baselineHttpAgent.median,
        },
      });
    }
    // Steady state (main split): the second run of a long-running rezina, and the second round of the same baseline processes.
    const warmRezina = [];
    const warmBase = [];
    const warmFile = typologyCopy(path.join(WORKLOADS, 'cityweather-50k.yaml'), tmp, 'cityweather-warm', (doc) => {
      doc.hydrant.args = [CITIES];
      const fetch = doc.notches.find((n) => n.name === 'fetch');
      fetch.processes = main.processes;
      fetch.threads = main.threads;
      // No run of its own during the measurement: runs come from `rezina trigger`.
      doc.schedule = { startTime: '2099-01-01 00:00:00' };
    });
    const warmReps = int('warm-reps');
    if (warmReps > 0) log(` -- fetch ${main.label}, steady state: the second of two runs in the same processes, ${warmReps} repetitions`);
    for (let i = 0; i < warmReps; i++) {
      const order = i % 2 === 0 ? ['rezina', 'module'] : ['module', 'rezina'];
      for (const who of order) {
        if (who === 'rezina') {
          await measure(`rep ${i + 1} rezina ${main.label}, 2nd run`, warmRezina, async () => {
            const runs = await rezinaRunsInOneProcess(warmFile, 'bench-cityweather', { env, runs: 2, timeoutMs: 240_000 });
            return { ...runs[1], firstRun: runs[0] };
          });
        } else {
          await measure(`rep ${i + 1} baseline ${main.label} (module's client), 2nd round`, warmBase, async () => {
            const r = await runFetchBaseline({ count: CITIES, processes: main.processes, concurrency: main.threads, client: 'module', url: service.url, rounds: 2, timeoutMs: 240_000 });
            return { ...r.rounds[1], firstRound: r.rounds[0] };
          });
        }
        await pause();
      }
    }
    const m0 = splits.find((x) => x.main);
    if (m0) {
      const sec = (xs) => stats(xs.map((x) => x.seconds));
      m0.warm = {
        samples: { rezina: warmRezina, baselineModuleClient: warmBase },
        seconds: { rezina: sec(warmRezina), baselineModuleClient: sec(warmBase) },
      };
      m0.warm.ratio = m0.warm.seconds.rezina.median / m0.warm.seconds.baselineModuleClient.median;
    }
  } finally {
    service.close();
  }
  const m = splits.find((x) => x.main);
  const best = splits.filter((x) => Number.isFinite(x.seconds.rezina.median)).sort((a, b) => a.seconds.rezina.median - b.seconds.rezina.median)[0];
  return {
    config: { cities: CITIES, latencyMs: 2000, weatherServiceProcesses: workers, reps: REPS, timeout: '8s', retries: 2 },
    splits,
    bestSplit: best?.split,
    goals: {
      under10s: { goal: '< 10 s', value: m.seconds.rezina.median, met: m.seconds.rezina.median < 10, steadyState: m.warm?.seconds.rezina.median },
      within1_3xOfBaseline: {
        goal: '<= 1.3× the hand-written program',
        valueModuleClient: m.ratios.rezinaOverBaselineModuleClient,
        valueHttpAgent: m.ratios.rezinaOverBaselineHttpAgent,
        met: m.ratios.rezinaOverBaselineModuleClient <= 1.3,
      },
    },
  };
}

// ---------------------------------------------------------------- report

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r, i) => {
    const line = r.map((cell, c) => (c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))).join('  ');
    return i === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
  }).join('\n');
}

function report(results) {
  const out = [];
  const m = results.machine;
  out.push(`rezina benchmarks — ${m.date} — ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, commit ${m.gitCommit}${m.gitDirty ? ' (+ uncommitted changes)' : ''}`);
  const t = results.throughput;
  if (t) {
    const i = t.itemsPerSecond;
    const range = (s) => `${fmtInt(s.min)}–${fmtInt(s.max)}`;
    out.push('', `1. Small-item throughput (${fmtInt(t.config.items)} items of 100 B; BullMQ ${fmtInt(t.config.bullmq.items)}), median of ${t.config.reps}:`);
    out.push(
      table([
        ['contender', 'items/s (median)', 'min–max', 'runs'],
        ['rezina run --once (1×1 per stage)', fmtInt(i.rezina.median), range(i.rezina), i.rezina.n],
        ['  same, queue.persist: false (no journal)', fmtInt(i.rezinaNoJournal.median), range(i.rezinaNoJournal), i.rezinaNoJournal.n],
        [`raw ZeroMQ PUSH/PULL, ${t.config.batch}-item frames`, fmtInt(i.raw.median), range(i.raw), i.raw.n],
        [`BullMQ, concurrency ${t.config.bullmq.concurrency}`, fmtInt(i.bullmq.median), range(i.bullmq), i.bullmq.n],
      ]),
    );
    out.push(
      `   rezina / raw ZeroMQ = ${fmtRatio(t.ratios.rezinaOverRaw)} (paired per repetition: ${fmtRatio(t.ratios.rezinaOverRawPairedMedian)}; goal ≥ 0.50: ${t.goals.halfOfRaw.met ? 'met' : 'NOT met'})`,
      `   rezina / BullMQ     = ${fmtRatio(t.ratios.rezinaOverBullmq)} (goal: tens of times: ${t.goals.tensOfTimesBullmq.met ? 'met' : 'NOT met'})`,
      `   rezina without the queue journal / raw ZeroMQ = ${fmtRatio(t.ratios.rezinaNoJournalOverRaw)}`,
    );
  }
  const c = results.cityweather;
  if (c) {
    out.push('', `2. cityweather, ${fmtInt(c.config.cities)} cities at ${c.config.latencyMs} ms per fetch, seconds per run (median; min–max; runs):`);
    const cell = (s) => (s.n ? `${fmtS(s.median)} (${fmtS(s.min)}–${fmtS(s.max)}; ${s.n})` : '—');
    out.push(
      table([
        ['fetch split', 'rezina run --once', 'baseline, module client', 'baseline, node:http Agents', 'rezina/module', 'rezina/Agents'],
        ...c.splits.map((s) => [
          `${s.split}${s.main ? ' (main)' : ''}`,
          cell(s.seconds.rezina),
          cell(s.seconds.baselineModuleClient),
          cell(s.seconds.baselineHttpAgent),
          fmtRatio(s.ratios.rezinaOverBaselineModuleClient),
          fmtRatio(s.ratios.rezinaOverBaselineHttpAgent),
        ]),
      ]),
    );
    const w = c.splits.find((s) => s.main)?.warm;
    if (w && (w.seconds.rezina.n || w.seconds.baselineModuleClient.n)) {
      out.push(
        `   steady state, ${c.splits.find((s) => s.main).split}, second run in the same processes: rezina ${cell(w.seconds.rezina)}, baseline (module client) ${cell(w.seconds.baselineModuleClient)}, rezina/baseline ${fmtRatio(w.ratio)}`,
      );
    }
    out.push(
      `   main split: ${fmtS(c.goals.under10s.value)} s (goal < 10 s: ${c.goals.under10s.met ? 'met' : 'NOT met'}); rezina / baseline = ${fmtRatio(c.goals.within1_3xOfBaseline.valueModuleClient)} with the module's client, ${fmtRatio(c.goals.within1_3xOfBaseline.valueHttpAgent)} with node:http Agents (goal ≤ 1.30×: ${c.goals.within1_3xOfBaseline.met ? 'met' : 'NOT met'})`,
      `   fastest rezina split: ${c.bestSplit}`,
    );
  }
  out.push('', `machine idle in the 0.5 s before each measurement: ${results.idleBeforeRange}; load average (1 min, includes the bench's own processes): ${results.loadRange}`);
  if (results.skippedMeasurements) out.push(`${results.skippedMeasurements} measurements skipped: the time budget was spent`);
  return out.join('\n');
}

// ---------------------------------------------------------------- main

async function main() {
  killAllOnExit();
  if (!fs.existsSync(path.join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/cli/main.js is missing: build first (npx tsc -p .)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rezina-bench-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const results = { machine: machineInfo(ROOT), command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(), options: opt };
  log(`rezina bench: ${results.machine.nproc} × ${results.machine.cpuModel}, Node ${results.machine.node}, load ${results.machine.loadAverageAtStart.join(' ')}`);
  const started = performance.now();
  let failed = false;
  try {
    if (ONLY.has('throughput')) results.throughput = await throughput(tmp);
    if (ONLY.has('cityweather')) results.cityweather = await cityweather(tmp);
  } catch (err) {
    failed = true;
    results.error = String(err?.stack ?? err);
    log(`bench failed: ${results.error}`);
  } finally {
    await killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  results.benchSeconds = Math.round((performance.now() - started) / 100) / 10;
  results.skippedMeasurements = skipped;
  const loads = [];
  const idles = [];
  const walk = (o) => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object')
      for (const [k, v] of Object.entries(o)) {
        if (k === 'load1') loads.push(v);
        else if (k === 'idleBefore') {
          if (typeof v === 'number') idles.push(v);
        } else walk(v);
      }
  };
  walk(results);
  results.loadRange = loads.length ? `${Math.min(...loads)}–${Math.max(...loads)} (median ${median(loads)})` : 'n/a';
  results.idleBeforeRange = idles.length ? `${Math.round(Math.min(...idles) * 100)}–${Math.round(Math.max(...idles) * 100)}% (median ${Math.round(median(idles) * 100)}%)` : 'n/a';
  fs.mkdirSync(path.dirname(opt.out), { recursive: true });
  fs.writeFileSync(opt.out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\n${report(results)}\n\nresults: ${path.relative(process.cwd(), opt.out)} (bench took ${results.benchSeconds} s)\n`);
  const incomplete = (results.throughput && !(results.throughput.itemsPerSecond.rezina.n && results.throughput.itemsPerSecond.raw.n && results.throughput.itemsPerSecond.bullmq.n)) ||
    (results.cityweather && !results.cityweather.splits.find((s) => s.main)?.seconds.rezina.n);
  return failed || incomplete ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err) => {
    log(`bench failed: ${err?.stack ?? err}`);
    await killAll();
    process.exit(1);
  },
);
