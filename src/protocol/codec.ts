import { Packr } from 'msgpackr';

/**
 * Compact binary framing for headers and item batches (msgpack).
 * `useRecords: false` keeps every message self-describing: no shared
 * structure state between processes, so any peer can decode any frame.
 */
const packr = new Packr({ useRecords: false, moreTypes: true });

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

export function decode(buf: Uint8Array): unknown {
  return packr.unpack(buf);
}

const PLAIN_PROTO = Object.prototype;

/**
 * Items are plain data: JSON-like values, Dates, Buffers/typed arrays.
 * Returns a description of the first value that cannot cross a process
 * boundary, or undefined when the item is fine.
 */
export function findUntransferable(value: unknown, path = 'item', depth = 0): string | undefined {
  if (depth > 64) return `${path} is nested more than 64 levels deep`;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return undefined;
    case 'bigint':
      return undefined;
    case 'function':
      return `${path} is a function`;
    case 'symbol':
      return `${path} is a symbol`;
  }
  if (value === null) return undefined;
  if (value instanceof Date || ArrayBuffer.isView(value)) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = findUntransferable(value[i], `${path}[${i}]`, depth + 1);
      if (bad) return bad;
    }
    return undefined;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== PLAIN_PROTO && proto !== null) {
    const name = (value as object).constructor?.name ?? 'unknown';
    return `${path} is an instance of ${name}, not plain data`;
  }
  for (const key of Object.keys(value as object)) {
    const bad = findUntransferable((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1);
    if (bad) return bad;
  }
  return undefined;
}

/** A short, safe preview of an item for logs and errors. */
export function previewItem(item: unknown, max = 200): string {
  let s: string;
  try {
    s = JSON.stringify(item, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(item);
  } catch {
    s = String(item);
  }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
