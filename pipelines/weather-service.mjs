#!/usr/bin/env node
/**
 * A local stand-in for the Open-Meteo forecast API, so the cityweather example,
 * the tests and the benchmarks never need the internet.
 *
 *   GET /v1/forecast?latitude=52.52&longitude=13.41&current_weather=true
 *   GET /v1/forecast?latitude=52.52&longitude=13.41&current=temperature_2m,weather_code,wind_speed_10m
 *   GET /health                                  → 200 {"ok":true}
 *
 * Answers are shaped like Open-Meteo's and are deterministic: temperature,
 * wind and weather code come from a hash of the coordinates (rounded to 4
 * decimals), so the same city always gets the same weather. Only `time` (the
 * current 15-minute slot, as Open-Meteo reports it) and `is_day` (derived from
 * that time and the longitude) follow the clock; inject `now` to pin them.
 * Every answer waits `latencyMs` first, like the real API did for the ancestor.
 * Bad or missing coordinates get 400 `{"error":true,"reason":"..."}`, as
 * Open-Meteo does.
 *
 * Built for load: a lean HTTP/1.1 on node:net (see below), no per-request
 * logging, no connection limit, 120 s keep-alive, a deep listen backlog. One
 * process holds at most as many connections as its file-descriptor limit
 * allows (`ulimit -n`); for more, start several server processes sharing the
 * port with `workers` / `--workers`.
 *
 * Run directly:
 *   node pipelines/weather-service.mjs [--host 127.0.0.1] [--port 8089] [--latency 2000] [--workers 1]
 * prints its URL on stdout and serves until SIGINT/SIGTERM.
 */
import cluster from 'node:cluster';
import net from 'node:net';
import { realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);
/** Marks a cluster worker started by `startWeatherService({ workers > 1 })`. */
const WORKER_ENV = 'REZINA_WEATHER_SERVICE_WORKER';

/**
 * @typedef {object} WeatherServiceOptions
 * @property {string} [host]       interface to bind; default '127.0.0.1'
 * @property {number} [port]       TCP port; default 0 (an OS-assigned free port)
 * @property {number} [latencyMs]  delay before every answer, in ms; default 2000
 * @property {number} [workers]    server processes sharing the port; default 1 (in this process)
 * @property {() => number} [now]  clock for `time`/`is_day`, epoch ms; default Date.now (in-process only)
 *
 * @typedef {object} WeatherService
 * @property {string} url          base URL without a trailing slash, e.g. 'http://127.0.0.1:40123'
 * @property {number} port
 * @property {() => Promise<void>} close  stops listening and drops open connections; idempotent
 */

/**
 * Start the service and resolve once it listens.
 * @param {WeatherServiceOptions} [options]
 * @returns {Promise<WeatherService>}
 */
