/**
 * Workload of the small-item throughput benchmark, shared by rezina's
 * typology (small-items.yaml) and the raw ZeroMQ / BullMQ baselines, so every
 * contender moves exactly the same items through the same functions.
 *
 *   items(n)  ──▶  pass(item)  ──▶  NullBocca#write (null-bocca.mjs: does nothing)
 *   (hydrant)      (notch)          (bocca, backend: module)
 *
 * Each item is a plain object of 100 bytes once msgpack-encoded.
 */

/** Item number `i`: 100 bytes as msgpack (for i < 10,000,000). */
export function makeItem(i) {
  return {
    id: i,
    key: `item-${String(i).padStart(7, '0')}`,
    value: i * 0.5,
    tags: ['bench', 'small'],
    payload: 'abcdefghijklmnopqrstuvwxyz012345678',
  };
}

/** Hydrant: `n` items, generated lazily (a sync generator, like a cursor over a table). */
export function* items(n = 500_000) {
  for (let i = 0; i < n; i++) yield makeItem(i);
}

/** Notch: pass-through. */
export function pass(item) {
  return item;
}

export { default as NullBocca } from './null-bocca.mjs';
