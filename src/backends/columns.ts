/**
 * What the SQL backends (sqlite, postgres, mysql) share: a table is created from
 * the first item and grows a column for every new key, as the ancestor's MySQL
 * example did.
 *
 * - A plain object item is a row, one column per own key; any other item (string,
 *   number, array, Date, Buffer…) is a row with a single `value` column.
 * - A column's type comes from the first non-null value of its key
 *   (see {@link kindOf}); a key that is null/undefined everywhere so far gets no
 *   column yet, so a first item with `temp: null` does not fix `temp` as TEXT.
 * - Within one batch, a new key whose values disagree gets the wider kind
 *   (integer + real → real, anything else mixed → json).
 * - An existing integer column that receives a non-integer number is widened to
 *   real (postgres/mysql ALTER the column); any other disagreement with an
 *   existing column is an `E_BACKEND_ENCODE` error naming the column.
 * - Every table also has `_id` (auto-increment primary key: the write order) and
 *   `_written_at` (UTC time the row was written). A user key with one of these
 *   names is stored in `_id_` / `_written_at_`.
 */

export type ColumnKind = 'integer' | 'real' | 'boolean' | 'text' | 'blob' | 'datetime' | 'json';

export interface Column {
  /** The column's name in the database. */
  readonly name: string;
  readonly kind: ColumnKind;
}

export const SYSTEM_COLUMNS = ['_id', '_written_at'] as const;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** The column kind a value asks for; undefined for null/undefined (and functions/symbols, which JSON drops too). */
export function kindOf(value: unknown): ColumnKind | undefined {
  switch (typeof value) {
    case 'boolean':
      return 'boolean';
    case 'number':
      return Number.isSafeInteger(value) ? 'integer' : 'real';
    case 'bigint':
      return value >= INT64_MIN && value <= INT64_MAX ? 'integer' : 'text';
    case 'string':
      return 'text';
    case 'object':
      if (value === null) return undefined;
      if (value instanceof Uint8Array) return 'blob';
      if (value instanceof Date) return 'datetime';
      return 'json';
    default:
      return undefined;
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The fields of an item as a row: an object's own entries, anything else as `value`. */
export function fieldsOf(item: unknown): [string, unknown][] {
  return isPlainObject(item) ? Object.entries(item) : [['value', item]];
}

/** How a database names columns: what it accepts and which names it thinks are equal. */
export interface ColumnNaming {
  /** A valid column name for a field key (deterministic: every process must agree). */
  sanitize(key: string): string;
  /** The identity of a name as the database compares them (e.g. lower case for MySQL). */
  fold(name: string): string;
}

/** Can a column of this kind hold a value of that kind, must it be widened, or is it a mismatch? */
export function fit(column: ColumnKind, value: ColumnKind): 'ok' | 'widen' | 'mismatch' {
  if (column === value || column === 'text' || column === 'json') return 'ok';
  switch (column) {
    case 'integer':
      return value === 'boolean' ? 'ok' : value === 'real' ? 'widen' : 'mismatch';
    case 'real':
      return value === 'integer' || value === 'boolean' ? 'ok' : 'mismatch';
    case 'blob':
      return value === 'text' ? 'ok' : 'mismatch';
    default:
      return 'mismatch';
  }
}

function merge(a: ColumnKind, b: ColumnKind): ColumnKind {
  const f = fit(a, b);
  if (f === 'ok') return a;
  // integer → real, and a flag column that turns out to hold numbers becomes numeric.
  if (f === 'widen' || (a === 'boolean' && (b === 'integer' || b === 'real'))) return b;
  return 'json';
}

/** A batch turned into rows against the columns a table has (or will have once `add`/`widen` are applied). */
export interface BatchPlan {
  /** One map per item, column name → raw value (null for explicit nulls). */
  readonly rows: readonly Map<string, unknown>[];
  /** Columns every row may use, in first-seen order (existing and new ones). */
  readonly columns: readonly Column[];
  /** Columns to create, in first-seen order. */
  readonly add: readonly Column[];
  /** Existing integer columns that must become real. */
  readonly widen: readonly Column[];
}

/**
 * Plans a batch against the known columns (keyed by folded name). Pure: the
 * caller runs the DDL, reloads the columns from the database and plans again,
 * so the database, not this process's cache, decides what exists.
 */
export function planBatch(items: readonly unknown[], known: ReadonlyMap<string, Column>, naming: ColumnNaming): BatchPlan {
  const systemFolds = new Set(SYSTEM_COLUMNS.map((c) => naming.fold(c)));
  const nameOfKey = new Map<string, string>();
  const used = new Map<string, Column>(); // fold → column (known, or new with its merged kind)
  const added = new Set<string>();
  const widened = new Set<string>();
  const rows: Map<string, unknown>[] = [];

  for (const item of items) {
    const row = new Map<string, unknown>();
    for (const [key, value] of fieldsOf(item)) {
      let name = nameOfKey.get(key);
      if (name === undefined) {
        name = naming.sanitize(key);
        if (systemFolds.has(naming.fold(name))) name = naming.sanitize(`${name}_`);
        nameOfKey.set(key, name);
      }
      const fold = naming.fold(name);
      const kind = kindOf(value);
      let column = used.get(fold) ?? known.get(fold);
      if (column === undefined) {
        // Null so far and no column: nothing to store (a missing column reads as NULL).
        if (kind === undefined) continue;
        column = { name, kind };
        added.add(fold);
      } else if (kind !== undefined) {
        if (added.has(fold)) {
          column = { name: column.name, kind: merge(column.kind, kind) };
        } else if (fit(column.kind, kind) === 'widen') {
          column = { name: column.name, kind: 'real' };
          widened.add(fold);
        }
      }
      used.set(fold, column);
      // Two keys that the database sees as one column: the later one wins.
      row.set(column.name, value ?? null);
    }
    rows.push(row);
  }

  const columns = [...used.values()];
  return {
    rows,
    columns,
    add: [...used.entries()].filter(([f]) => added.has(f)).map(([, c]) => c),
    widen: [...used.entries()].filter(([f]) => widened.has(f)).map(([, c]) => c),
  };
}

/** Cuts a string to at most `maxBytes` UTF-8 bytes without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/** Splits `schema.table` (postgres) or `database.table` (mysql) at the first dot. */
export function splitQualified(table: string): { schema: string | undefined; table: string } {
  const dot = table.indexOf('.');
  return dot > 0 && dot < table.length - 1 ? { schema: table.slice(0, dot), table: table.slice(dot + 1) } : { schema: undefined, table };
}

/** Rows per INSERT so that rows × columns stays under a driver's placeholder limit (65535 for pg and mysql). */
export function rowsPerStatement(columnCount: number, maxParams = 65_535): number {
  return Math.max(1, Math.floor(maxParams / Math.max(1, columnCount)));
}

export function describeValue(value: unknown): string {
  const kind = kindOf(value) ?? typeof value;
  let shown: string;
  try {
    shown = typeof value === 'string' ? JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value) : String(value);
  } catch {
    shown = kind;
  }
  if (shown.length > 60) shown = `${shown.slice(0, 60)}…`;
  return `${shown} (${kind})`;
}