export async function startWeatherService({
  host = '127.0.0.1',
  port = 0,
  latencyMs = 2000,
  workers = 1,
  now = Date.now,
} = {}) {
  checkNumber('port', port, 0, 65535);
  checkNumber('latencyMs', latencyMs, 0, 3_600_000);
  checkNumber('workers', workers, 1, 256);
  if (workers > 1) return startCluster({ host, port, latencyMs, workers });

  const { server, closeAllConnections } = createWeatherServer({ latencyMs, now });
  await listen(server, host, port);
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  /** @type {Promise<void> | undefined} */
  let closing;
  return {
    url: baseUrl(host, address.port),
    port: address.port,
    close() {
      closing ??= new Promise((resolve) => {
        server.close(() => resolve(undefined));
        // Kept-alive sockets would otherwise hold close() open until they idle out.
        closeAllConnections();
      });
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------
// HTTP/1.1, the small part of it this service needs.
//
// Written on node:net rather than node:http because on a 2-core machine the
// service shares the CPU with the pipeline it serves: node:http spends about
// 0.08 ms of CPU per request, this about 0.03 ms (measured with 15,000
// kept-alive clients). It speaks enough HTTP for curl, fetch (undici) and
// http.get: GET and HEAD, keep-alive (HTTP/1.1 default, HTTP/1.0 on request),
// `Connection: close`, pipelined requests answered in order. Anything with a
// request body, an oversized head or a malformed request line gets an error
// answer and the connection is closed.

const MAX_HEAD_BYTES = 16 * 1024;
const MAX_PIPELINED = 256;
const KEEP_ALIVE_S = 120;

/**
 * A listening-ready net.Server answering forecasts, and a way to drop every open connection.
 * @param {{ latencyMs: number, now?: () => number }} options
 */
export function createWeatherServer({ latencyMs, now = Date.now }) {
  /** @type {Set<import('node:net').Socket>} */
  const sockets = new Set();
  // Idle kept-alive connections are dropped after KEEP_ALIVE_S; a connection
  // waiting for its answer is never idle for longer than the latency.
  const idleMs = Math.max(KEEP_ALIVE_S * 1000, latencyMs + 30_000);
  const server = net.createServer({ noDelay: true }, (socket) => serveConnection(socket, { latencyMs, now, idleMs, sockets }));
  // No maxConnections: unlimited. An accept error (EMFILE once the fd limit
  // is reached) must not take the service down; that client sees a reset.
  server.on('error', () => {});
  return {
    server,
    closeAllConnections() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** One response slot per request, so pipelined answers leave in request order. */
class Slot {
  /** @type {string | null} */ text = null;
  close = false;
  /** @type {NodeJS.Timeout | undefined} */ timer = undefined;
}

/**
 * @param {import('node:net').Socket} socket
 * @param {{ latencyMs: number, now: () => number, idleMs: number, sockets: Set<import('node:net').Socket> }} ctx
 */
function serveConnection(socket, { latencyMs, now, idleMs, sockets }) {
  sockets.add(socket);
  socket.setEncoding('latin1'); // request heads are ASCII; latin1 maps bytes 1:1 and never fails
  socket.setTimeout(idleMs, () => socket.destroy());
  socket.on('error', () => {}); // a client that vanished is its own business
  /** @type {Slot[]} */
  const slots = [];
  let buffered = '';
  let closing = false;

  socket.on('close', () => {
    sockets.delete(socket);
    for (const slot of slots) clearTimeout(slot.timer);
    slots.length = 0;
  });

  const flush = () => {
    while (slots.length > 0 && slots[0].text !== null) {
      const slot = /** @type {Slot} */ (slots.shift());
      if (socket.destroyed) return;
      if (slot.close) {
        socket.end(slot.text);
        return;
      }
      socket.write(slot.text);
    }
  };

  /** Queue an answer, now or after the latency. */
  const answer = (status, body, { head = false, close = false, delayMs = 0, started = 0 } = {}) => {
    const slot = new Slot();
    slot.close = close;
    slots.push(slot);
    const fill = () => {
      slot.timer = undefined;
      if (body && typeof body === 'object' && 'generationtime_ms' in body) {
        body.generationtime_ms = Math.round((performance.now() - started) * 1000) / 1000;
      }
      slot.text = responseText(status, body, head, close);
      flush();
    };
    if (delayMs > 0) slot.timer = setTimeout(fill, delayMs);
    else fill();
  };

  socket.on('data', (/** @type {string} */ chunk) => {
    if (closing) return;
    buffered = buffered ? buffered + chunk : chunk;
    let end;
    while (!closing && (end = buffered.indexOf('\r\n\r\n')) !== -1) {
      const headText = buffered.slice(0, end).replace(/^(?:\r\n)+/, ''); // RFC 9112 §2.2: ignore leading empty lines
      buffered = buffered.slice(end + 4);
      const started = performance.now();
      const req = parseHead(headText);
      if (typeof req === 'string') {
        closing = true;
        answer(400, { error: true, reason: req }, { close: true });
        break;
      }
      const isHead = req.method === 'HEAD';
      if (req.hasBody || (req.method !== 'GET' && !isHead)) {
        // We do not read request bodies, so the rest of the stream cannot be trusted: answer and close.
        closing = true;
        answer(405, { error: true, reason: `Method ${req.method} is not allowed (GET or HEAD only).` }, { close: true });
        break;
      }
      if (slots.length >= MAX_PIPELINED) {
        closing = true;
        answer(429, { error: true, reason: 'Too many pipelined requests.' }, { close: true });
        break;
      }
      if (req.close) closing = true;
      const { status, body, delay } = route(req.target, now);
      answer(status, body, { head: isHead, close: req.close, delayMs: delay ? latencyMs : 0, started });
    }
    if (!closing && buffered.length > MAX_HEAD_BYTES) {
      closing = true;
      answer(431, { error: true, reason: 'Request head too large.' }, { close: true });
    }
  });
}

/**
 * @param {string} text  request line and headers, without the final blank line
 * @returns {{ method: string, target: string, close: boolean, hasBody: boolean } | string} the request, or why it is malformed
 */
function parseHead(text) {
  const lineEnd = text.indexOf('\r\n');
  const requestLine = lineEnd === -1 ? text : text.slice(0, lineEnd);
  const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(requestLine);
  if (!m) return `Malformed request line: ${JSON.stringify(requestLine.slice(0, 80))}`;
  const http10 = m[3] === '0';
  let close = http10;
  let hasBody = false;
  if (lineEnd !== -1) {
    for (const line of text.slice(lineEnd + 2).split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon <= 0) return `Malformed header line: ${JSON.stringify(line.slice(0, 80))}`;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim().toLowerCase();
      if (name === 'connection') {
        if (/\bclose\b/.test(value)) close = true;
        else if (http10 && /\bkeep-alive\b/.test(value)) close = false;
      } else if (name === 'transfer-encoding' || (name === 'content-length' && value !== '0')) {
        hasBody = true;
      }
    }
  }
  return { method: m[1], target: m[2], close, hasBody };
}

/** @returns {{ status: number, body: Record<string, unknown>, delay: boolean }} */
function route(target, now) {
  let url;
  try {
    url = new URL(target, 'http://localhost');
  } catch {
    return { status: 400, body: { error: true, reason: 'Malformed request target.' }, delay: false };
  }
  if (url.pathname === '/health') return { status: 200, body: { ok: true }, delay: false };
  if (url.pathname !== '/v1/forecast') {
    return { status: 404, body: { error: true, reason: `No such endpoint: ${url.pathname.slice(0, 100)}` }, delay: false };
  }
  const body = forecast(url.searchParams, now());
  return 'error' in body ? { status: 400, body, delay: false } : { status: 200, body, delay: true };
}

const REASONS = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large' };
let dateHeader = '';
let dateSecond = -1;

function responseText(status, body, head, close) {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateHeader = new Date(second * 1000).toUTCString();
  }
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${REASONS[/** @type {keyof REASONS} */ (status)] ?? 'Error'}\r\n` +
    `Content-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    `Date: ${dateHeader}\r\n` +
    (status === 405 ? 'Allow: GET, HEAD\r\n' : '') +
    (close ? 'Connection: close\r\n' : `Connection: keep-alive\r\nKeep-Alive: timeout=${KEEP_ALIVE_S}\r\n`) +
    `\r\n` +
    (head ? '' : json)
  );
}

/** Variables accepted in `current=`, with their units. */
const CURRENT_UNITS = {
  temperature_2m: '°C',
  relative_humidity_2m: '%',
  apparent_temperature: '°C',
  is_day: '',
  precipitation: 'mm',
  rain: 'mm',
  showers: 'mm',
  snowfall: 'cm',
  weather_code: 'wmo code',
  cloud_cover: '%',
  pressure_msl: 'hPa',
  surface_pressure: 'hPa',
  wind_speed_10m: 'km/h',
  wind_direction_10m: '°',
  wind_gusts_10m: 'km/h',
};

/**
 * The Open-Meteo-shaped answer for one query, or `{ error: true, reason }`.
 * @param {URLSearchParams} params
 * @param {number} nowMs
 */
export function forecast(params, nowMs = Date.now()) {
  const latitude = coordinate(params.get('latitude'), 'Latitude', 90);
  if (typeof latitude === 'string') return { error: true, reason: latitude };
  const longitude = coordinate(params.get('longitude'), 'Longitude', 180);
  if (typeof longitude === 'string') return { error: true, reason: longitude };

  const currentParam = params.get('current');
  const current = currentParam ? currentParam.split(',').map((v) => v.trim()).filter(Boolean) : [];
  for (const variable of current) {
    if (!Object.hasOwn(CURRENT_UNITS, variable)) {
      return { error: true, reason: `Cannot initialize WeatherVariable from invalid String value ${variable}.` };
    }
  }

  const w = weatherAt(latitude, longitude);
  // Open-Meteo reports "current" conditions per 15-minute slot, in GMT, without seconds.
  const slot = Math.floor(nowMs / 900_000) * 900_000;
  const time = new Date(slot).toISOString().slice(0, 16);
  const solarHour = (((new Date(slot).getUTCHours() + new Date(slot).getUTCMinutes() / 60 + longitude / 15) % 24) + 24) % 24;
  const isDay = solarHour >= 6 && solarHour < 18 ? 1 : 0;

  /** @type {Record<string, unknown>} */
  const answer = {
    latitude,
    longitude,
    generationtime_ms: 0,
    utc_offset_seconds: 0,
    timezone: 'GMT',
    timezone_abbreviation: 'GMT',
    elevation: w.elevation,
  };
  if (params.get('current_weather') === 'true') {
    answer.current_weather_units = {
      time: 'iso8601',
      interval: 'seconds',
      temperature: '°C',
      windspeed: 'km/h',
      winddirection: '°',
      is_day: '',
      weathercode: 'wmo code',
    };
    answer.current_weather = {
      time,
      interval: 900,
      temperature: w.temperature,
      windspeed: w.windspeed,
      winddirection: w.winddirection,
      is_day: isDay,
      weathercode: w.weathercode,
    };
  }
  if (current.length > 0) {
    const values = {
      temperature_2m: w.temperature,
      relative_humidity_2m: w.humidity,
      apparent_temperature: round1(w.temperature - w.windspeed / 10),
      is_day: isDay,
      precipitation: w.precipitation,
      rain: w.snow ? 0 : w.precipitation,
      showers: w.showers ? w.precipitation : 0,
      snowfall: w.snow ? round1(w.precipitation * 0.7) : 0,
      weather_code: w.weathercode,
      cloud_cover: w.cloudcover,
      pressure_msl: w.pressure,
      surface_pressure: round1(w.pressure - w.elevation / 8.3),
      wind_speed_10m: w.windspeed,
      wind_direction_10m: w.winddirection,
      wind_gusts_10m: round1(w.windspeed * 1.6),
    };
    /** @type {Record<string, unknown>} */
    const units = { time: 'iso8601', interval: 'seconds' };
    /** @type {Record<string, unknown>} */
    const out = { time, interval: 900 };
    for (const v of current) {
      units[v] = CURRENT_UNITS[/** @type {keyof CURRENT_UNITS} */ (v)];
      out[v] = values[/** @type {keyof typeof values} */ (v)];
    }
    answer.current_units = units;
    answer.current = out;
  }
  return answer;
}

/** @returns {number | string} the value, or the reason it is not one */
function coordinate(raw, label, limit) {
  if (raw === null || raw.trim() === '') return `Parameter '${label.toLowerCase()}' is required.`;
  const value = Number(raw);
  if (!Number.isFinite(value)) return `${label} must be a number. Given: '${raw.slice(0, 40)}'.`;
  if (value < -limit || value > limit) return `${label} must be in range of -${limit} to ${limit}°. Given: ${value}.`;
  return value;
}

/** WMO codes this service hands out, grouped by how they feel. */
const DRY_CODES = [0, 0, 0, 1, 1, 2, 2, 3, 3, 45, 48];
const WET_CODES = [51, 53, 55, 61, 63, 65, 80, 81, 82, 95, 96];
const SNOW_CODES = [71, 73, 75, 77, 85, 86];

/**
 * Plausible, deterministic weather for a point: warmer near the equator,
 * snow only when it is cold, thunder mostly in the tropics.
 */
export function weatherAt(latitude, longitude) {
  const h = hash32(`${latitude.toFixed(4)},${longitude.toFixed(4)}`);
  const r = (shift) => ((h >>> shift) & 0xff) / 255; // independent-ish uniform draws in [0, 1]
  const absLat = Math.abs(latitude);
  const temperature = round1(30 - absLat * 0.55 + (r(0) - 0.5) * 16);
  const wet = r(8) < 0.35;
  let weathercode;
  if (!wet) weathercode = pick(DRY_CODES, r(16));
  else if (temperature <= 1) weathercode = pick(SNOW_CODES, r(16));
  else weathercode = pick(WET_CODES, r(16));
  if ((weathercode === 95 || weathercode === 96) && absLat > 45) weathercode = 63;
  const snow = SNOW_CODES.includes(weathercode);
  const showers = weathercode >= 80 && weathercode <= 82;
  return {
    temperature,
    windspeed: round1(r(24) * 35 + (wet ? 5 : 0)),
    winddirection: Math.floor(r(4) * 359.99),
    weathercode,
    snow,
    showers,
    precipitation: wet ? round1(0.1 + r(12) * 6) : 0,
    humidity: Math.round(wet ? 75 + r(20) * 25 : 30 + r(20) * 45),
    cloudcover: weathercode === 0 ? 0 : weathercode === 1 ? 20 : weathercode === 2 ? 55 : Math.round(80 + r(28) * 20),
    pressure: round1(1000 + r(10) * 30),
    elevation: Math.round(r(2) * 400),
  };
}

/** FNV-1a, 32 bits, then a final avalanche so nearby coordinates differ everywhere. */
function hash32(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const pick = (list, u) => list[Math.min(list.length - 1, Math.floor(u * list.length))];
const round1 = (x) => Math.round(x * 10) / 10;

function checkNumber(name, value, min, max) {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`weather service: ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
}

function baseUrl(host, port) {
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${port}`;
}

/** @param {import('node:net').Server} server */
function listen(server, host, port) {
  return new Promise((resolve, reject) => {
    const onError = (err) => reject(err);
    server.once('error', onError);
    // The kernel caps the backlog at net.core.somaxconn; ask for plenty so a burst
    // of connects is queued instead of dropped (a dropped SYN costs a 1 s retry).
    server.listen({ host, port, backlog: 65_535 }, () => {
      server.off('error', onError);
      resolve(undefined);
    });
  });
}

/**
 * Several server processes on one port (node:cluster, round-robin accept), for
 * more connections than one process's fd limit allows.
 */
async function startCluster({ host, port, latencyMs, workers }) {
  if (!cluster.isPrimary) throw new Error('weather service: cannot start a cluster from a cluster worker');
  // A clean execArgv: this file is plain JavaScript, and the parent's flags (`-e`, test-runner loaders) must not leak in.
  cluster.setupPrimary({ exec: SELF, args: [], execArgv: [], silent: false });
  const env = {
    [WORKER_ENV]: JSON.stringify({ host, port, latencyMs }),
  };
  const forked = [];
  const listening = [];
  for (let i = 0; i < workers; i++) {
    const worker = cluster.fork(env);
    forked.push(worker);
    listening.push(
      new Promise((resolve, reject) => {
        worker.once('listening', (address) => resolve(address.port));
        worker.once('exit', (code) => reject(new Error(`weather service worker exited with code ${code} before listening`)));
      }),
    );
  }
  let actualPort;
  try {
    [actualPort] = await Promise.all(listening);
  } catch (err) {
    for (const w of forked) w.process.kill();
    throw err;
  }
  let closing;
  return {
    url: baseUrl(host, actualPort),
    port: actualPort,
    close() {
      closing ??= Promise.all(
        forked.map(
          (w) =>
            new Promise((resolve) => {
              if (w.isDead()) return resolve(undefined);
              w.once('exit', () => resolve(undefined));
              w.process.kill('SIGTERM');
            }),
        ),
      ).then(() => undefined);
      return closing;
    },
  };
}

/** Body of a cluster worker: one in-process server on the shared port. */
async function runClusterWorker() {
  const { host, port, latencyMs } = JSON.parse(process.env[WORKER_ENV] ?? '{}');
  const { server, closeAllConnections } = createWeatherServer({ latencyMs });
  await listen(server, host, port);
  const stop = () => {
    server.close(() => process.exit(0));
    closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The primary went away: do not linger as an orphan.
  process.once('disconnect', stop);
}

async function main() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', short: 'p', default: '8089' },
      latency: { type: 'string', short: 'l', default: '2000' },
      workers: { type: 'string', short: 'w', default: '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node pipelines/weather-service.mjs [--host 127.0.0.1] [--port 8089] [--latency 2000] [--workers 1]\n',
    );
    return;
  }
  const service = await startWeatherService({
    host: values.host,
    port: Number(values.port),
    latencyMs: Number(values.latency),
    workers: Number(values.workers),
  });
  process.stdout.write(`${service.url}\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(1); // a second signal forces
    stopping = true;
    service.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

function isMain() {
  if (!process.argv[1]) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (cluster.isWorker && process.env[WORKER_ENV]) {
  runClusterWorker().catch((err) => {
    process.stderr.write(`weather service worker: ${err?.message ?? err}\n`);
    process.exit(1);
  });
} else if (isMain()) {
  main().catch((err) => {
    process.stderr.write(`weather service: ${err?.message ?? err}\n`);
    process.exit(1);
  });
}
