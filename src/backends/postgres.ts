import type pg from 'pg';
import type { Backend, BackendContext, BackendFactory } from './types.js';
import { BackendError, encodeFailed, unreachable, writeFailed } from './backend-error.js';
import {
  type BatchPlan,
  type Column,
  type ColumnKind,
  type ColumnNaming,
  SYSTEM_COLUMNS,
  describeValue,
  kindOf,
  planBatch,
  rowsPerStatement,
  splitQualified,
  truncateUtf8,
} from './columns.js';
import { toJson } from './json-line.js';
import { optionalString, requiredString } from './options.js';
import { ConnectedBackend } from './connected-backend.js';

/**
 * Options of the `postgres` bocca.
 * - `url` (required): a libpq connection string, `postgres://user:pass@host:5432/db`.
 * - `table` (default: the typology name): `name` or `schema.name`; created from the first item, see columns.ts.
 */
export interface PostgresBackendOptions {
  readonly url: string;
  readonly table: string;
}

const NAME = 'postgres';
const CONNECT_TIMEOUT_MS = 5_000;
/** A write that takes longer than this is failed (and retried by the stage runtime) instead of hanging. */
const QUERY_TIMEOUT_MS = 60_000;

const SQL_TYPE: Record<ColumnKind, string> = {
  integer: 'BIGINT',
  real: 'DOUBLE PRECISION',
  boolean: 'BOOLEAN',
  text: 'TEXT',
  blob: 'BYTEA',
  datetime: 'TIMESTAMPTZ',
  json: 'JSONB',
};

// Quoted identifiers are case-sensitive; PostgreSQL truncates them to 63 bytes and cannot hold NUL.
const naming: ColumnNaming = {
  sanitize: (key) => truncateUtf8(key.replaceAll('\0', '\uFFFD'), 63) || '_',
  fold: (name) => name,
};

const quote = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/**
 * One connection per bocca process. A write(batch) is one transaction of
 * multi-row INSERTs (split only to stay under 65535 parameters). Column DDL runs
 * before the transaction, with IF NOT EXISTS, so bocca processes racing to add a
 * column all succeed. A lost connection is dropped; the next write connects once
 * again (no loop: the stage runtime retries with backoff).
 */
export const createPostgresBackend: BackendFactory = async (options, context: BackendContext): Promise<Backend> => {
  const opts: PostgresBackendOptions = {
    url: requiredString(NAME, options, 'url'),
    table: optionalString(NAME, options, 'table') ?? context.typology,
  };
  // Drivers load on first use: every stage process imports this registry, few of them write to PostgreSQL.
  const { default: driver } = await import('pg');
  return new PostgresBackend(opts, context, driver);
};

interface KnownTable {
  readonly exists: boolean;
  readonly columns: ReadonlyMap<string, Column>;
}

class PostgresBackend extends ConnectedBackend<pg.Client> {
  private known: KnownTable | undefined;
  private readonly schema: string | undefined;
  private readonly tableName: string;
  private readonly table: string;

  constructor(
    private readonly opts: PostgresBackendOptions,
    private readonly context: BackendContext,
    private readonly driver: typeof pg,
  ) {
    super(NAME, whereOf(opts.url));
    const { schema, table } = splitQualified(opts.table);
    this.schema = schema;
    this.tableName = table;
    this.table = schema === undefined ? quote(table) : `${quote(schema)}.${quote(table)}`;
  }

  protected async end(client: pg.Client): Promise<void> {
    await client.end().catch(() => undefined);
  }

  protected async connect(): Promise<pg.Client> {
    const client = new this.driver.Client({
      connectionString: this.opts.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
      keepAlive: true,
      application_name: 'rezina',
    });
    // Without a listener, an error on an idle connection would crash the process.
    const drop = (err?: unknown): void => {
      if (err) this.context.log.warn({ err: err instanceof Error ? err.message : String(err), backend: NAME, where: this.where }, 'backend connection lost');
      if (this.current === client) this.current = undefined;
    };
    client.on('error', drop);
    client.on('end', () => drop());
    try {
      await client.connect();
    } catch (err) {
      client.end().catch(() => undefined);
      throw unreachable(NAME, this.where, err);
    }
    this.current = client;
    return client;
  }

