/**
 * One contract, every bocca backend (BullMQ's adapter conformance idea): each
 * case says how to make a fresh target (unique table / key / file), how to read
 * back what was written, and what the items look like once stored. The SQL
 * backends run against the machine's PostgreSQL, MariaDB and Redis; a service
 * that is not running fails the suite (start it, see the environment notes),
 * it is never skipped.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, type BackendContext, BackendError, builtinBackends } from '../../src/backends/index.js';
import { silentLogger } from '../../src/log.js';
import { DownBocca, MemoryBocca, forget, memoryObject, recorded } from '../fixtures/backends/memory-bocca.js';
import { startProxy } from '../fixtures/backends/tcp-proxy.js';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const MYSQL_URL = 'mysql://root@127.0.0.1:3306/test';
const REDIS_URL = 'redis://127.0.0.1:6379';
const PORTS = { postgres: 5432, mysql: 3306, redis: 6379 };

const registry = builtinBackends();
const scratch = mkdtempSync(join(tmpdir(), 'rezina-backends-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let counter = 0;
const uniqueId = (): string => `rz_${process.pid}_${++counter}_${randomBytes(3).toString('hex')}`;

// ---------------------------------------------------------------------------
// What items look like once stored

const isPlain = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/** The JSON encoding the stdout, file and redis backends promise: Buffers base64, Dates ISO. */
function jsonCanon(v: unknown): unknown {
  if (v === undefined) return null;
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(jsonCanon);
  if (isPlain(v)) return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, jsonCanon(x)]));
  return v;
}

/**
 * A stored row as the SQL backends promise it: an object's keys as columns (a
 * non-object in `value`), `_id` renamed `_id_`, nulls absent (read back drops them).
 * sqlite keeps booleans as 0/1 and objects as JSON text; postgres and mysql have types.
 */
function sqlRow(item: unknown, flavor: 'sqlite' | 'typed'): Record<string, unknown> {
  const fields = isPlain(item) ? Object.entries(item) : [['value', item] as [string, unknown]];
  const row: Record<string, unknown> = {};
  for (const [key, v] of fields) {
    if (v === null || v === undefined) continue;
    const column = key === '_id' || key === '_written_at' ? `${key}_` : key;
    if (typeof v === 'boolean' && flavor === 'sqlite') row[column] = v ? 1 : 0;
    else if (typeof v === 'object' && !Buffer.isBuffer(v) && !(v instanceof Date))
      row[column] = flavor === 'sqlite' ? JSON.stringify(jsonCanon(v)) : jsonCanon(v);
    else row[column] = jsonCanon(v);
  }
  return row;
}

