import { configError } from './backend-error.js';

type Options = Readonly<Record<string, unknown>>;

/** A string option; `undefined` when absent, a config error when present but not a non-empty string. */
export function optionalString(backend: string, options: Options, key: string): string | undefined {
  const value = options[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw configError(backend, `option "${key}" must be a non-empty string, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

export function requiredString(backend: string, options: Options, key: string): string {
  const value = optionalString(backend, options, key);
  if (value === undefined) throw configError(backend, `option "${key}" is required`);
  return value;
}

export function optionalBoolean(backend: string, options: Options, key: string): boolean | undefined {
  const value = options[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw configError(backend, `option "${key}" must be true or false, got ${JSON.stringify(value)}`);
  return value;
}
