#!/usr/bin/env node
/**
 * Microbenchmark behind a suggestion in BENCHMARKS.md: rezina's
 * `findUntransferable` (dist/protocol/codec.js) against a check that builds
 * no path strings on the happy path (the path is only needed to describe a
 * bad value, so it can be built after one is found).
 *
 *   npx tsc -p . && node bench/tools/untransferable-micro.mjs [items]
 */
import { findUntransferable } from '../../dist/protocol/codec.js';
import { makeItem } from '../workloads/small-items.mjs';

const PLAIN = Object.prototype;

/** true when `value` can cross a process boundary; allocates nothing. */
function isTransferable(value, depth = 0) {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
    case 'bigint':
      return true;
    case 'function':
    case 'symbol':
      return false;
  }
  if (value === null) return true;
  if (depth > 64) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isTransferable(value[i], depth + 1)) return false;
    return true;
  }
  if (value instanceof Date || ArrayBuffer.isView(value)) return true;
  const proto = Object.getPrototypeOf(value);
  if (proto !== PLAIN && proto !== null) return false;
  for (const key in value) if (!isTransferable(value[key], depth + 1)) return false;
  return true;
}

const n = Number(process.argv[2] ?? 500_000);
const items = Array.from({ length: n }, (_, i) => makeItem(i));
for (let round = 1; round <= 5; round++) {
  let t = performance.now();
  for (const item of items) findUntransferable(item);
  const current = performance.now() - t;
  t = performance.now();
  for (const item of items) isTransferable(item);
  const lean = performance.now() - t;
  console.log(`round ${round}: findUntransferable ${current.toFixed(0)} ms, string-free check ${lean.toFixed(0)} ms (${n} items)`);
}
