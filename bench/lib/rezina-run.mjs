/**
 * One `rezina run FILE --once`, as a user would type it, in its own process
 * group: the CLI waits until every stage process is up, triggers one run,
 * prints `run 1 of NAME finished in S s: I in, O out, D dropped, F failed`
 * on stderr and exits. With `-v` the master also logs the run as a JSON line
 * whose `seconds` has millisecond precision (the summary line rounds to
 * 0.1 s); that value is used when present.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { capture, exited, killGroup, sleep, spawnGroup, timeout } from './procs.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'dist/cli/main.js');
/** State dirs of runs in progress, removed even when the bench is interrupted. */
const stateDirs = new Set();
process.on('exit', () => {
  for (const dir of stateDirs) fs.rmSync(dir, { recursive: true, force: true });
});
function makeStateDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rezina-bench-state-'));
  stateDirs.add(dir);
  return dir;
}
function removeStateDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  stateDirs.delete(dir);
}

const SUMMARY = /run (\d+) of (\S+) finished in ([\d.]+) s: (\d+) in, (\d+) out, (\d+) dropped, (\d+) failed/;

/**
 * Write a copy of the typology `source` into `dir` with module paths made
 * absolute and `edit(doc)` applied to the parsed YAML; returns its path.
 */
export function typologyCopy(source, dir, name, edit) {
  const doc = YAML.parse(fs.readFileSync(source, 'utf8'));
  const base = path.dirname(source);
  const abs = (o) => {
    if (o && typeof o.module === 'string') o.module = path.resolve(base, o.module);
  };
  abs(doc.hydrant);
  for (const h of doc.hydrants ?? []) abs(h);
  for (const n of doc.notches ?? []) abs(n);
  abs(doc.bocca);
  edit(doc);
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, YAML.stringify(doc));
  return file;
}

/**
 * @param {string} file typology YAML
 * @param {{ env?: Record<string,string>, timeoutMs: number, cpuProfDir?: string }} options
 * @returns {Promise<{ seconds: number, in: number, out: number, dropped: number, failed: number, wallSeconds: number }>}
 */
