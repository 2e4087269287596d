import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import type { Backend, BackendContext, BackendFactory } from './types.js';
import { BackendError, cannotOpen, closedError, writeFailed } from './backend-error.js';
import { type Column, type ColumnKind, type ColumnNaming, SYSTEM_COLUMNS, planBatch } from './columns.js';
import { toJson } from './json-line.js';
import { optionalString, requiredString } from './options.js';

/**
 * Options of the `sqlite` bocca.
 * - `path` (required, absolute): the database file; its directory is created.
 * - `table` (default: the typology name): created from the first item, see columns.ts.
 */
export interface SqliteBackendOptions {
  readonly path: string;
  readonly table: string;
}

const NAME = 'sqlite';

/** How long a writer waits for another process's write lock before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5_000;

const SQL_TYPE: Record<ColumnKind, string> = {
  integer: 'INTEGER',
  real: 'REAL',
  boolean: 'INTEGER',
  text: 'TEXT',
  blob: 'BLOB',
  datetime: 'TEXT',
  json: 'TEXT',
};

// SQLite compares identifiers case-insensitively for ASCII only; a NUL would end the SQL text.
const naming: ColumnNaming = {
  sanitize: (key) => (key === '' ? '_' : key.replaceAll('\0', '\uFFFD')),
  fold: (name) => name.replace(/[A-Z]+/g, (s) => s.toLowerCase()),
};

const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/**
 * Each item becomes a row; a write(batch) is one `BEGIN IMMEDIATE` transaction
 * (the write lock is taken up front, so two processes never deadlock upgrading
 * a read lock). WAL mode with a busy timeout lets several bocca processes on one
 * machine write the same file. `synchronous=NORMAL`: a committed write survives
 * a crash of the process, not necessarily a power cut (WAL's usual trade-off).
 * Values are stored by their own type, since SQLite is dynamically typed:
 * booleans as 0/1, Dates as ISO text, objects/arrays as JSON text, Buffers as BLOBs.
 */
export const createSqliteBackend: BackendFactory = async (options, context: BackendContext): Promise<Backend> => {
  const opts: SqliteBackendOptions = {
    path: requiredString(NAME, options, 'path'),
    table: optionalString(NAME, options, 'table') ?? context.typology,
  };
  // Drivers load on first use: every stage process imports this registry, few of them write to SQLite.
  const { default: driver } = await import('better-sqlite3');
  return new SqliteBackend(opts, driver);
};

class SqliteBackend implements Backend {
  private db: Database.Database | undefined;
  private closed = false;
  private known: KnownTable | undefined;
  private readonly inserts = new Map<string, Database.Statement>();
  private readonly table: string;

  constructor(
    private readonly opts: SqliteBackendOptions,
    private readonly Driver: typeof Database,
  ) {
    this.table = quote(opts.table);
  }

  async open(): Promise<void> {
    if (this.closed) throw closedError(NAME, this.opts.path);
    this.connect();
  }

  private connect(): Database.Database {
    if (this.db) return this.db;
    let db: Database.Database | undefined;
    try {
      mkdirSync(dirname(this.opts.path), { recursive: true });
      db = new this.Driver(this.opts.path, { timeout: BUSY_TIMEOUT_MS });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
    } catch (err) {
      db?.close();
      throw cannotOpen(NAME, this.opts.path, err);
    }
    this.db = db;
    return db;
  }

  async write(items: readonly unknown[]): Promise<void> {
    if (this.closed) throw closedError(NAME, this.opts.path);
    if (items.length === 0) return;
    const db = this.connect();
    try {
      db.transaction(() => this.writeInTransaction(db, items)).immediate();
    } catch (err) {
      if (err instanceof BackendError) throw err;
      // A cached column list may be what went wrong (a table dropped by hand): read it again next time.
      this.known = undefined;
      throw writeFailed(NAME, this.opts.path, err);
    }
  }

  private writeInTransaction(db: Database.Database, items: readonly unknown[]): void {
    let table = this.known ?? this.loadTable(db);
    let plan = planBatch(items, table.columns, naming);
    if (plan.add.length > 0 || !table.exists) {
      // We hold the write lock: the table read now is the truth, whatever other processes did.
      table = this.loadTable(db);
      plan = planBatch(items, table.columns, naming);
      if (!table.exists) {
        const defs = [
          '"_id" INTEGER PRIMARY KEY AUTOINCREMENT',
          `"_written_at" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`,
          ...plan.add.map((c) => `${quote(c.name)} ${SQL_TYPE[c.kind]}`),
        ];
        db.exec(`CREATE TABLE ${this.table} (${defs.join(', ')})`);
      } else {
        for (const c of plan.add) db.exec(`ALTER TABLE ${this.table} ADD COLUMN ${quote(c.name)} ${SQL_TYPE[c.kind]}`);
      }
      if (plan.add.length > 0 || !table.exists) table = this.loadTable(db);
    }
    // Kept even if the transaction rolls back; the catch in write() drops it then.
    this.known = table;

    const names = plan.columns.map((c) => c.name);
    const insert = this.insertStatement(db, names);
    for (const row of plan.rows) insert.run(names.map((n) => encode(row.get(n))));
  }

  private loadTable(db: Database.Database): KnownTable {
    const info = db.prepare('SELECT name FROM pragma_table_info(?)').all(this.opts.table) as { name: string }[];
    const columns = new Map<string, Column>();
    for (const { name } of info) {
      if ((SYSTEM_COLUMNS as readonly string[]).includes(name)) continue;
      // SQLite stores each value by its own type, so the declared type does not matter for encoding.
      columns.set(naming.fold(name), { name, kind: 'json' });
    }
    return { exists: info.length > 0, columns };
  }

  private insertStatement(db: Database.Database, names: readonly string[]): Database.Statement {
    const cacheKey = names.join('\0');
    let stmt = this.inserts.get(cacheKey);
    if (!stmt) {
      const sql =
        names.length === 0
          ? `INSERT INTO ${this.table} DEFAULT VALUES`
          : `INSERT INTO ${this.table} (${names.map(quote).join(', ')}) VALUES (${names.map(() => '?').join(', ')})`;
      stmt = db.prepare(sql);
      // Items with ever-changing key sets must not grow the cache without bound.
      if (this.inserts.size >= 64) this.inserts.clear();
      this.inserts.set(cacheKey, stmt);
    }
    return stmt;
  }

  async close(): Promise<void> {
    this.closed = true;
    const db = this.db;
    this.db = undefined;
    this.inserts.clear();
    if (db?.open) db.close();
  }
}

interface KnownTable {
  readonly exists: boolean;
  /** By folded name, system columns left out. */
  readonly columns: ReadonlyMap<string, Column>;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function encode(value: unknown): unknown {
  switch (typeof value) {
    case 'boolean':
      return value ? 1 : 0;
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'bigint':
      return value >= INT64_MIN && value <= INT64_MAX ? value : value.toString();
    case 'string':
      return value;
    case 'object':
      if (value === null) return null;
      if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      return toJson(value);
    default:
      return null;
  }
}
