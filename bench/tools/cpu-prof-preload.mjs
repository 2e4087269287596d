/**
 * `--cpu-prof` for every Node process of a rezina run, including the stage
 * processes a worker forks (Node refuses `--cpu-prof` in NODE_OPTIONS, but
 * accepts `--import`):
 *
 *   NODE_OPTIONS="--import /abs/bench/tools/cpu-prof-preload.mjs" REZINA_BENCH_PROF_DIR=/tmp/prof node ...
 *
 * Starts the V8 sampling profiler at startup and writes
 * `<dir>/<pid>-<argv1 basename>.cpuprofile` when the process exits normally
 * (process.exit or an empty event loop; a SIGKILLed process writes nothing).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Session } from 'node:inspector';

const dir = process.env.REZINA_BENCH_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.REZINA_BENCH_PROF_INTERVAL_US) || 500 });
  session.post('Profiler.start');
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    // Same-thread inspector sessions answer synchronously, so this works inside 'exit'.
    session.post('Profiler.stop', (err, result) => {
      if (err || !result) return;
      fs.mkdirSync(dir, { recursive: true });
      const role = process.env.REZINA_PROC ? JSON.parse(process.env.REZINA_PROC).stage ?? 'stage' : path.basename(process.argv[1] ?? 'node');
      fs.writeFileSync(path.join(dir, `${process.pid}-${role}.cpuprofile`), JSON.stringify(result.profile));
    });
  };
  process.on('exit', write);
}
