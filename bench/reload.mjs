#!/usr/bin/env node
/**
 * Hot-reload benchmark (issue 3): how fast a saved edit takes effect.
 *
 *   npx tsc -p . && node bench/reload.mjs [--edits 20] [--switches 4] [--timeout 300] [--logs DIR]
 *
 * (a) Schedule edit latency. A typology ticks on `interval: 2s`; the file is
 *     saved 20 times, alternating 2s → 1s and 1s → 2s, each save made 100 ms
 *     after an even-second tick. Measured per save:
 *       - save → the master's "typology configured" log line for it;
 *       - for 2s → 1s: save → the first tick on the new schedule (the next odd
 *         second, 0.9 s after the save, if the change was in by then), and how
 *         many 1 s boundaries it missed;
 *       - for 1s → 2s: whether the next odd second was (wrongly) still fired.
 * (b) Version switch under load. A typology with `interval: 1s` streams
 *     2,000 items a tick through notch `a` (about 1 ms an item, 4 at a time:
 *     busy for most of each second);
 *     a notch `b` is inserted, then removed, then inserted… while items flow.
 *     Measured per switch: save → "typology configured"; save → the first item
 *     in the bocca file that went through the new version's chain; save → the
 *     old version's "version retired". At the end the schedule is stopped and
 *     every item is checked: each id exactly once, every tick complete.
 *
 * Output: a human summary on stderr, one JSON object on stdout. Exit code 0
 * when the benchmark ran (whatever the numbers), 1 when it could not.
 * Everything binds 127.0.0.1 with OS-assigned ports, lives in temp dirs, and
 * every process started here is killed by process group when it ends, fails,
 * times out, or is interrupted.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { capture, killAll, killAllOnExit, sleep, spawnGroup, timeout } from './lib/procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const EDITS = option('edits', 20);
const SWITCHES = option('switches', 4);
const TIMEOUT_S = option('timeout', 300);
const ITEMS_PER_TICK = 2000;
/** `--logs DIR`: keep the master's and worker's logs of each part there. */
const LOGS_DIR = (() => {
  const i = process.argv.indexOf('--logs');
  return i > 0 ? path.resolve(process.argv[i + 1] ?? '.') : undefined;
})();

const say = (s) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------------------- fixtures

const FIXTURE = `import { setTimeout as sleep } from 'node:timers/promises';
const PROC = JSON.parse(process.env.REZINA_PROC ?? '{}') as { stage?: string; version?: number };
const VIA = \`\${PROC.stage}@v\${PROC.version}\`;
interface Item { id: string; tick: string; n: number; via: string[] }
let ticks = 0;
export async function* stream(count = 10): AsyncGenerator<Item> {
  const tick = \`\${process.pid}.\${Date.now()}.\${++ticks}\`;
  for (let n = 0; n < count; n++) yield { id: \`\${tick}-\${n}\`, tick, n, via: [] };
}
export function tag(item: Item): Item {
  return { ...item, via: [...item.via, VIA] };
}
export async function slow(item: Item): Promise<Item> {
  await sleep(1);
  return { ...item, via: [...item.via, VIA] };
}
`;

function tickerYaml(interval) {
  return `name: ticker
schedule:
  interval: ${interval}
hydrant:
  module: fx.ts
  function: stream
  args: [1]
notches:
  - name: tag
    module: fx.ts
    function: tag
bocca:
  backend: file
  path: results/ticker.jsonl
`;
}

function flowYaml(withB) {
  return `name: flow
schedule:
  interval: 1s
hydrant:
  module: fx.ts
  function: stream
  args: [${ITEMS_PER_TICK}]
notches:
  - name: a
    module: fx.ts
    function: slow
    threads: 4
${withB ? `  - name: b
    module: fx.ts
    function: tag
` : ''}bocca:
  backend: file
  path: results/flow.jsonl
queue:
  capacity: 2000
`;
}

// ---------------------------------------------------------------------------- processes

const tempDirs = [];
function tempDir(label) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `rezina-bench-reload-${label}-`));
  tempDirs.push(d);
  return d;
}

const ENV = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REZINA_'))), REZINA_LOG_FORMAT: 'json', NODE_NO_WARNINGS: '1' };