export async function rezinaRunOnce(file, { env = {}, timeoutMs, cpuProfDir }) {
  const stateDir = makeStateDir();
  const childEnv = { ...process.env, ...env, REZINA_LOG_FORMAT: 'json' };
  if (cpuProfDir) {
    // Node refuses --cpu-prof in NODE_OPTIONS; a preload reaches the forked stage processes too.
    childEnv.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${path.join(ROOT, 'bench/tools/cpu-prof-preload.mjs')}`.trim();
    childEnv.REZINA_BENCH_PROF_DIR = cpuProfDir;
  }
  const started = performance.now();
  const child = spawnGroup(process.execPath, [CLI, 'run', file, '--once', '--state-dir', stateDir, '-v'], { cwd: ROOT, env: childEnv });
  const err = capture(child.stderr);
  capture(child.stdout);
  try {
    const { code, signal } = await timeout(exited(child), timeoutMs, `rezina run ${path.basename(file)}`);
    const text = err.text();
    const m = SUMMARY.exec(text);
    if (!m) {
      const tail = text.split('\n').filter(Boolean).slice(-8).join('\n');
      throw new Error(`rezina run ${path.basename(file)} ended (${signal ?? `code ${code}`}) without a run summary:\n${tail}`);
    }
    let seconds = Number(m[3]);
    for (const line of text.split('\n')) {
      if (!line.startsWith('{') || !line.includes('"run finished"')) continue;
      try {
        const o = JSON.parse(line);
        if (o.msg === 'run finished' && typeof o.seconds === 'number') seconds = o.seconds;
      } catch {
        // not one of ours
      }
    }
    return {
      seconds,
      in: Number(m[4]),
      out: Number(m[5]),
      dropped: Number(m[6]),
      failed: Number(m[7]),
      wallSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    // The group: the CLI, and its worker's stage processes if any were left.
    killGroup(child.pid);
    removeStateDir(stateDir);
  }
}

/** A free TCP port on 127.0.0.1 (bound, read back, released). */
async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Runs the CLI once (get, trigger…) and resolves with its stdout. */
async function cli(args, env) {
  const child = spawnGroup(process.execPath, [CLI, ...args], { cwd: ROOT, env });
  const out = capture(child.stdout);
  const err = capture(child.stderr);
  try {
    const { code } = await timeout(exited(child), 20_000, `rezina ${args[0]}`);
    if (code !== 0) throw new Error(`rezina ${args.join(' ')} exited with code ${code}: ${err.text().slice(-300)}`);
    return out.text();
  } finally {
    killGroup(child.pid);
  }
}

/**
 * Steady state: one long-running `rezina run FILE` (no --once; the typology
 * copy must have no schedule that fires during the measurement) with
 * `runs` runs triggered one after the other with `rezina trigger`, once every
 * stage process is up. Resolves with each run's summary; runs after the
 * first find the stage processes warm (loaded modules, kept-alive sockets).
 *
 * @returns {Promise<Array<{ seconds: number, in: number, out: number, dropped: number, failed: number }>>}
 */
export async function rezinaRunsInOneProcess(file, name, { env = {}, runs = 2, timeoutMs }) {
  const stateDir = makeStateDir();
  const childEnv = { ...process.env, ...env, REZINA_LOG_FORMAT: 'json' };
  const port = await freePort();
  const master = `127.0.0.1:${port}`;
  const child = spawnGroup(process.execPath, [CLI, 'run', file, '--port', String(port), '--state-dir', stateDir, '-v'], { cwd: ROOT, env: childEnv });
  const err = capture(child.stderr);
  capture(child.stdout);
  const gone = exited(child).then(({ code, signal }) => {
    throw new Error(`rezina run ${path.basename(file)} ended (${signal ?? `code ${code}`}): ${err.text().split('\n').filter(Boolean).slice(-5).join('\n')}`);
  });
  gone.catch(() => {});
  const summaries = () => {
    const found = new Map();
    for (const line of err.text().split('\n')) {
      const m = SUMMARY.exec(line);
      if (m) found.set(Number(m[1]), { ...found.get(Number(m[1])), seconds: Number(m[3]), in: Number(m[4]), out: Number(m[5]), dropped: Number(m[6]), failed: Number(m[7]) });
      if (line.startsWith('{') && line.includes('"run finished"')) {
        try {
          const o = JSON.parse(line);
          if (typeof o.seconds === 'number' && typeof o.run === 'number') {
            const prev = found.get(o.run) ?? {};
            found.set(o.run, { ...prev, preciseSeconds: o.seconds });
          }
        } catch {
          // not one of ours
        }
      }
    }
    return found;
  };
  try {
    return await timeout(
      Promise.race([
        gone,
        (async () => {
          // Every stage process up?
          for (;;) {
            await sleep(250);
            let rows;
            try {
              rows = JSON.parse(await cli(['get', 'typologies', '-o', 'json', '-m', master], childEnv));
            } catch {
              continue; // the master is not listening yet
            }
            const row = rows.find((r) => r.name === name);
            const m = /^(\d+)\/(\d+)$/.exec(String(row?.processes ?? ''));
            if (m && m[1] === m[2]) break;
          }
          const out = [];
          for (let i = 0; i < runs; i++) {
            const before = summaries().size;
            await cli(['trigger', name, '-m', master], childEnv);
            for (;;) {
              await sleep(100);
              const found = summaries();
              if (found.size > before) {
                const id = Math.max(...found.keys());
                const s = found.get(id);
                if (s.in === undefined) continue; // the JSON line came first; wait for the summary line
                out.push({ ...s, seconds: s.preciseSeconds ?? s.seconds, run: id });
                break;
              }
            }
          }
          return out;
        })(),
      ]),
      timeoutMs,
      `rezina run ${path.basename(file)} (${runs} runs)`,
    );
  } finally {
    killGroup(child.pid, 'SIGTERM');
    await Promise.race([exited(child), sleep(3000)]);
    killGroup(child.pid);
    removeStateDir(stateDir);
  }
}
