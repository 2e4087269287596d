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
export function findUntransferable(value: unknown, path = 'item'): string | undefined {
  // The fast check builds no strings; only a bad item pays for the message.
  return isTransferable(value, 0) ? undefined : describeUntransferable(value, path, 0, undefined);
}

function isTransferable(value: unknown, depth: number): boolean {
  if (depth > 64) return false;
  const t = typeof value;
  if (t === 'string' || t === 'number' || t === 'boolean' || t === 'undefined' || t === 'bigint' || value === null) return true;
  if (t !== 'object') return false;
  if (value instanceof Date || ArrayBuffer.isView(value)) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isTransferable(value[i], depth + 1)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== PLAIN_PROTO && proto !== null) return false;
  for (const key in value as object) if (!isTransferable((value as Record<string, unknown>)[key], depth + 1)) return false;
  return true;
}

function describeUntransferable(value: unknown, path: string, depth: number, seen: Set<object> | undefined): string | undefined {
  if (depth > 64) return `${path} is nested more than 64 levels deep`;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
    case 'bigint':
      return undefined;
    case 'function':
      return `${path} is a function`;
    case 'symbol':
      return `${path} is a symbol`;
  }
  if (value === null) return undefined;
  if (value instanceof Date || ArrayBuffer.isView(value)) return undefined;
  // Cycles are rare; only track objects once the item is deeper than a few levels.
  if (depth >= 8) {
    seen ??= new Set();
    if (seen.has(value as object)) return `${path} refers back to an enclosing object (a cycle)`;
    seen.add(value as object);
  }
  const bad = walkChildren(value as object, path, depth, seen);
  seen?.delete(value as object); // only ancestors count: a shared sub-object is not a cycle
  return bad;
}

function walkChildren(value: object, path: string, depth: number, seen: Set<object> | undefined): string | undefined {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = describeUntransferable(value[i], depth < 3 ? `${path}[${i}]` : path, depth + 1, seen);
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
    const bad = describeUntransferable((value as Record<string, unknown>)[key], depth < 3 ? `${path}.${key}` : path, depth + 1, seen);
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
