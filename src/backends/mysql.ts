import type mysql from 'mysql2/promise';
import type { Backend, BackendContext, BackendFactory } from './types.js';
import { BackendError, encodeFailed, unreachable, writeFailed } from './backend-error.js';
import { type BatchPlan, type Column, type ColumnKind, type ColumnNaming, SYSTEM_COLUMNS, describeValue, kindOf, planBatch, rowsPerStatement, splitQualified } from './columns.js';
import { toJson } from './json-line.js';
import { optionalString, requiredString } from './options.js';
import { ConnectedBackend } from './connected-backend.js';

/**
 * Options of the `mysql` bocca (MySQL 8 and MariaDB 10.5+).
 * - `url` (required): `mysql://user:pass@host:3306/database`.
 * - `table` (default: the typology name): `name` or `database.name`; created from the first item, see columns.ts.
 */
export interface MysqlBackendOptions {
  readonly url: string;
  readonly table: string;
}

const NAME = 'mysql';

/** What an INSERT binds: strings for text, JSON, dates and big integers. */
type Param = string | number | Buffer | null;
const CONNECT_TIMEOUT_MS = 5_000;
/** A statement that takes longer than this fails the write (and drops the connection) instead of hanging. */
const QUERY_TIMEOUT_MS = 60_000;
/** Statements are also cut by size, to stay well under the server's max_allowed_packet (16 MiB by default). */
const MAX_STATEMENT_BYTES = 4 * 1024 * 1024;

// LONGTEXT rather than TEXT for strings: TEXT stops at 64 KiB and strict mode would refuse longer values.
const SQL_TYPE: Record<ColumnKind, string> = {
  integer: 'BIGINT',
  real: 'DOUBLE',
  boolean: 'TINYINT(1)',
  text: 'LONGTEXT',
  blob: 'LONGBLOB',
  datetime: 'DATETIME(3)',
  json: 'JSON',
};

// MySQL column names: case-insensitive, at most 64 characters, Basic Multilingual Plane only, no NUL, no trailing space.
const naming: ColumnNaming = {
  sanitize: (key) => {
    const bmp = key.replaceAll('\0', '\uFFFD').replace(/[\u{10000}-\u{10FFFF}]/gu, '\uFFFD');
    return bmp.slice(0, 64).trimEnd() || '_';
  },
  fold: (name) => name.toLowerCase(),
};

const quote = (name: string): string => `\`${name.replaceAll('`', '``')}\``;

/** Server errors about the data itself: a retry of the same batch fails the same way. */
const DATA_ERRNOS = new Set([1264, 1265, 1292, 1366, 1406, 1416, 3140, 4025]);

/**
 * One connection per bocca process, in UTC (`time_zone = '+00:00'`; DATETIME(3)
 * holds UTC). Every statement is a server-side prepared statement, so values
 * never pass through client-side escaping (which NO_BACKSLASH_ESCAPES would
 * break). A write(batch) is one transaction of multi-row INSERTs; DDL runs
 * before it, since MySQL commits implicitly on DDL.
 */
export const createMysqlBackend: BackendFactory = async (options, context: BackendContext): Promise<Backend> => {
  const opts: MysqlBackendOptions = {
    url: requiredString(NAME, options, 'url'),
    table: optionalString(NAME, options, 'table') ?? context.typology,
  };
  // Drivers load on first use: every stage process imports this registry, few of them write to MySQL.
  const { default: driver } = await import('mysql2/promise');
  return new MysqlBackend(opts, context, driver);
};

interface KnownTable {
  readonly exists: boolean;
  readonly columns: ReadonlyMap<string, Column>;
}

class MysqlBackend extends ConnectedBackend<mysql.Connection> {
  private known: KnownTable | undefined;
  private readonly schema: string | undefined;
  private readonly tableName: string;
  private readonly table: string;

  constructor(
    private readonly opts: MysqlBackendOptions,
    private readonly context: BackendContext,
    private readonly driver: typeof mysql,
  ) {
    super(NAME, whereOf(opts.url));
    const { schema, table } = splitQualified(opts.table);
    this.schema = schema;
    this.tableName = table;
    this.table = schema === undefined ? quote(table) : `${quote(schema)}.${quote(table)}`;
  }

  protected async end(conn: mysql.Connection): Promise<void> {
    await conn.end().catch(() => conn.destroy());
  }

