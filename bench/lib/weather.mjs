/**
 * The stand-in weather service (pipelines/weather-service.mjs) as a child
 * process group of the bench: `--workers` server processes sharing one port
 * (one process holds at most `ulimit -n` connections; a run of 25,000
 * requests in flight needs two).
 */
import path from 'node:path';
import { capture, killGroup, spawnGroup, timeout } from './procs.mjs';
import { ROOT } from './rezina-run.mjs';

/**
 * @param {{ latencyMs: number, workers: number, env?: Record<string,string> }} options
 * @returns {Promise<{ url: string, pid: number, close: () => void }>}
 */
export async function startWeatherProcess({ latencyMs, workers, env = {} }) {
  const child = spawnGroup(process.execPath, [path.join(ROOT, 'pipelines/weather-service.mjs'), '--port', '0', '--latency', String(latencyMs), '--workers', String(workers)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  const err = capture(child.stderr);
  const url = await timeout(
    new Promise((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (s) => {
        out += s;
        const line = out.split('\n')[0];
        if (out.includes('\n')) resolve(line.trim());
      });
      child.once('exit', (code) => reject(new Error(`weather service exited (code ${code}): ${err.text().slice(-500)}`)));
    }),
    15_000,
    'weather service start',
  ).catch((e) => {
    killGroup(child.pid);
    throw e;
  });
  return { url, pid: child.pid, close: () => killGroup(child.pid) };
}
