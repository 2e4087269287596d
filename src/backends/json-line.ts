/**
 * The one JSON encoding of items used by the stdout, file and redis backends
 * and by JSON/TEXT columns of the SQL backends:
 * - Buffer / Uint8Array → base64 string (compact, and what JSON tools such as Go's
 *   encoding/json expect; the `{type:'Buffer',data:[…]}` form is 3–4× larger);
 * - Date → ISO 8601 string (UTC, milliseconds), an invalid Date → null;
 * - bigint → number when it is a safe integer, else a decimal string;
 * - undefined fields, functions and symbols are dropped (as JSON.stringify does),
 *   a top-level undefined item becomes `null`.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, replacer) ?? 'null';
}

function replacer(this: unknown, key: string, value: unknown): unknown {
  // `value` has already been through toJSON (a Buffer is {type,data} by now); the holder keeps the raw value.
  const raw = (this as Record<string, unknown>)[key];
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  if (typeof value === 'bigint') {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  return value;
}