  protected async writeNow(items: readonly unknown[]): Promise<void> {
    const client = await this.connection();
    try {
      const plan = await this.prepare(client, items);
      const names = plan.columns.map((c) => c.name);
      const kinds = plan.columns.map((c) => c.kind);
      // Encode everything before BEGIN: an item that cannot be stored fails the batch without a round trip.
      const values = plan.rows.map((row) => names.map((n, i) => this.encode(row.get(n), kinds[i]!, n)));
      await client.query('BEGIN');
      try {
        if (names.length === 0) {
          for (let i = 0; i < values.length; i++) await client.query(`INSERT INTO ${this.table} DEFAULT VALUES`);
        } else {
          const chunk = rowsPerStatement(names.length);
          const head = `INSERT INTO ${this.table} (${names.map(quote).join(', ')}) VALUES `;
          for (let start = 0; start < values.length; start += chunk) {
            const part = values.slice(start, start + chunk);
            const tuples = part.map((_, r) => `(${names.map((__, c) => `$${r * names.length + c + 1}`).join(', ')})`);
            await client.query(head + tuples.join(', '), part.flat());
          }
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } catch (err) {
      throw this.failure(client, err);
    }
  }

  /** Makes sure the table has every column the batch needs; returns the plan against the real table. */
  private async prepare(client: pg.Client, items: readonly unknown[]): Promise<BatchPlan> {
    let table = this.known ?? (await this.loadTable(client));
    let plan = planBatch(items, table.columns, naming);
    for (let attempt = 0; plan.add.length > 0 || plan.widen.length > 0 || !table.exists; attempt++) {
      if (attempt === 3) throw encodeFailed(NAME, this.where, `table ${this.table}: columns ${plan.add.map((c) => quote(c.name)).join(', ')} cannot be added`);
      if (!table.exists) {
        const defs = [
          '"_id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY',
          '"_written_at" TIMESTAMPTZ NOT NULL DEFAULT now()',
          ...plan.add.map((c) => `${quote(c.name)} ${SQL_TYPE[c.kind]}`),
        ];
        await this.ddl(client, `CREATE TABLE IF NOT EXISTS ${this.table} (${defs.join(', ')})`);
      } else {
        for (const c of plan.add) await this.ddl(client, `ALTER TABLE ${this.table} ADD COLUMN IF NOT EXISTS ${quote(c.name)} ${SQL_TYPE[c.kind]}`);
        for (const c of plan.widen) await this.ddl(client, `ALTER TABLE ${this.table} ALTER COLUMN ${quote(c.name)} TYPE DOUBLE PRECISION`);
      }
      // Another process may have created the same columns with other types: the database decides.
      table = await this.loadTable(client);
      plan = planBatch(items, table.columns, naming);
    }
    this.known = table;
    return plan;
  }

  private async ddl(client: pg.Client, sql: string): Promise<void> {
    try {
      await client.query(sql);
    } catch (err) {
      // Two processes running CREATE TABLE IF NOT EXISTS at once can still collide on the catalog;
      // the loser sees a unique violation or "already exists", and the reload that follows sorts it out.
      const code = (err as { code?: unknown }).code;
      if (code === '23505' || code === '42P07' || code === '42701') return;
      throw err;
    }
  }

  private async loadTable(client: pg.Client): Promise<KnownTable> {
    const result = await client.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 ORDER BY ordinal_position`,
      [this.schema ?? null, this.tableName],
    );
    const columns = new Map<string, Column>();
    for (const { column_name: name, data_type: type } of result.rows) {
      if ((SYSTEM_COLUMNS as readonly string[]).includes(name)) continue;
      columns.set(naming.fold(name), { name, kind: kindOfSqlType(type) });
    }
    return { exists: result.rows.length > 0, columns };
  }

  private encode(value: unknown, kind: ColumnKind, column: string): unknown {
    const valueKind = kindOf(value);
    if (valueKind === undefined) return null;
    switch (kind) {
      case 'integer':
        if (typeof value === 'boolean') return value ? 1 : 0;
        if (valueKind === 'integer') return typeof value === 'bigint' ? value.toString() : value;
        break;
      case 'real':
        if (typeof value === 'boolean') return value ? 1 : 0;
        if (typeof value === 'bigint') return Number(value);
        if (typeof value === 'number') return Number.isFinite(value) ? value : null;
        break;
      case 'boolean':
        if (typeof value === 'boolean') return value;
        break;
      case 'text':
        return noNul(textOf(value));
      case 'json':
        return jsonNoNul(toJson(value));
      case 'blob':
        if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        if (typeof value === 'string') return Buffer.from(value);
        break;
      case 'datetime':
        if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value;
        break;
    }
    throw encodeFailed(NAME, this.where, `table ${this.table}: column ${quote(column)} is ${SQL_TYPE[kind]} and cannot hold ${describeValue(value)}`);
  }

  /** Connection-level failures drop the client so the next write reconnects; SQL errors keep it. */
  private failure(client: pg.Client, err: unknown): BackendError {
    if (err instanceof BackendError) return err;
    if (err instanceof this.driver.DatabaseError) {
      this.known = undefined; // e.g. the table was dropped or altered by hand
      // Class 22 (data exception) and 23 (integrity) will fail the same way on a retry.
      const retryable = !(err.code?.startsWith('22') || err.code?.startsWith('23'));
      return writeFailed(NAME, this.where, err, retryable);
    }
    if (this.current === client) this.current = undefined;
    client.end().catch(() => undefined);
    return unreachable(NAME, this.where, err);
  }
}

function kindOfSqlType(type: string): ColumnKind {
  switch (type) {
    case 'bigint':
    case 'integer':
    case 'smallint':
      return 'integer';
    case 'double precision':
    case 'real':
    case 'numeric':
      return 'real';
    case 'boolean':
      return 'boolean';
    case 'bytea':
      return 'blob';
    case 'jsonb':
    case 'json':
      return 'json';
    case 'timestamp with time zone':
    case 'timestamp without time zone':
    case 'date':
      return 'datetime';
    default:
      // text, varchar, uuid, … (a table made by hand): send text and let PostgreSQL cast it.
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

// PostgreSQL text and jsonb cannot hold U+0000; it becomes U+FFFD rather than failing the batch forever.
function noNul(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text;
}

function jsonNoNul(json: string): string {
  // Only a real escape counts: an even run of backslashes before it means the backslash itself was escaped.
  return json.includes('\\u0000') ? json.replace(/(?<!\\)((?:\\\\)*)\\u0000/g, '$1\\ufffd') : json;
}

/** host:port for messages, never the password. */
function whereOf(url: string): string {
  try {
    const u = new URL(url);
    const host = u.hostname || u.searchParams.get('host') || 'localhost';
    return `${host}:${u.port || '5432'}`;
  } catch {
    return 'the configured url';
  }
}