/** A master (its JSON log parsed on demand) and one worker. */
async function startCluster(workspace) {
  const stateDir = tempDir('state');
  const master = spawnGroup(process.execPath, [CLI, 'master', '--port', '0', '--workspace', workspace, '--state-dir', stateDir], { env: ENV, cwd: tempDir('cwd') });
  const masterErr = capture(master.stderr, 200_000_000);
  capture(master.stdout);
  const port = await waitFor(() => /^rezina master listening on 127\.0\.0\.1:(\d+),/m.exec(masterErr.text())?.[1], 20_000, 'the master to listen', () => masterErr.text());
  const address = `127.0.0.1:${port}`;
  const worker = spawnGroup(process.execPath, [CLI, 'worker', '--master', address, '--name', 'bench'], { env: ENV, cwd: tempDir('cwd') });
  const workerErr = capture(worker.stderr);
  capture(worker.stdout);
  let parsedUpTo = 0;
  const lines = [];
  /** The master's log lines so far (parsed incrementally). */
  const log = () => {
    const text = masterErr.text();
    const end = text.lastIndexOf('\n');
    if (end >= parsedUpTo) {
      for (const line of text.slice(parsedUpTo, end).split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(line));
        } catch {
          // not a log line
        }
      }
      parsedUpTo = end + 1;
    }
    return lines;
  };
  return { master, worker, address, log, masterText: () => masterErr.text(), workerText: () => workerErr.text() };
}