/** A read-back row in the same form: system columns and NULLs dropped, Dates ISO, Buffers base64. */
function rowCanon(row: Record<string, unknown>, convert: (column: string, v: unknown) => unknown = (_, v) => v): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, raw] of Object.entries(row)) {
    if (k === '_id' || k === '_written_at' || raw === null) continue;
    const v = convert(k, raw);
    out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v instanceof Date ? v.toISOString() : v;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The cases

interface Target {
  readonly options: Record<string, unknown>;
  readonly context?: Partial<BackendContext>;
  /** Everything stored so far, in write order, in the form `expected` gives. */
  readBack(): Promise<unknown[]>;
  cleanup(): Promise<void>;
}

interface Case {
  readonly label: string;
  readonly backend: string;
  readonly mode: 'stream' | 'batch';
  readonly expected: (items: readonly unknown[]) => unknown[];
  /** A fresh, empty target; `tag` is appended to its table/key/file name; `port` reroutes the backend (not the read back) through a proxy. */
  setup(tag?: string, port?: number): Promise<Target>;
  /** A target that is down, and what the error must say. */
  readonly down: () => { options: Record<string, unknown>; context?: Partial<BackendContext>; message: RegExp; openFails: boolean };
  /** Real port of the service, for the proxy test. */
  readonly servicePort?: number;
  /** Refuses a value of another type in an existing column (postgres, mysql). */
  readonly typedColumns?: boolean;
}

const asJson = (items: readonly unknown[]): unknown[] => items.map(jsonCanon);

const sqlTable = (tag: string): string => `${uniqueId()}${tag}`;

/** A regular file used as a directory: whatever is "inside" cannot be created (ENOTDIR). */
function blockedPath(name: string): string {
  const file = join(scratch, `${uniqueId()}-not-a-dir`);
  writeFileSync(file, '');
  return join(file, 'sub', name);
}

const cases: Case[] = [
  {
    label: 'stdout',
    backend: 'stdout',
    mode: 'stream',
    expected: asJson,
    async setup() {
      const lines: string[] = [];
      return {
        options: {},
        context: { writeLine: (line) => void lines.push(line) },
        readBack: async () => lines.map((l) => JSON.parse(l) as unknown),
        cleanup: async () => undefined,
      };
    },
    down: () => ({
      options: {},
      context: {
        writeLine: () => {
          throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
        },
      },
      message: /stdout is not writable: write EPIPE/,
      openFails: false,
    }),
  },
  {
    label: 'file',
    backend: 'file',
    mode: 'batch',
    expected: asJson,
    async setup(tag = '') {
      const path = join(scratch, uniqueId(), 'deep', `out${tag.replaceAll('/', '_')}.jsonl`);
      return {
        options: { path },
        readBack: async () => {
          let text = '';
          try {
            text = readFileSync(path, 'utf8');
          } catch {
            return [];
          }
          expect(text === '' || text.endsWith('\n')).toBe(true);
          return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
        },
        cleanup: async () => rmSync(path, { force: true }),
      };
    },
    down: () => ({ options: { path: blockedPath('out.jsonl') }, message: /^file at \/.+ cannot be opened: /, openFails: true }),
  },
  {
    label: 'sqlite',
    backend: 'sqlite',
    mode: 'batch',
    expected: (items) => items.map((i) => sqlRow(i, 'sqlite')),
    async setup(tag = '') {
      const path = join(scratch, uniqueId(), 'results.sqlite');
      const table = sqlTable(tag);
      return {
        options: { path, table },
        readBack: async () => {
          const db = new Database(path, { readonly: true });
          try {
            const rows = db.prepare(`SELECT * FROM "${table.replaceAll('"', '""')}" ORDER BY "_id"`).all() as Record<string, unknown>[];
            return rows.map((r) => rowCanon(r));
          } finally {
            db.close();
          }
        },
        cleanup: async () => rmSync(join(path, '..'), { recursive: true, force: true }),
      };
    },
    down: () => ({ options: { path: blockedPath('db.sqlite'), table: 't' }, message: /^sqlite at \/.+ cannot be opened: /, openFails: true }),
  },
  {
    label: 'postgres',
    backend: 'postgres',
    mode: 'batch',
    servicePort: PORTS.postgres,
    typedColumns: true,
    expected: (items) => items.map((i) => sqlRow(i, 'typed')),
    async setup(tag = '', port = PORTS.postgres) {
      const table = sqlTable(tag);
      const quoted = `"${table.replaceAll('"', '""')}"`;
      const query = async <T extends pg.QueryResultRow>(sql: string): Promise<pg.QueryResult<T>> => {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        try {
          return await client.query<T>(sql);
        } finally {
          await client.end();
        }
      };
      return {
        options: { url: PG_URL.replace(':5432', `:${port}`), table },
        readBack: async () => {
          const exists = await query<{ t: string | null }>(`SELECT to_regclass('${quoted.replaceAll("'", "''")}') AS t`);
          if (exists.rows[0]?.t === null) return [];
          const result = await query(`SELECT * FROM ${quoted} ORDER BY "_id"`);
          const int8 = new Set(result.fields.filter((f) => f.dataTypeID === 20).map((f) => f.name));
          return result.rows.map((r) => rowCanon(r, (k, v) => (int8.has(k) && typeof v === 'string' ? Number(v) : v)));
        },
        cleanup: async () => void (await query(`DROP TABLE IF EXISTS ${quoted}`)),
      };
    },
    down: () => ({ options: { url: 'postgres://postgres@127.0.0.1:1/test', table: 't' }, message: /^postgres at 127\.0\.0\.1:1 is not reachable: /, openFails: true }),
  },
  {
    label: 'mysql',
    backend: 'mysql',
    mode: 'batch',
    servicePort: PORTS.mysql,
    typedColumns: true,
    expected: (items) => items.map((i) => sqlRow(i, 'typed')),
    async setup(tag = '', port = PORTS.mysql) {
      const table = sqlTable(tag);
      const quoted = `\`${table.replaceAll('`', '``')}\``;
      const connect = () =>
        mysql.createConnection({
          uri: MYSQL_URL,
          timezone: 'Z',
          // TINYINT(1) is how the backend stores booleans.
          typeCast: (field, next) => {
            if (field.type === 'TINY' && field.length === 1) {
              const s = field.string();
              return s === null ? null : s === '1';
            }
            return next();
          },
        });
      return {
        options: { url: MYSQL_URL.replace(':3306', `:${port}`), table },
        readBack: async () => {
          const conn = await connect();
          try {
            const [cols] = await conn.execute<mysql.RowDataPacket[]>(
              'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
              [table],
            );
            if (cols.length === 0) return [];
            // The binary protocol: MariaDB's text form of a DOUBLE is not exact (97.33333333333331 for 292/3).
            // JSON columns come back parsed (mysql2 reads MariaDB's extended metadata).
            const [rows] = await conn.execute<mysql.RowDataPacket[]>(`SELECT * FROM ${quoted} ORDER BY \`_id\``);
            return rows.map((r) => rowCanon(r));
          } finally {
            await conn.end();
          }
        },
        cleanup: async () => {
          const conn = await connect();
          await conn.query(`DROP TABLE IF EXISTS ${quoted}`);
          await conn.end();
        },
      };
    },
    down: () => ({ options: { url: 'mysql://root@127.0.0.1:1/test', table: 't' }, message: /^mysql at 127\.0\.0\.1:1 is not reachable: /, openFails: true }),
  },
  ...(['list', 'stream'] as const).map(
    (type): Case => ({
      label: `redis ${type}`,
      backend: 'redis',
      mode: 'batch',
      servicePort: PORTS.redis,
      expected: asJson,
      async setup(tag = '', port = PORTS.redis) {
        const key = `${uniqueId()}:${type}${tag}`;
        const redis = new Redis(REDIS_URL);
        return {
          options: { url: `redis://127.0.0.1:${port}`, key, type },
          readBack: async () => {
            const raw =
              type === 'list' ? await redis.lrange(key, 0, -1) : (await redis.xrange(key, '-', '+')).map(([, fields]) => fields[1] ?? 'missing');
            return raw.map((s) => JSON.parse(s) as unknown);
          },
          cleanup: async () => {
            await redis.del(key);
            await redis.quit();
          },
        };
      },
      down: () => ({ options: { url: 'redis://127.0.0.1:1', key: 'k', type }, message: /^redis at 127\.0\.0\.1:1 is not reachable: /, openFails: true }),
    }),
  ),
  {
    label: 'module (class export, stream mode)',
    backend: 'module',
    mode: 'stream',
    expected: asJson,
    async setup() {
      const id = uniqueId();
      return {
        options: { module: '/ws/memory-bocca.ts', export: 'MemoryBocca', id },
        context: { moduleExport: MemoryBocca },
        // Stream mode: one write() per item.
        readBack: async () => recorded(id).writes.map(jsonCanon),
        cleanup: async () => forget(id),
      };
    },
    down: () => ({
      options: { module: '/ws/down.ts', export: 'DownBocca' },
      context: { moduleExport: DownBocca },
      message: /^custom bocca \/ws\/down\.ts#DownBocca: (open|write)\(\) failed: database gone$/,
      openFails: true,
    }),
  },
  {
    label: 'module (object export, batch mode)',
    backend: 'module',
    mode: 'batch',
    expected: asJson,
    async setup() {
      const id = uniqueId();
      return {
        options: { module: '/ws/memory-bocca.ts' },
        context: { moduleExport: memoryObject(id) },
        readBack: async () => {
          const writes = recorded(id).writes;
          // Batch mode: every write() got an array.
          for (const w of writes) expect(Array.isArray(w)).toBe(true);
          return (writes as unknown[][]).flat().map(jsonCanon);
        },
        cleanup: async () => forget(id),
      };
    },
    down: () => ({
      options: { module: '/ws/down.ts' },
      context: { moduleExport: new DownBocca() },
      message: /^custom bocca \/ws\/down\.ts#default: (open|write)\(\) failed: database gone$/,
      openFails: true,
    }),
  },
];

// ---------------------------------------------------------------------------
// Items

const mixed: unknown[] = [
  {
    city: 'Berlin',
    temp: 21.5,
    ok: true,
    n: 7,
    tags: ['a', 'b'],
    nested: { deep: { x: 1, list: [1, { y: null }] } },
    when: new Date('2026-03-01T12:34:56.789Z'),
    raw: Buffer.from([0, 1, 2, 255]),
    note: null,
  },
  {
    city: 'Zürich ☀️ 東京 \u{1F327}',
    temp: -3.25,
    ok: false,
    n: -9007199254740991,
    tags: [],
    nested: {},
    when: new Date(0),
    raw: Buffer.alloc(0),
    note: 'line1\nline2 "quoted" \\ back \'single\' \t tab',
  },
  { city: 'nulls', temp: null, ok: null, n: null, tags: null, nested: null, when: null, raw: null, note: null },
  { city: 'São Paulo', temp: 30, ok: true, n: 0, extra: 'a later key' },
];

async function rejection(promise: Promise<unknown>, withinMs: number): Promise<BackendError> {
  const started = performance.now();
  const err = await promise.then(
    () => new Error('expected a rejection, got success'),
    (e: unknown) => e,
  );
  expect(performance.now() - started).toBeLessThan(withinMs);
  expect(err).toBeInstanceOf(BackendError);
  return err as BackendError;
}

// ---------------------------------------------------------------------------
// Services must be up: a missing service is a failure, not a skip.

beforeAll(async () => {
  const problems: string[] = [];
  const pgClient = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  await pgClient.connect().then(() => pgClient.end(), (e: Error) => problems.push(`PostgreSQL ${PG_URL}: ${e.message}`));
  await mysql.createConnection({ uri: MYSQL_URL, connectTimeout: 3000 }).then((c) => c.end(), (e: Error) => problems.push(`MariaDB ${MYSQL_URL}: ${e.message}`));
  const redis = new Redis(REDIS_URL, { lazyConnect: true, retryStrategy: () => null, connectTimeout: 3000 });
  redis.on('error', () => undefined);
  await redis.connect().then(() => redis.quit(), (e: Error) => problems.push(`Redis ${REDIS_URL}: ${e.message}`));
  if (problems.length > 0) throw new Error(`services needed by the backend tests are not running:\n${problems.join('\n')}`);
});

// ---------------------------------------------------------------------------
// The contract

describe.each(cases)('$label backend', (c) => {
  const open: Backend[] = [];
  const targets: Target[] = [];

  async function fresh(tag?: string, port?: number): Promise<Target> {
    const t = await c.setup(tag, port);
    targets.push(t);
    return t;
  }

  async function make(t: { options: Record<string, unknown>; context?: Partial<BackendContext> }): Promise<Backend> {
    const factory = registry.get(c.backend);
    if (!factory) throw new Error(`no backend ${c.backend}`);
    const backend = await factory(t.options, {
      typology: 'backends-test',
      processIndex: 0,
      mode: c.mode,
      writeLine: () => undefined,
      log: silentLogger(),
      ...t.context,
    });
    open.push(backend);
    return backend;
  }

  afterEach(async () => {
    for (const b of open.splice(0)) await b.close().catch(() => undefined);
    for (const t of targets.splice(0)) await t.cleanup();
  });

  it('round-trips mixed items in order: strings, numbers, booleans, nested objects, Dates, Buffers, unicode, nulls', async () => {
    const t = await fresh();
    const backend = await make(t);
    await backend.open();
    await backend.write(mixed.slice(0, 1));
    await backend.write(mixed.slice(1));
    await backend.close();
    expect(await t.readBack()).toEqual(c.expected(mixed));
  });

  it('stores non-object items (in a `value` column for SQL)', async () => {
    const inputs = [['first', 'second ✓'], [1, 2.5, -3], [[1, 2], [], { a: 1 }], [true, false], [Buffer.from('hi'), new Date('2026-12-03T20:18:03.000Z')]];
    for (const items of inputs) {
      const t = await fresh();
      const backend = await make(t);
      await backend.write(items);
      await backend.close();
      expect(await t.readBack()).toEqual(c.expected(items));
    }
  });

  it('writes a batch of 1000 items in one write, in order', async () => {
    const t = await fresh();
    const backend = await make(t);
    await backend.open();
    const items = Array.from({ length: 1000 }, (_, i) => ({ i, name: `item ${i}`, third: i / 3, even: i % 2 === 0 }));
    await backend.write(items);
    await backend.close();
    expect(await t.readBack()).toEqual(c.expected(items));
  });

  it('creates the table from the first item and extends it for a later new key (also within one batch)', async () => {
    const t = await fresh();
    const backend = await make(t);
    await backend.write([{ a: 1, b: 'x' }]);
    await backend.write([{ a: 2, c: true }, { d: new Date('2030-01-01T00:00:00.000Z'), a: 3 }]);
    await backend.write([{}]);
    await backend.close();
    expect(await t.readBack()).toEqual(c.expected([{ a: 1, b: 'x' }, { a: 2, c: true }, { d: new Date('2030-01-01T00:00:00.000Z'), a: 3 }, {}]));
  });

  it('widens an integer column when a fraction arrives later', async () => {
    const t = await fresh();
    const backend = await make(t);
    await backend.write([{ v: 1 }]);
    await backend.write([{ v: 2.5 }, { v: 3 }]);
    await backend.close();
    expect(await t.readBack()).toEqual(c.expected([{ v: 1 }, { v: 2.5 }, { v: 3 }]));
  });

  it.runIf(c.typedColumns)('refuses a value its column cannot hold, naming the column, as not retryable', async () => {
    const t = await fresh();
    const backend = await make(t);
    await backend.write([{ v: 1, w: 'ok' }]);
    const err = await rejection(backend.write([{ v: 'not a number', w: 'lost' }]), 5000);
    expect(err.code).toBe('E_BACKEND_ENCODE');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/column .v. is (BIGINT) and cannot hold "not a number" \(text\)/);
    // Nothing of the failed batch was written; the backend still works.
    await backend.write([{ v: 2, w: 'ok' }]);
    expect(await t.readBack()).toEqual(c.expected([{ v: 1, w: 'ok' }, { v: 2, w: 'ok' }]));
  });

  it('stores hostile field names and a hostile table/key name safely', async () => {
    const t = await fresh(`"; DROP TABLE x; --\`'`);
    const backend = await make(t);
    const items = [
      { 'a"; DROP TABLE x; --': 1, "b`; DROP TABLE y; --": 'two', "c'); DELETE FROM t; --": true, SELECT: 'reserved', 'Ünïcödé ☃ key': 3.5, _id: 'mine' },
      { 'a"; DROP TABLE x; --': 2, 'with\nnewline': 'nl', '': 'empty key' },
    ];
    await backend.write(items);
    await backend.close();
    const expected = c.expected(items) as Record<string, unknown>[];
    // SQL cannot name a column '': it is stored under '_'.
    if (c.backend === 'sqlite' || c.backend === 'postgres' || c.backend === 'mysql') {
      const second = expected[1]!;
      second['_'] = second[''];
      delete second[''];
    }
    expect(await t.readBack()).toEqual(expected);
  });

  it('two writers on one target, one unaware of the columns the other added', async () => {
    const t = await fresh();
    const a = await make(t);
    const b = await make(t);
    await a.write([{ x: 1 }]);
    await b.write([{ y: 'from b' }]);
    await a.write([{ y: 'from a', z: 2.5 }]);
    await b.write([{ x: 4, z: 5.5 }]);
    expect(await t.readBack()).toEqual(c.expected([{ x: 1 }, { y: 'from b' }, { y: 'from a', z: 2.5 }, { x: 4, z: 5.5 }]));
  });

  it('concurrent write() calls (threads > 1) are all stored, each batch whole', async () => {
    const t = await fresh();
    const backend = await make(t);
    const batches = Array.from({ length: 6 }, (_, b) => Array.from({ length: 25 }, (__, i) => ({ b, i })));
    await Promise.all(batches.map((batch) => backend.write(batch)));
    const stored = (await t.readBack()) as { b: number; i: number }[];
    expect(stored).toHaveLength(150);
    expect([...stored].sort((x, y) => x.b - y.b || x.i - y.i)).toEqual(c.expected(batches.flat()));
  });

  it('a fresh writer learns the column types from the table', async () => {
    const t = await fresh();
    const a = await make(t);
    await a.write([{ j: { nested: true }, when: new Date('2026-01-01T00:00:00.000Z'), n: 1 }]);
    await a.close();
    // A new process: a string into the json column must stay valid JSON, an integer into the BIGINT column stays one.
    const b = await make(t);
    await b.write([{ j: 'plain string', n: 2 }, { j: [1, 'x'], when: new Date('2027-01-01T00:00:00.000Z') }]);
    expect(await t.readBack()).toEqual(
      c.expected([
        { j: { nested: true }, when: new Date('2026-01-01T00:00:00.000Z'), n: 1 },
        { j: 'plain string', n: 2 },
        { j: [1, 'x'], when: new Date('2027-01-01T00:00:00.000Z') },
      ]),
    );
  });

  it('close is idempotent and flushes; write after close throws', async () => {
    const t = await fresh();
    const backend = await make(t);
    await backend.open();
    const pending = backend.write([{ k: 'before close' }]);
    await backend.close();
    await backend.close();
    await pending;
    expect(await t.readBack()).toEqual(c.expected([{ k: 'before close' }]));
    const err = await rejection(backend.write([{ k: 'after close' }]), 1000);
    expect(err.code).toBe('E_BACKEND_CLOSED');
    // close without open is fine too
    const unopened = await make(await fresh());
    await unopened.close();
    await unopened.close();
  });

  it('a backend that is down throws a clear error from open/write within 5 s, and close still works', async () => {
    const d = c.down();
    const backend = await make(d);
    if (d.openFails) {
      const err = await rejection(backend.open(), 5000);
      expect(err.message).toMatch(d.message);
      expect(err.retryable).toBe(true);
    } else {
      await backend.open();
    }
    // Again, without open: the stage runtime retries write() on the same backend.
    for (let attempt = 0; attempt < 2; attempt++) {
      const err = await rejection(backend.write([{ lost: false }]), 5000);
      expect(err.message).toMatch(d.message);
      expect(err.retryable).toBe(true);
    }
    await backend.close();
    await backend.close();
  });

  it.runIf(c.servicePort !== undefined)('a connection lost after open: write throws promptly, the next write reconnects once', async () => {
    const proxy = await startProxy(c.servicePort!);
    try {
      const t = await fresh('', proxy.port);
      const backend = await make(t);
      await backend.open();
      await backend.write([{ n: 1 }]);
      await proxy.stop();
      const err = await rejection(backend.write([{ n: 2 }]), 5000);
      expect(err.message).toContain(`${c.backend} at 127.0.0.1:${proxy.port}`);
      expect(err.retryable).toBe(true);
      await proxy.restart();
      await backend.write([{ n: 3 }]);
      expect(await t.readBack()).toEqual(c.expected([{ n: 1 }, { n: 3 }]));
    } finally {
      await proxy.stop();
    }
  });
});

