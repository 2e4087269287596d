#!/usr/bin/env node
/**
 * `npm run demo`: the ancestor's motivating job, on this machine, with no
 * internet. Starts the stand-in weather service (2 s per answer, like the real
 * API was for the ancestor) on a free port, then runs
 *
 *   node dist/cli/main.js run pipelines/cityweather.yaml --once
 *
 * with REZINA_WEATHER_URL pointing at it. The 10 cities take about 2 s in
 * total, not 20 s: two processes of five threads fetch them at once.
 *
 * Options: `--latency MS` (default 2000); anything else is passed on to
 * `rezina run` (`npm run demo -- --some-run-flag`).
 * Exits with the CLI's exit code. SIGINT/SIGTERM are forwarded to the CLI, which
 * shuts down in order; a second signal is forwarded too (the CLI then forces).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';
import path from 'node:path';
import { startWeatherService } from './weather-service.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'cli', 'main.js');
const typology = path.join(root, 'pipelines', 'cityweather.yaml');

let latencyMs = 2000;
const passThrough = [];
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === '--latency') latencyMs = Number(process.argv[++i]);
  else if (arg.startsWith('--latency=')) latencyMs = Number(arg.slice('--latency='.length));
  else passThrough.push(arg);
}
if (!Number.isInteger(latencyMs) || latencyMs < 0) {
  process.stderr.write('demo: --latency must be a whole number of milliseconds\n');
  process.exit(2);
}
if (!existsSync(cli)) {
  process.stderr.write(`demo: ${path.relative(root, cli)} is missing; build first (npm run build)\n`);
  process.exit(2);
}

const service = await startWeatherService({ latencyMs });
// stdout belongs to the bocca's output; say what we did on stderr.
process.stderr.write(`demo: weather service at ${service.url} (${latencyMs} ms per answer)\n`);

const child = spawn(process.execPath, [cli, 'run', typology, '--once', ...passThrough], {
  cwd: root,
  env: { ...process.env, REZINA_WEATHER_URL: service.url },
  stdio: 'inherit',
  // Its own process group: a Ctrl-C in the terminal reaches only this script,
  // which forwards it once. Otherwise the CLI would get it twice (from the
  // terminal and from us) and take the second as "force".
  detached: true,
});

for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}
// If this script dies for another reason, do not leave the CLI running on its own.
process.on('exit', () => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
});

child.on('error', async (err) => {
  process.stderr.write(`demo: could not start the CLI: ${err.message}\n`);
  await service.close();
  process.exit(1);
});

child.on('exit', async (code, signal) => {
  await service.close();
  // A child killed by a signal: exit as a shell would report it (128 + signal number).
  process.exit(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
});