function cli(args, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { env: ENV, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`rezina ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}
const cliJson = async (args, address) => JSON.parse(await cli([...args, '-o', 'json', '--master', address]));

/** Polls `probe` every `everyMs` until it returns something truthy. */
async function waitFor(probe, timeoutMs, what, context = () => '', everyMs = 10) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) {
      const c = context();
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${c ? `\n${String(c).slice(-4000)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

const findLog = (cluster, msg, where = {}, after = 0) =>
  cluster.log().find((l) => l.msg === msg && l.time >= after && Object.entries(where).every(([k, v]) => l[k] === v));

async function waitReady(cluster, name) {
  await waitFor(
    async () => {
      const rows = await cliJson(['get', 'typologies'], cluster.address);
      const r = rows.find((t) => t.name === name);
      if (!r || r.status !== 'running') return false;
      const [a, b] = String(r.processes).split('/').map(Number);
      return a === b && a > 0;
    },
    30_000,
    `${name} to be ready`,
    cluster.masterText,
    200,
  );
}

/** Sleeps until the wall clock is `phaseMs` past a multiple of `periodMs`. */
async function alignTo(periodMs, phaseMs) {
  const wait = (phaseMs - (Date.now() % periodMs) + periodMs) % periodMs;
  await sleep(wait < 20 ? wait + periodMs : wait);
}

/** Reads a growing JSONL file incrementally. */
function tailJsonl(file) {
  let offset = 0;
  let rest = '';
  return () => {
    let fd;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return [];
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= offset) return [];
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      offset = size;
      const text = rest + buf.toString('utf8');
      const parts = text.split('\n');
      rest = parts.pop();
      return parts.filter(Boolean).map((l) => JSON.parse(l));
    } finally {
      fs.closeSync(fd);
    }
  };
}

const stats = (xs) => {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  if (v.length === 0) return { n: 0, medianMs: null, worstMs: null };
  const mid = v.length >> 1;
  return { n: v.length, medianMs: v.length % 2 ? v[mid] : Math.round((v[mid - 1] + v[mid]) / 2), worstMs: v[v.length - 1], bestMs: v[0] };
};

// ---------------------------------------------------------------------------- (a) schedule edits

async function scheduleEdits() {
  const ws = tempDir('ticker');
  fs.writeFileSync(path.join(ws, 'fx.ts'), FIXTURE);
  const file = path.join(ws, 'ticker.yaml');
  fs.writeFileSync(file, tickerYaml('2s'));
  const cluster = await startCluster(ws);
  await waitReady(cluster, 'ticker');
  await waitFor(() => findLog(cluster, 'run finished', { typology: 'ticker' }), 15_000, 'a first run', cluster.masterText);

  const edits = [];
  let interval = '2s';
  for (let i = 1; i <= EDITS; i++) {
    const to = interval === '2s' ? '1s' : '2s';
    // 100 ms after an even second: the next odd second is 900 ms away.
    await alignTo(2000, 100);
    const savedAt = Date.now();
    fs.writeFileSync(file, tickerYaml(to));
    const version = i + 1;
    const configured = await waitFor(() => findLog(cluster, 'typology configured', { typology: 'ticker', version }), 10_000, `"typology configured" version ${version}`, cluster.masterText);
    const nextOdd = Math.floor(savedAt / 2000) * 2000 + 1000;
    const nextEven = nextOdd + 1000;
    const edit = { edit: i, change: `${interval} → ${to}`, saveToConfiguredMs: configured.time - savedAt };
    if (to === '1s') {
      // The first tick on the new schedule: the first run started at an odd second.
      const first = await waitFor(
        () => cluster.log().find((l) => l.msg === 'run started' && l.typology === 'ticker' && l.time >= savedAt && Math.floor(l.time / 1000) % 2 === 1),
        10_000,
        'a tick on the 1 s schedule',
        cluster.masterText,
      );
      const fireTime = Math.floor(first.time / 1000) * 1000;
      edit.saveToFirstNewTickMs = fireTime - savedAt;
      edit.missedBoundaries = Math.round((fireTime - nextOdd) / 1000);
    } else {
      // On 2 s again: the next odd second must stay quiet. Wait past the next even tick to know.
      await waitFor(() => cluster.log().find((l) => l.msg === 'run started' && l.typology === 'ticker' && l.time >= nextEven - 50), 10_000, 'the next even-second tick', cluster.masterText);
      edit.oddSecondStillFired = cluster.log().some((l) => l.msg === 'run started' && l.typology === 'ticker' && l.time >= nextOdd - 50 && l.time < nextOdd + 500);
    }
    edits.push(edit);
    say(`  (a) edit ${String(i).padStart(2)}: ${edit.change}  configured after ${edit.saveToConfiguredMs} ms${edit.saveToFirstNewTickMs !== undefined ? `, first 1 s tick ${edit.saveToFirstNewTickMs} ms after the save (${edit.missedBoundaries} boundaries missed)` : edit.oddSecondStillFired ? ', but the old 1 s tick still fired' : ''}`);
    interval = to;
  }
  await stopCluster(cluster, 'schedule');
  return {
    edits,
    saveToConfigured: stats(edits.map((e) => e.saveToConfiguredMs)),
    saveToFirstNewTick: stats(edits.map((e) => e.saveToFirstNewTickMs)),
    missedBoundaries: edits.reduce((n, e) => n + (e.missedBoundaries ?? 0), 0),
    staleTicks: edits.filter((e) => e.oddSecondStillFired).length,
    within1s: edits.filter((e) => e.saveToConfiguredMs <= 1000).length,
  };
}

// ---------------------------------------------------------------------------- (b) version switches under load

async function versionSwitches() {
  const ws = tempDir('flow');
  fs.writeFileSync(path.join(ws, 'fx.ts'), FIXTURE);
  const file = path.join(ws, 'flow.yaml');
  const outFile = path.join(ws, 'results', 'flow.jsonl');
  fs.writeFileSync(file, flowYaml(false));
  const cluster = await startCluster(ws);
  await waitReady(cluster, 'flow');
  const tail = tailJsonl(outFile);
  const items = [];
  const pull = () => {
    const got = tail();
    for (const it of got) items.push(it);
    return got;
  };
  // Warm: two runs through.
  await waitFor(() => cluster.log().filter((l) => l.msg === 'run finished' && l.typology === 'flow').length >= 2, 20_000, 'two warm-up runs', cluster.masterText, 50);
  pull();

  const switches = [];
  let withB = false;
  let version = 1;
  for (let k = 1; k <= SWITCHES; k++) {
    withB = !withB;
    const oldVersion = version;
    version = oldVersion + 1;
    // Save just after a tick, while its items are in the queues.
    await alignTo(1000, 100);
    const savedAt = Date.now();
    fs.writeFileSync(file, flowYaml(withB));
    const configured = await waitFor(() => findLog(cluster, 'typology configured', { typology: 'flow', version }), 10_000, `"typology configured" version ${version}`, cluster.masterText);
    const inFlight = cli(['describe', 'flow', '--master', cluster.address]).then(
      (text) => JSON.parse(text).retiringVersions?.find((r) => r.version === oldVersion)?.itemsInFlight ?? 0,
      () => null,
    );
    const onVersion = (v) => v.slice(v.lastIndexOf('@v') + 2) === String(version);
    let firstNewAt;
    await waitFor(
      () => {
        const got = pull();
        if (got.some((it) => it.via.length > 0 && it.via.every(onVersion))) firstNewAt = Date.now();
        return firstNewAt;
      },
      20_000,
      `the first item through version ${version}`,
      cluster.masterText,
      5,
    );
    const firstRun = findLog(cluster, 'run started', { typology: 'flow', version }, savedAt);
    const retired = await waitFor(() => findLog(cluster, 'version retired', { typology: 'flow', version: oldVersion }), 30_000, `version ${oldVersion} to retire`, cluster.masterText, 20);
    const s = {
      switch: k,
      change: withB ? 'insert notch b' : 'remove notch b',
      saveToConfiguredMs: configured.time - savedAt,
      saveToFirstNewRunMs: firstRun ? firstRun.time - savedAt : null,
      saveToFirstNewChainItemMs: firstNewAt - savedAt,
      saveToOldRetiredMs: retired.time - savedAt,
      oldItemsInFlightAtSwitch: await inFlight,
    };
    switches.push(s);
    say(`  (b) switch ${k}: ${s.change}  configured ${s.saveToConfiguredMs} ms, first run on v${version} ${s.saveToFirstNewRunMs} ms, first item through v${version} ${s.saveToFirstNewChainItemMs} ms, v${oldVersion} retired ${s.saveToOldRetiredMs} ms after the save (${s.oldItemsInFlightAtSwitch ?? '?'} items in it at the switch)`);
    // One whole run on the new version before the next switch.
    const runsNow = cluster.log().filter((l) => l.msg === 'run finished' && l.typology === 'flow').length;
    await waitFor(() => cluster.log().filter((l) => l.msg === 'run finished' && l.typology === 'flow').length >= runsNow + 1, 20_000, 'a run on the new version', cluster.masterText, 50);
  }

  // Stop, let everything finish, and check every item.
  await cli(['stop', 'flow', '--master', cluster.address]);
  const runs = await waitFor(
    async () => {
      const rs = await cliJson(['get', 'runs', 'flow'], cluster.address);
      return rs.every((r) => r.status === 'finished') ? rs : false;
    },
    60_000,
    'every run to finish',
    cluster.masterText,
    250,
  );
  await waitFor(() => {
    pull();
    return items.length >= runs.reduce((n, r) => n + r.out, 0);
  }, 10_000, 'the bocca file to hold every item', () => `${items.length} items`, 50).catch(() => undefined);
  pull();
  const all = [...readAll(outFile)];
  const seen = new Map();
  const byTick = new Map();
  for (const it of all) {
    seen.set(it.id, (seen.get(it.id) ?? 0) + 1);
    if (!byTick.has(it.tick)) byTick.set(it.tick, new Set());
    byTick.get(it.tick).add(it.n);
    byTick.get(it.tick).chains ??= new Set();
    byTick.get(it.tick).chains.add(it.via.join(' → '));
  }
  const duplicates = [...seen.values()].filter((c) => c > 1).length;
  let missing = 0;
  for (const ns of byTick.values()) missing += ITEMS_PER_TICK - ns.size;
  const mixedTicks = [...byTick.values()].filter((ns) => ns.chains.size > 1).length;
  const ticksWithoutRun = byTick.size - runs.length;
  await stopCluster(cluster, 'switch');
  return {
    switches,
    saveToConfigured: stats(switches.map((s) => s.saveToConfiguredMs)),
    saveToFirstNewRun: stats(switches.map((s) => s.saveToFirstNewRunMs)),
    saveToFirstNewChainItem: stats(switches.map((s) => s.saveToFirstNewChainItemMs)),
    saveToOldRetired: stats(switches.map((s) => s.saveToOldRetiredMs)),
    delivery: {
      runs: runs.length,
      itemsOut: runs.reduce((n, r) => n + r.out, 0),
      failed: runs.reduce((n, r) => n + r.failed, 0),
      linesInBocca: all.length,
      uniqueIds: seen.size,
      duplicateIds: duplicates,
      missingIds: missing,
      ticksThroughMoreThanOneChain: mixedTicks,
      ticksWithoutRun,
    },
  };
}

function* readAll(file) {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return;
  }
  for (const line of text.split('\n')) if (line) yield JSON.parse(line);
}