  protected async connect(): Promise<mysql.Connection> {
    let conn: mysql.Connection | undefined;
    try {
      conn = await this.driver.createConnection({
        uri: this.opts.url,
        connectTimeout: CONNECT_TIMEOUT_MS,
        timezone: 'Z',
        charset: 'utf8mb4',
        supportBigNumbers: true,
        // Evicted statements are closed on the server, so ever-changing INSERT shapes cannot pile up there.
        maxPreparedStatements: 32,
      });
      await conn.query("SET time_zone = '+00:00'");
    } catch (err) {
      conn?.destroy();
      throw unreachable(NAME, this.where, err);
    }
    const c = conn;
    // Without a listener, an error on an idle connection would crash the process.
    const drop = (err?: unknown): void => {
      if (err) this.context.log.warn({ err: err instanceof Error ? err.message : String(err), backend: NAME, where: this.where }, 'backend connection lost');
      if (this.current === c) this.current = undefined;
    };
    c.on('error', drop);
    c.on('end', () => drop());
    this.current = c;
    return c;
  }

  protected async writeNow(items: readonly unknown[]): Promise<void> {
    const conn = await this.connection();
    try {
      const plan = await this.prepare(conn, items);
      const names = plan.columns.map((c) => c.name);
      const kinds = plan.columns.map((c) => c.kind);
      const values = plan.rows.map((row) => names.map((n, i) => this.encode(row.get(n), kinds[i]!, n)));
      await conn.query(timed('START TRANSACTION'));
      try {
        if (names.length === 0) {
          await conn.query(timed(`INSERT INTO ${this.table} () VALUES ${values.map(() => '()').join(', ')}`));
        } else {
          const head = `INSERT INTO ${this.table} (${names.map(quote).join(', ')}) VALUES `;
          const tuple = `(${names.map(() => '?').join(', ')})`;
          for (const part of chunks(values, rowsPerStatement(names.length))) {
            await conn.execute(timed(head + part.map(() => tuple).join(', ')), part.flat());
          }
        }
        await conn.query(timed('COMMIT'));
      } catch (err) {
        await conn.query(timed('ROLLBACK')).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      throw this.failure(conn, err);
    }
  }

  private async prepare(conn: mysql.Connection, items: readonly unknown[]): Promise<BatchPlan> {
    let table = this.known ?? (await this.loadTable(conn));
    let plan = planBatch(items, table.columns, naming);
    for (let attempt = 0; plan.add.length > 0 || plan.widen.length > 0 || !table.exists; attempt++) {
      if (attempt === 3) throw encodeFailed(NAME, this.where, `table ${this.table}: columns ${plan.add.map((c) => quote(c.name)).join(', ')} cannot be added`);
      if (!table.exists) {
        const defs = [
          '`_id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY',
          '`_written_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)',
          ...plan.add.map((c) => `${quote(c.name)} ${SQL_TYPE[c.kind]}`),
        ];
        await this.ddl(conn, `CREATE TABLE IF NOT EXISTS ${this.table} (${defs.join(', ')}) DEFAULT CHARSET = utf8mb4`);
      } else {
        for (const c of plan.add) await this.ddl(conn, `ALTER TABLE ${this.table} ADD COLUMN ${quote(c.name)} ${SQL_TYPE[c.kind]}`);
        for (const c of plan.widen) await this.ddl(conn, `ALTER TABLE ${this.table} MODIFY COLUMN ${quote(c.name)} DOUBLE`);
      }
      // Another process may have created the same columns with other types: the database decides.
      table = await this.loadTable(conn);
      plan = planBatch(items, table.columns, naming);
    }
    this.known = table;
    return plan;
  }

  private async ddl(conn: mysql.Connection, sql: string): Promise<void> {
    try {
      await conn.query(timed(sql));
    } catch (err) {
      // 1050 table exists, 1060 duplicate column: another bocca process got there first.
      const errno = (err as { errno?: unknown }).errno;
      if (errno === 1050 || errno === 1060) return;
      throw err;
    }
  }

  private async loadTable(conn: mysql.Connection): Promise<KnownTable> {
    const [rows] = await conn.execute<mysql.RowDataPacket[]>(
      timed(`SELECT COLUMN_NAME AS name, DATA_TYPE AS type, COLUMN_TYPE AS ctype FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`),
      [this.schema ?? null, this.tableName],
    );
    // MariaDB's JSON is LONGTEXT plus a CHECK (json_valid(col)) named after the column; MySQL 8 has a real json type.
    const jsonColumns = new Set<string>();
    if (rows.some((r) => String(r.type).toLowerCase() === 'longtext')) {
      try {
        const [checks] = await conn.execute<mysql.RowDataPacket[]>(
          timed(`SELECT CONSTRAINT_NAME AS name, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS
            WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`),
          [this.schema ?? null, this.tableName],
        );
        for (const c of checks) if (/json_valid/i.test(String(c.clause))) jsonColumns.add(String(c.name));
      } catch {
        // MySQL 8's CHECK_CONSTRAINTS has no TABLE_NAME; it reports json columns as json anyway.
      }
    }
    const columns = new Map<string, Column>();
    for (const r of rows) {
      const name = String(r.name);
      if ((SYSTEM_COLUMNS as readonly string[]).includes(name)) continue;
      const kind = jsonColumns.has(name) ? 'json' : kindOfSqlType(String(r.type).toLowerCase(), String(r.ctype).toLowerCase());
      columns.set(naming.fold(name), { name, kind });
    }
    return { exists: rows.length > 0, columns };
  }

  private encode(value: unknown, kind: ColumnKind, column: string): Param {
    const valueKind = kindOf(value);
    if (valueKind === undefined) return null;
    switch (kind) {
      case 'integer':
        if (typeof value === 'boolean') return value ? 1 : 0;
        if (typeof value === 'bigint' && valueKind === 'integer') return value.toString();
        if (typeof value === 'number' && valueKind === 'integer') return value;
        break;
      case 'real':
        if (typeof value === 'boolean') return value ? 1 : 0;
        if (typeof value === 'bigint') return Number(value);
        if (typeof value === 'number') return Number.isFinite(value) ? value : null;
        break;
      case 'boolean':
        if (typeof value === 'boolean') return value ? 1 : 0;
        break;
      case 'text':
        return textOf(value);
      case 'json':
        return toJson(value);
      case 'blob':
        if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        if (typeof value === 'string') return Buffer.from(value);
        break;
      case 'datetime':
        if (value instanceof Date) {
          if (Number.isNaN(value.getTime())) return null;
          const year = value.getUTCFullYear();
          // DATETIME holds years 1000–9999 only.
          if (year >= 1000 && year <= 9999) return value.toISOString().slice(0, 23).replace('T', ' ');
        }
        break;
    }
    throw encodeFailed(NAME, this.where, `table ${this.table}: column ${quote(column)} is ${SQL_TYPE[kind]} and cannot hold ${describeValue(value)}`);
  }

  private failure(conn: mysql.Connection, err: unknown): BackendError {
    if (err instanceof BackendError) return err;
    const e = err as { fatal?: unknown; errno?: unknown };
    if (!e.fatal && typeof e.errno === 'number') {
      this.known = undefined; // e.g. the table was dropped or altered by hand
      return writeFailed(NAME, this.where, err, !DATA_ERRNOS.has(e.errno));
    }
    if (this.current === conn) this.current = undefined;
    conn.destroy();
    return unreachable(NAME, this.where, err);
  }
}

function timed(sql: string): { sql: string; timeout: number } {
  return { sql, timeout: QUERY_TIMEOUT_MS };
}

function kindOfSqlType(type: string, columnType: string): ColumnKind {
  switch (type) {
    case 'tinyint':
      return columnType.startsWith('tinyint(1)') ? 'boolean' : 'integer';
    case 'bigint':
    case 'int':
    case 'mediumint':
    case 'smallint':
      return 'integer';
    case 'double':
    case 'float':
    case 'decimal':
      return 'real';
    case 'json':
      return 'json';
    case 'blob':
    case 'longblob':
    case 'mediumblob':
    case 'tinyblob':
    case 'varbinary':
    case 'binary':
      return 'blob';
    case 'datetime':
    case 'timestamp':
    case 'date':
      return 'datetime';
    default:
      return 'text';
  }
}

function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'null' : value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (typeof value === 'object') return toJson(value);
  return String(value);
}

/** Rows cut so that each statement has at most `maxRows` rows and roughly MAX_STATEMENT_BYTES of data. */
function* chunks(values: Param[][], maxRows: number): Generator<Param[][]> {
  let part: Param[][] = [];
  let bytes = 0;
  for (const row of values) {
    const size = row.reduce<number>((n, v) => n + (typeof v === 'string' ? v.length * 3 : v instanceof Buffer ? v.length : 8), 16);
    if (part.length > 0 && (part.length >= maxRows || bytes + size > MAX_STATEMENT_BYTES)) {
      yield part;
      part = [];
      bytes = 0;
    }
    part.push(row);
    bytes += size;
  }
  if (part.length > 0) yield part;
}

/** host:port for messages, never the password. */
function whereOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || '3306'}`;
  } catch {
    return 'the configured url';
  }
}
