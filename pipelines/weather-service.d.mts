/** Types for weather-service.mjs (plain JavaScript, so it runs without a build). */
import type { Server } from 'node:net';

export interface WeatherServiceOptions {
  /** Interface to bind. Default '127.0.0.1'. */
  host?: string;
  /** TCP port. Default 0: an OS-assigned free port. */
  port?: number;
  /** Delay before every forecast answer, in ms. Default 2000. */
  latencyMs?: number;
  /** Server processes sharing the port (node:cluster). Default 1: in this process. */
  workers?: number;
  /** Clock for `time` and `is_day`, epoch ms. Default Date.now. In-process only (workers = 1). */
  now?: () => number;
}

export interface WeatherService {
  /** Base URL without a trailing slash, e.g. 'http://127.0.0.1:40123'. */
  url: string;
  port: number;
  /** Stop listening and drop open connections; idempotent. */
  close(): Promise<void>;
}

export function startWeatherService(options?: WeatherServiceOptions): Promise<WeatherService>;

/** The server, not listening yet, and a way to drop every open connection. */
export function createWeatherServer(options: { latencyMs: number; now?: () => number }): {
  server: Server;
  closeAllConnections(): void;
};

/** The Open-Meteo-shaped answer for one query string, or `{ error: true, reason }`. */
export function forecast(params: URLSearchParams, nowMs?: number): Record<string, unknown>;

/** The deterministic weather the service reports for a point. */
export function weatherAt(
  latitude: number,
  longitude: number,
): {
  temperature: number;
  windspeed: number;
  winddirection: number;
  weathercode: number;
  snow: boolean;
  showers: boolean;
  precipitation: number;
  humidity: number;
  cloudcover: number;
  pressure: number;
  elevation: number;
};
