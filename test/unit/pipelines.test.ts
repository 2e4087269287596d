/**
 * The example typologies' workspace modules and the stand-in weather service,
 * called directly (no master, no workers). Real cities, a real local HTTP
 * service on an OS-assigned port, the real (slow) numericalcalc functions.
 */
import { readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  conditionsForCode,
  getCities,
  getCityWeather,
  oneWordConditionsForCity,
  WeatherServiceError,
  type City,
  type CityWeather,
} from '../../pipelines/cityweather.js';
import { addOne, discardMultiplesOfTen, multiplyByTwo, numbers, type NumberItem } from '../../pipelines/numericalcalc.js';
import { forecast, startWeatherService, type WeatherService } from '../../pipelines/weather-service.mjs';

const PIPELINES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../pipelines');
const FIXED_NOW = Date.UTC(2026, 11, 3, 20, 18, 3);

/** Sets REZINA_WEATHER_URL for one test and puts the old value back after it. */
const savedUrl = process.env.REZINA_WEATHER_URL;
function useWeatherUrl(url: string): void {
  process.env.REZINA_WEATHER_URL = url;
}
afterEach(() => {
  if (savedUrl === undefined) delete process.env.REZINA_WEATHER_URL;
  else process.env.REZINA_WEATHER_URL = savedUrl;
});

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