// ---------------------------------------------------------------------------
// Backend-specific behaviour

describe('network backends', () => {
  it('a server that accepts connections but never answers fails open within the connect timeout, not forever', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const { createServer } = await import('node:net');
    const silent = createServer((s) => void sockets.add(s.on('error', () => undefined)));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    try {
      const ctx = { typology: 't', processIndex: 0, mode: 'batch' as const, writeLine: () => undefined, log: silentLogger() };
      const backends = await Promise.all([
        registry.get('postgres')!({ url: `postgres://postgres@127.0.0.1:${port}/test`, table: 't' }, ctx),
        registry.get('mysql')!({ url: `mysql://root@127.0.0.1:${port}/test`, table: 't' }, ctx),
        registry.get('redis')!({ url: `redis://127.0.0.1:${port}`, key: 'k' }, ctx),
      ]);
      const errors = await Promise.all(backends.map((b) => rejection(b.open(), 6000)));
      for (const [i, name] of ['postgres', 'mysql', 'redis'].entries()) {
        expect(errors[i]!.message).toMatch(new RegExp(`^${name} at 127\\.0\\.0\\.1:${port} is not reachable: `));
      }
      await Promise.all(backends.map((b) => b.close()));
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('builtinBackends', () => {
  it('lists every backend of the spec, and each fresh call is a new registry', () => {
    expect([...builtinBackends().keys()].sort()).toEqual(['file', 'module', 'mysql', 'postgres', 'redis', 'sqlite', 'stdout']);
    expect(builtinBackends()).not.toBe(builtinBackends());
  });

  it('rejects bad options with a config error', async () => {
    const ctx = { typology: 't', processIndex: 0, mode: 'batch' as const, writeLine: () => undefined, log: silentLogger() };
    const fails = async (name: string, options: Record<string, unknown>, message: RegExp): Promise<void> => {
      const err = await registry.get(name)!(options, ctx).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect((err as BackendError).code).toBe('E_BACKEND_CONFIG');
      expect((err as BackendError).message).toMatch(message);
    };
    await fails('file', {}, /file bocca: option "path" is required/);
    await fails('sqlite', { path: 42 }, /sqlite bocca: option "path" must be a non-empty string, got 42/);
    await fails('postgres', { table: 't' }, /postgres bocca: option "url" is required/);
    await fails('redis', { type: 'hash' }, /redis bocca: option "type" must be "list" or "stream", got "hash"/);
    await fails('module', {}, /module bocca: .*has no export "default"/);
  });
});

describe('module backend', () => {
  const ctx = (moduleExport: unknown, mode: 'stream' | 'batch' = 'stream'): BackendContext => ({
    typology: 't',
    processIndex: 3,
    mode,
    writeLine: () => undefined,
    moduleExport,
    log: silentLogger(),
  });
  const factory = registry.get('module')!;

  it('refuses an export without write()', async () => {
    for (const exported of [{ open() {} }, 42, class NoWrite {}, { write: 'not a function' }]) {
      await expect(factory({ module: '/ws/m.ts' }, ctx(exported))).rejects.toThrow('custom bocca export must have a write() method');
    }
  });

  it('names the module when its constructor throws', async () => {
    class Broken {
      constructor() {
        throw new Error('no config');
      }
      write(): void {}
    }
    await expect(factory({ module: '/ws/m.ts', export: 'Broken' }, ctx(Broken))).rejects.toThrow(/custom bocca \/ws\/m\.ts#Broken: new Broken\(options\) failed: no config/);
  });

  it('instantiates a class with the options, opens with where it runs, closes once', async () => {
    const seen: unknown[] = [];
    class Spy {
      constructor(readonly options: unknown) {
        seen.push(['new', options]);
      }
      open(info: unknown): void {
        seen.push(['open', info]);
      }
      write(x: unknown): void {
        seen.push(['write', x]);
      }
      close(): void {
        seen.push(['close']);
      }
    }
    const b = await factory({ module: '/ws/m.ts', export: 'Spy', table: 'x' }, ctx(Spy));
    await b.open();
    await b.write([1, 2]);
    await Promise.all([b.close(), b.close()]);
    await b.close();
    expect(seen).toEqual([
      ['new', { module: '/ws/m.ts', export: 'Spy', table: 'x' }],
      ['open', { typology: 't', processIndex: 3, mode: 'stream' }],
      ['write', 1],
      ['write', 2],
      ['close'],
    ]);
  });

  it('keeps the error the module threw as the cause', async () => {
    const boom = new Error('disk full');
    const b = await factory({ module: '/ws/m.ts' }, ctx({ write: () => Promise.reject(boom) }, 'batch'));
    const err = await b.write([1]).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).cause).toBe(boom);
  });
});

describe('file backend', () => {
  it('lines from concurrent writers to one file never interleave', async () => {
    const path = join(scratch, uniqueId(), 'shared.jsonl');
    const writers = await Promise.all(
      Array.from({ length: 4 }, () =>
        registry.get('file')!({ path }, { typology: 't', processIndex: 0, mode: 'batch', writeLine: () => undefined, log: silentLogger() }),
      ),
    );
    const padding = 'x'.repeat(3000);
    // Batches of ~600 KB: bigger than a pipe buffer and than Node's own writeFile chunk.
    await Promise.all(
      writers.map(async (w, wi) => {
        for (let batch = 0; batch < 5; batch++) {
          await w.write(Array.from({ length: 200 }, (_, i) => ({ wi, batch, i, padding })));
        }
      }),
    );
    await Promise.all(writers.map((w) => w.close()));
    const lines = readFileSync(path, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(4 * 5 * 200);
    const seen = lines.map((l) => JSON.parse(l) as { wi: number; batch: number; i: number; padding: string });
    for (let wi = 0; wi < 4; wi++) {
      // Each writer's lines are in its own order, and each batch is contiguous.
      const mine = seen.filter((s) => s.wi === wi);
      expect(mine.map((s) => s.batch * 200 + s.i)).toEqual(Array.from({ length: 1000 }, (_, k) => k));
    }
    for (let k = 0; k < seen.length; k += 200) {
      const head = seen[k]!;
      expect(seen.slice(k, k + 200).every((s) => s.wi === head.wi && s.batch === head.batch)).toBe(true);
    }
  });

  it('writes fsync-ed batches when asked', async () => {
    const path = join(scratch, uniqueId(), 'synced.jsonl');
    const b = await registry.get('file')!({ path, fsync: true }, { typology: 't', processIndex: 0, mode: 'batch', writeLine: () => undefined, log: silentLogger() });
    await b.write([{ a: 1 }, 'two']);
    await b.close();
    expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n"two"\n');
  });
});

describe('redis backend', () => {
  it('a key of another type is a clear, non-retryable error', async () => {
    const key = `${uniqueId()}:string`;
    const redis = new Redis(REDIS_URL);
    try {
      await redis.set(key, 'not a list');
      const b = await registry.get('redis')!({ key }, { typology: 't', processIndex: 0, mode: 'batch', writeLine: () => undefined, log: silentLogger() });
      const err = await rejection(b.write([{ a: 1 }]), 5000);
      expect(err.message).toMatch(new RegExp(`^redis at 127\\.0\\.0\\.1:6379 key "${key}": write failed: WRONGTYPE`));
      expect(err.retryable).toBe(false);
      await b.close();
    } finally {
      await redis.del(key);
      await redis.quit();
    }
  });
});

describe('postgres backend', () => {
  it('accepts a schema-qualified table', async () => {
    const name = uniqueId();
    const b = await registry.get('postgres')!({ url: PG_URL, table: `public.${name}` }, { typology: 't', processIndex: 0, mode: 'batch', writeLine: () => undefined, log: silentLogger() });
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await b.write([{ a: 1 }]);
      await b.write([{ a: 2, b: 'new' }]);
      await b.close();
      const { rows } = await client.query(`SELECT a, b FROM public."${name}" ORDER BY _id`);
      expect(rows).toEqual([{ a: '1', b: null }, { a: '2', b: 'new' }]);
    } finally {
      await client.query(`DROP TABLE IF EXISTS public."${name}"`);
      await client.end();
    }
  });
});

describe('sqlite backend', () => {
  it('waits for another process holding the write lock, then writes (WAL + busy timeout)', async () => {
    const dir = join(scratch, uniqueId());
    const path = join(dir, 'shared.sqlite');
    const b = await registry.get('sqlite')!({ path, table: 'results' }, { typology: 't', processIndex: 0, mode: 'batch', writeLine: () => undefined, log: silentLogger() });
    await b.write([{ who: 'first' }]);
    // Another process takes the write lock and keeps it for 700 ms.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)});
         db.exec('BEGIN IMMEDIATE'); db.prepare('INSERT INTO results (who) VALUES (?)').run('other process');
         process.stdout.write('locked\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 700);
         db.exec('COMMIT'); db.close();`,
      ],
      { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => holder.on('exit', resolve));
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const started = performance.now();
    await b.write([{ who: 'second' }]);
    expect(performance.now() - started).toBeGreaterThan(300);
    expect(await exited).toBe(0);
    await b.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT who FROM results ORDER BY _id').all()).toEqual([{ who: 'first' }, { who: 'other process' }, { who: 'second' }]);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });
});