async function stopCluster(cluster, label) {
  if (LOGS_DIR) {
    fs.mkdirSync(LOGS_DIR, { recursive: true });
    fs.writeFileSync(path.join(LOGS_DIR, `${label}-master.log`), cluster.masterText());
    fs.writeFileSync(path.join(LOGS_DIR, `${label}-worker.log`), cluster.workerText());
  }
  for (const p of [cluster.worker, cluster.master]) {
    try {
      process.kill(-p.pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await sleep(300);
  for (const p of [cluster.worker, cluster.master]) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

// ---------------------------------------------------------------------------- main

async function main() {
  if (!fs.existsSync(CLI)) {
    say(`bench/reload.mjs: ${path.relative(process.cwd(), CLI)} is missing; build first: npx tsc -p .`);
    return 1;
  }
  killAllOnExit();
  const started = Date.now();
  const result = { benchmark: 'reload', date: new Date().toISOString(), host: { cpus: os.cpus().length, node: process.version }, goals: { scheduleChangeEffectiveMs: 1000, itemsLost: 0 } };
  try {
    await timeout(
      (async () => {
        say(`(a) schedule edits: ${EDITS} saves alternating interval 2s ↔ 1s`);
        result.scheduleEdits = await scheduleEdits();
        say(`(b) version switches under load: ${SWITCHES} saves inserting/removing a notch, ${ITEMS_PER_TICK} items a second`);
        result.versionSwitches = await versionSwitches();
      })(),
      TIMEOUT_S * 1000,
      'the reload benchmark',
    );
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    await killAll();
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  }
  result.seconds = Math.round((Date.now() - started) / 100) / 10;

  const a = result.scheduleEdits;
  const b = result.versionSwitches;
  say('');
  say('rezina hot reload');
  if (a) {
    say(`  schedule edit, save → applied ("typology configured"): median ${a.saveToConfigured.medianMs} ms, worst ${a.saveToConfigured.worstMs} ms over ${a.saveToConfigured.n} edits (${a.within1s}/${a.edits.length} within 1 s; goal 1 s)`);
    say(`  2s → 1s, save → first tick on the new schedule: median ${a.saveToFirstNewTick.medianMs} ms, worst ${a.saveToFirstNewTick.worstMs} ms (the next boundary was 900 ms after the save; ${a.missedBoundaries} missed); 1s → 2s: ${a.staleTicks} stale ticks`);
  }
  if (b) {
    say(`  version switch under load (${ITEMS_PER_TICK} items/s), save → configured: median ${b.saveToConfigured.medianMs} ms, worst ${b.saveToConfigured.worstMs} ms`);
    say(`    save → first run started on the new version (next 1 s tick): median ${b.saveToFirstNewRun.medianMs} ms, worst ${b.saveToFirstNewRun.worstMs} ms`);
    say(`    save → first item through the new chain: median ${b.saveToFirstNewChainItem.medianMs} ms, worst ${b.saveToFirstNewChainItem.worstMs} ms`);
    say(`    save → old version retired: median ${b.saveToOldRetired.medianMs} ms, worst ${b.saveToOldRetired.worstMs} ms`);
    const d = b.delivery;
    say(`    delivery over ${d.runs} runs: ${d.linesInBocca} items in the bocca for ${d.itemsOut} out, ${d.duplicateIds} duplicated, ${d.missingIds} missing, ${d.ticksThroughMoreThanOneChain} ticks through more than one chain`);
  }
  if (result.error) say(`  FAILED: ${result.error}`);
  say(`  (${result.seconds} s)`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return result.error ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err) => {
    say(`bench/reload.mjs: ${err instanceof Error ? err.stack : String(err)}`);
    await killAll();
    process.exitCode = 1;
  },
);