/** Sends raw bytes, returns everything the server wrote until it closed. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(bytes));
    let out = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (out += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(out));
  });
}

describe('getCities', () => {
  it('returns the 10 biggest real cities, with sane fields, biggest first', async () => {
    const cities = await getCities(10);
    expect(cities).toHaveLength(10);
    for (const c of cities) {
      expect(Object.keys(c).sort()).toEqual(['country', 'id', 'latitude', 'longitude', 'name', 'population']);
      expect(Number.isInteger(c.id)).toBe(true);
      expect(c.name.length).toBeGreaterThan(0);
      expect(c.country).toMatch(/^[A-Z]{2}$/);
      expect(c.latitude).toBeGreaterThanOrEqual(-90);
      expect(c.latitude).toBeLessThanOrEqual(90);
      expect(c.longitude).toBeGreaterThanOrEqual(-180);
      expect(c.longitude).toBeLessThanOrEqual(180);
      expect(c.population).toBeGreaterThan(5_000_000);
    }
    const populations = cities.map((c) => c.population);
    expect(populations).toEqual([...populations].sort((a, b) => b - a));
    const names = cities.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['Shanghai', 'Mumbai', 'Beijing']));
    const shanghai = cities.find((c) => c.name === 'Shanghai')!;
    expect(shanghai.country).toBe('CN');
    expect(shanghai.latitude).toBeCloseTo(31.2, 0);
    expect(shanghai.longitude).toBeCloseTo(121.5, 0);
  });

  it('is deterministic and hands out copies', async () => {
    const first = await getCities(10);
    first[0].name = 'changed by a caller';
    expect(await getCities(10)).not.toEqual(first);
    const again = await getCities(10);
    expect(await getCities(10)).toEqual(again);
    expect(again[0].name).not.toBe('changed by a caller');
    expect(await getCities()).toEqual(again); // default count is 10
  });

  it('gives 50,000 distinct cities, the first 10 being the same 10', async () => {
    const many = await getCities(50_000);
    expect(many).toHaveLength(50_000);
    expect(new Set(many.map((c) => c.id)).size).toBe(50_000);
    expect(many.slice(0, 10)).toEqual(await getCities(10));
    expect(many.every((c) => Math.abs(c.latitude) <= 90 && Math.abs(c.longitude) <= 180)).toBe(true);
  });

  it('rejects a count it cannot honour', async () => {
    await expect(getCities(-1)).rejects.toThrow(/whole number/);
    await expect(getCities(2.5)).rejects.toThrow(/whole number/);
    await expect(getCities(10_000_000)).rejects.toThrow(/only \d+ cities/);
    expect(await getCities(0)).toEqual([]);
  });
});

describe('weather service', () => {
  let service: WeatherService;
  beforeAll(async () => {
    service = await startWeatherService({ latencyMs: 50, now: () => FIXED_NOW });
  });
  afterAll(() => service.close());

  const berlin = 'latitude=52.52&longitude=13.41';

  it('answers like Open-Meteo, the same every time for the same place', async () => {
    const a = await getJson(`${service.url}/v1/forecast?${berlin}&current_weather=true`);
    const b = await getJson(`${service.url}/v1/forecast?${berlin}&current_weather=true`);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ latitude: 52.52, longitude: 13.41, timezone: 'GMT', utc_offset_seconds: 0 });
    const cw = a.body.current_weather;
    expect(cw).toEqual({
      time: '2026-12-03T20:15',
      interval: 900,
      temperature: expect.any(Number),
      windspeed: expect.any(Number),
      winddirection: expect.any(Number),
      is_day: 0, // 20:15 GMT in Berlin
      weathercode: expect.any(Number),
    });
    expect(b.body.current_weather).toEqual(cw);
    expect(conditionsForCode(cw.weathercode)).not.toBe('Unknown');
    expect(a.body.current).toBeUndefined();
  });

  it('gives different places different weather', async () => {
    const places = Array.from({ length: 20 }, (_, i) => forecast(new URLSearchParams(`latitude=${i * 4 - 40}&longitude=${i * 9 - 90}&current_weather=true`), FIXED_NOW));
    const temperatures = new Set(places.map((p) => (p.current_weather as { temperature: number }).temperature));
    expect(temperatures.size).toBeGreaterThan(10);
  });

  it('answers the `current=` form with the variables asked for', async () => {
    const { status, body } = await getJson(`${service.url}/v1/forecast?${berlin}&current=temperature_2m,weather_code,wind_speed_10m`);
    expect(status).toBe(200);
    expect(Object.keys(body.current).sort()).toEqual(['interval', 'temperature_2m', 'time', 'weather_code', 'wind_speed_10m']);
    expect(body.current_units.temperature_2m).toBe('°C');
    const { body: old } = await getJson(`${service.url}/v1/forecast?${berlin}&current_weather=true`);
    expect(body.current.temperature_2m).toBe(old.current_weather.temperature);
    expect(body.current.weather_code).toBe(old.current_weather.weathercode);
    expect(body.current.wind_speed_10m).toBe(old.current_weather.windspeed);
  });

  it.each([
    ['missing latitude', 'longitude=13.41&current_weather=true', /latitude.*required/i],
    ['missing longitude', 'latitude=52.52&current_weather=true', /longitude.*required/i],
    ['empty latitude', 'latitude=&longitude=13.41', /latitude.*required/i],
    ['latitude not a number', 'latitude=abc&longitude=13.41', /Latitude must be a number/],
    ['latitude out of range', 'latitude=91&longitude=13.41', /Latitude must be in range/],
    ['longitude out of range', 'latitude=1&longitude=-180.5', /Longitude must be in range/],
    ['unknown variable', `${berlin}&current=temperature_2m,bogus`, /bogus/],
  ])('answers 400 with a JSON reason for %s', async (_name, query, reason) => {
    const { status, body } = await getJson(`${service.url}/v1/forecast?${query}`);
    expect(status).toBe(400);
    expect(body.error).toBe(true);
    expect(body.reason).toMatch(reason);
  });

  it('answers 404 elsewhere, 405 to other methods, and stays up after garbage', async () => {
    expect((await getJson(`${service.url}/v2/nothing`)).status).toBe(404);
    const post = await fetch(`${service.url}/v1/forecast?${berlin}`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    await post.arrayBuffer();
    expect(await rawExchange(service.port, 'NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 [^]*Connection: close/);
    expect(await rawExchange(service.port, 'GET / HTTP/1.1\r\nX: ' + 'y'.repeat(20_000))).toMatch(/^HTTP\/1\.1 431 /);
    expect((await getJson(`${service.url}/health`)).body).toEqual({ ok: true });
  });

  it('answers pipelined requests in order and honours Connection: close', async () => {
    const out = await rawExchange(
      service.port,
      `GET /v1/forecast?${berlin}&current_weather=true HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET /v1/forecast?latitude=1 HTTP/1.1\r\nHost: x\r\n\r\n` +
        `HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 400, 200]);
    expect(out.indexOf('"current_weather"')).toBeLessThan(out.indexOf("'longitude' is required"));
    expect(out.endsWith('Connection: close\r\n\r\n')).toBe(true); // HEAD: nothing after the last head
  });

  it('waits its latency before answering, and validates its options', async () => {
    const slow = await startWeatherService({ latencyMs: 300 });
    try {
      const started = performance.now();
      await getJson(`${slow.url}/v1/forecast?${berlin}&current_weather=true`);
      expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    } finally {
      await slow.close();
    }
    await expect(startWeatherService({ latencyMs: -1 })).rejects.toThrow(/latencyMs/);
    await expect(startWeatherService({ port: 70_000 })).rejects.toThrow(/port/);
  });
});

describe('getCityWeather', () => {
  let service: WeatherService;
  beforeAll(async () => {
    service = await startWeatherService({ latencyMs: 50 });
  });
  afterAll(() => service.close());

  it('returns the city with its weather from REZINA_WEATHER_URL', async () => {
    useWeatherUrl(service.url);
    const [city] = await getCities(1);
    const result = await getCityWeather(city);
    const { body } = await getJson(`${service.url}/v1/forecast?latitude=${city.latitude}&longitude=${city.longitude}&current_weather=true`);
    expect(result).toEqual({
      ...city,
      weather: {
        temperature: body.current_weather.temperature,
        windspeed: body.current_weather.windspeed,
        weathercode: body.current_weather.weathercode,
      },
    });
    expect(await getCityWeather(city)).toEqual(result); // deterministic
  });

  it('throws with the status and the body on a non-2xx answer', async () => {
    useWeatherUrl(`${service.url}/`); // a trailing slash is fine
    const bad: City = { id: 1, name: 'Nowhere', country: 'XX', latitude: 95, longitude: 0, population: 0 };
    const err = await getCityWeather(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeatherServiceError);
    expect((err as InstanceType<typeof WeatherServiceError>).status).toBe(400);
    expect((err as Error).message).toMatch(/400.*Latitude must be in range/);
  });

  it('throws on a refused connection, a timeout and a city without coordinates', async () => {
    const closed = await startWeatherService({ latencyMs: 0 });
    await closed.close();
    useWeatherUrl(closed.url);
    const [city] = await getCities(1);
    await expect(getCityWeather(city)).rejects.toThrow(/ECONNREFUSED|closed/);

    const hanging = await startWeatherService({ latencyMs: 5_000 });
    try {
      useWeatherUrl(hanging.url);
      await expect(getCityWeather(city, { timeoutMs: 100 })).rejects.toThrow(/timed out after 100 ms/);
      const controller = new AbortController();
      const pending = getCityWeather(city, { signal: controller.signal });
      controller.abort(new Error('stop now'));
      await expect(pending).rejects.toThrow('stop now');
    } finally {
      await hanging.close();
    }
    await expect(getCityWeather({ name: 'x' } as unknown as City)).rejects.toThrow(TypeError);
  });

  it('runs 20 calls in parallel, not one after another', async () => {
    const slow = await startWeatherService({ latencyMs: 300 });
    try {
      useWeatherUrl(slow.url);
      const cities = await getCities(20);
      const started = performance.now();
      const results = await Promise.all(cities.map((c) => getCityWeather(c)));
      const elapsed = performance.now() - started;
      expect(results.map((r) => r.id)).toEqual(cities.map((c) => c.id));
      // One after another would take 20 × 300 ms = 6 s.
      expect(elapsed).toBeLessThan(3_000);
    } finally {
      await slow.close();
    }
  });
});

describe('oneWordConditionsForCity', () => {
  const city = (weathercode: number, temperature = 12.5): CityWeather => ({
    id: 1,
    name: 'Berlin',
    country: 'DE',
    latitude: 52.52,
    longitude: 13.41,
    population: 3_426_354,
    weather: { temperature, windspeed: 10, weathercode },
  });

  it.each([
    [0, 'Clear'],
    [1, 'Clear'],
    [2, 'Cloudy'],
    [3, 'Cloudy'],
    [45, 'Fog'],
    [48, 'Fog'],
    [51, 'Drizzle'],
    [57, 'Drizzle'],
    [61, 'Rain'],
    [67, 'Rain'],
    [71, 'Snow'],
    [77, 'Snow'],
    [80, 'Showers'],
    [82, 'Showers'],
    [85, 'Snow'],
    [95, 'Thunderstorm'],
    [99, 'Thunderstorm'],
    [42, 'Unknown'],
  ])('WMO code %i is %s', (code, word) => {
    expect(oneWordConditionsForCity(city(code))).toEqual({ city: 'Berlin', country: 'DE', temperature: 12.5, conditions: word });
  });

  it('refuses an item without weather', () => {
    expect(() => oneWordConditionsForCity({ name: 'Berlin' } as unknown as CityWeather)).toThrow(/expected a city with weather/);
  });
});

describe('numericalcalc', () => {
  it('the hydrant is an async generator of { n, value } for 0..49', async () => {
    const gen = numbers();
    expect(typeof gen[Symbol.asyncIterator]).toBe('function');
    const items: NumberItem[] = [];
    for await (const item of gen) items.push(item);
    expect(items).toHaveLength(50);
    expect(items[0]).toEqual({ n: 0, value: 0 });
    expect(items[49]).toEqual({ n: 49, value: 49 });
  });

  it('adds one, multiplies by two, drops multiples of ten: exactly 40 results', async () => {
    const items: NumberItem[] = [];
    for await (const item of numbers(50)) items.push(item);
    const started = performance.now();
    const plusOne = await Promise.all(items.map(addOne));
    const doubled = await Promise.all(plusOne.map(multiplyByTwo));
    const elapsed = performance.now() - started;
    expect(plusOne[4]).toEqual({ n: 4, value: 5 });
    expect(doubled[4]).toEqual({ n: 4, value: 10 });
    const kept = doubled.map(discardMultiplesOfTen).filter((x): x is NumberItem => x !== undefined);
    expect(kept).toHaveLength(40);
    expect(kept.every((x) => x.value === (x.n + 1) * 2 && x.value % 10 !== 0)).toBe(true);
    expect(kept.map((x) => x.n)).not.toContain(4);
    // The functions really do sleep (0.2 s + 0.8 s), concurrently.
    expect(elapsed).toBeGreaterThanOrEqual(950);
  });

  it('the filter returns the item itself or undefined', () => {
    const item = { n: 5, value: 12 };
    expect(discardMultiplesOfTen(item)).toBe(item);
    expect(discardMultiplesOfTen({ n: 4, value: 10 })).toBeUndefined();
    expect(discardMultiplesOfTen({ n: 0, value: 0 })).toBeUndefined();
  });
});

describe('example typology files', () => {
  it.each(['cityweather.yaml', 'numericalcalc.yaml'])('%s names modules and functions that exist', async (file) => {
    const doc = parseYaml(readFileSync(path.join(PIPELINES, file), 'utf8'));
    expect(doc.name).toBe(file.replace('.yaml', ''));
    const refs = [doc.hydrant, ...doc.notches];
    for (const ref of refs) {
      const modulePath = path.join(PIPELINES, ref.module);
      expect(existsSync(modulePath), modulePath).toBe(true);
      const mod = await import(modulePath);
      expect(typeof mod[ref.function], `${ref.module}#${ref.function}`).toBe('function');
    }
  });
});
