/**
 * Typology file → validated, normalized, frozen `Typology`.
 *
 * Three passes, each reporting every problem it finds as a `Diagnostic` at the
 * file:line:col of the YAML node (or of the module's source for compile
 * errors), never a stack trace:
 *   1. YAML: syntax, tabs, duplicate keys, aliases (an unquoted cron is one).
 *      Any problem here except a duplicate key stops the load: the tree is a
 *      guess and later messages would mislead.
 *   2. JSON Schema (schemas/typology.schema.json, ajv allErrors), messages
 *      rewritten in plain words from the schema's `x-expect` annotations.
 *   3. Meaning: names unique, durations, startTime, time zone, cron, module
 *      files exist and compile, functions exported.
 *
 * Rules decided here (the schema holds the rest):
 * - startTime is `YYYY-MM-DD[( |T)HH:MM[:SS[.mmm]]]` with an optional `Z` or
 *   `±HH[:MM]` offset. Without an offset it is wall-clock time in `timezone`,
 *   or in the zone of the process that loads the file (the master) when no
 *   timezone is given. A wall time skipped by a DST change is an error; a
 *   repeated one means its first occurrence.
 * - cron must be a quoted string. Unquoted, a cron that starts with `*` is
 *   read by YAML as an alias; that is reported as "quote the cron expression".
 *   The field checks are `checkCron`'s (schedule/): field count, ranges, a
 *   step larger than its field, and the 6-field rule: with 6 fields the first
 *   is seconds, and a seconds field of `*` (or a step of 1) fires every second
 *   of every matching minute, which is reported as an error that suggests the
 *   5-field form and the `0 ...` form (for every second, use interval: 1s).
 * - `batch:` is only allowed with `mode: batch`; backend options that a
 *   backend does not use are errors, not silently ignored.
 * - Bocca options are normalized with their defaults filled in (see
 *   `BoccaSpec.options`).
 */
import { readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
  type Pair,
} from 'yaml';
import type { Diagnostic } from '../errors.js';
import { checkCron, isValidTimeZone } from '../schedule/cron.js';
import { compileModule } from './compile.js';
import type { CompiledModule } from './compile-types.js';
import { parseDuration } from './duration.js';
import type { BoccaMode, BoccaSpec, HydrantSpec, NotchSpec, OverlapPolicy, ScheduleSpec, Typology } from './types.js';

export interface LoadOptions {
  /** Validate this text instead of reading `file` (modules are still read relative to `file`). */
  text?: string;
  /** Check that modules exist, compile, and export the functions named. Default true. */
  checkModules?: boolean;
}

export type LoadResult =
  | {
      ok: true;
      typology: Typology;
      /** Compiled modules by absolute source path; empty when `checkModules` is false. */
      modules: ReadonlyMap<string, CompiledModule>;
    }
  | { ok: false; diagnostics: Diagnostic[] };

/** Typology files larger than this are refused (hostile input). */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

export const BACKENDS = ['stdout', 'file', 'sqlite', 'postgres', 'mysql', 'redis', 'module'] as const;

/** Options each backend takes; must agree with the schema's if/then blocks. */
const BACKEND_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  stdout: [],
  file: ['path'],
  sqlite: ['path', 'table'],
  postgres: ['url', 'table'],
  mysql: ['url', 'table'],
  redis: ['url', 'key', 'type'],
  module: ['module', 'export'],
};

type Seg = string | number;
type Data = Record<string, unknown>;

/** Load, validate and normalize one typology file. Never throws for user errors. */
export async function loadTypologyFile(file: string, options: LoadOptions = {}): Promise<LoadResult> {
  const absFile = path.resolve(file);
  let text = options.text;
  if (text === undefined) {
    try {
      const s = await stat(absFile);
      if (!s.isFile()) return fileProblem(file, 'E_FILE_READ', 'not a file');
      if (s.size > MAX_FILE_BYTES) return fileProblem(file, 'E_FILE_READ', 'the file is larger than 16 MB');
      text = await readFile(absFile, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'file not found' : `cannot read the file (${code ?? String(err)})`;
      return fileProblem(file, 'E_FILE_READ', why);
    }
  }
  if (text.length > MAX_FILE_BYTES) return fileProblem(file, 'E_FILE_READ', 'the file is larger than 16 MB');

  const ctx = new Context(file, absFile, text);
  try {
    return await ctx.load(options);
  } catch (err) {
    // Only absurd nesting gets here (recursion in the YAML library or in our walks).
    if (err instanceof RangeError) return fileProblem(file, 'E_YAML_SYNTAX', 'the file nests too deeply to read');
    throw err;
  }
}

function fileProblem(file: string, code: string, message: string): LoadResult {
  return { ok: false, diagnostics: [{ file, line: 0, col: 0, path: '', code, message }] };
}

// ---------------------------------------------------------------------------

class Context {
  readonly diagnostics: Diagnostic[] = [];
  readonly modules = new Map<string, CompiledModule>();
  private readonly lineCounter = new LineCounter();
  private doc!: Document.Parsed;
  /** Spec paths that already have a diagnostic; later passes stay quiet about them. */
  private readonly flagged = new Set<string>();

  constructor(
    private readonly file: string,
    private readonly absFile: string,
    private readonly text: string,
  ) {}

  async load(options: LoadOptions): Promise<LoadResult> {
    const data = this.parseYaml();
    if (data === undefined) return { ok: false, diagnostics: this.sorted() };
    this.validateSchema(data);
    if (isObject(data)) {
      this.checkMeaning(data);
      if (options.checkModules ?? true) await this.checkModules(data);
    }
    if (this.diagnostics.length > 0 || !isObject(data)) return { ok: false, diagnostics: this.sorted() };
    return { ok: true, typology: deepFreeze(normalize(data, this.absFile)), modules: this.modules };
  }

  // -- pass 1: YAML -------------------------------------------------------

  /** The plain data, or undefined when the YAML is too broken to go on. */
  parseYaml(): unknown {
    this.doc = parseDocument(this.text, { lineCounter: this.lineCounter, prettyErrors: false, uniqueKeys: false });
    const cronLines = new Set<number>();
    const tabLines = new Set<number>();
    for (const e of this.doc.errors) {
      const offset = e.pos[0];
      const { line, col } = this.lineCounter.linePos(offset);
      const cron = this.unquotedCronOnLine(line);
      if (cron) {
        if (!cronLines.has(line)) this.reportCronAlias(line, cron);
        cronLines.add(line);
        continue;
      }
      if (e.code === 'TAB_AS_INDENT') {
        if (!tabLines.has(line)) {
          this.add(line, col, '', 'E_YAML_TAB', 'indent with spaces, not tabs (YAML does not allow tabs in indentation)');
        }
        tabLines.add(line);
        continue;
      }
      this.add(line, col, '', 'E_YAML_SYNTAX', yamlMessage(e.code, e.message));
    }
    const contents = this.doc.contents;
    if (contents) this.walkYaml(contents, [], cronLines);
    if (this.diagnostics.some((d) => d.code !== 'E_YAML_DUPLICATE_KEY')) return undefined;

    if (contents === null || (isScalar(contents) && contents.value === null)) {
      this.add(1, 1, '', 'E_FILE_EMPTY', 'the file is empty — a typology needs at least name, hydrant and bocca');
      return undefined;
    }
    try {
      return this.doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const said = /alias count/i.test(message)
        ? 'too many aliases (*name) — write the values out instead'
        : `invalid YAML: ${message}`;
      this.add(1, 1, '', 'E_YAML_SYNTAX', said);
      return undefined;
    }
  }

  /** Duplicate keys (with where the first one was) and aliases that point nowhere. */
  private walkYaml(node: unknown, at: Seg[], cronLines: Set<number>): void {
    if (isAlias(node)) {
      if (node.resolve(this.doc)) return;
      const { line, col } = this.pos(node.range?.[0] ?? 0);
      const cron = this.unquotedCronOnLine(line);
      if (cron) {
        if (!cronLines.has(line)) this.reportCronAlias(line, cron);
        cronLines.add(line);
        return;
      }
      const message = `unknown alias "*${node.source}" — a value that starts with * must be quoted`;
      this.add(line, col, formatPath(at), 'E_YAML_ALIAS', message);
      return;
    }
    if (isMap(node)) {
      const seen = new Map<string, number>();
      for (const pair of node.items) {
        const key = keyString(pair);
        const keyOffset = (pair.key as YamlNode | null)?.range?.[0];
        if (key !== undefined && keyOffset !== undefined) {
          const first = seen.get(key);
          if (first !== undefined) {
            const { line, col } = this.pos(keyOffset);
            const message = `duplicate key "${key}" — it is already set on line ${this.pos(first).line}; keep one`;
            this.add(line, col, formatPath([...at, key]), 'E_YAML_DUPLICATE_KEY', message);
            this.flagged.add(formatPath([...at, key]));
          } else {
            seen.set(key, keyOffset);
          }
        }
        this.walkYaml(pair.value, key === undefined ? at : [...at, key], cronLines);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => this.walkYaml(item, [...at, i], cronLines));
    }
  }

  /** The cron text when `line` has `cron: *…` without quotes (block or flow style). */
  private unquotedCronOnLine(line: number): { text: string; col: number } | undefined {
    const lineText = this.lineText(line);
    const m = /(^|[\s{,])cron\s*:\s*(\*[^,}#]*?)\s*(?:$|[,}]|\s#)/.exec(lineText);
    if (!m) return undefined;
    return { text: m[2]!, col: m.index + m[0].indexOf('*', m[1]!.length) + 1 };
  }

  private reportCronAlias(line: number, cron: { text: string; col: number }): void {
    const p = this.pathOfLine(line) ?? 'schedule.cron';
    this.flagged.add(p);
    this.add(
      line,
      cron.col,
      p,
      'E_CRON_UNQUOTED',
      `quote the cron expression: cron: "${cron.text}" — unquoted, YAML reads a leading * as an alias`,
    );
  }

  private lineText(line: number): string {
    const starts = this.lineCounter.lineStarts;
    const start = starts[line - 1] ?? 0;
    const end = starts[line] ?? this.text.length;
    return this.text.slice(start, end).replace(/\r?\n$/, '');
  }

  /** Spec path of the key that starts on `line`, if any. */
  private pathOfLine(line: number): string | undefined {
    let found: string | undefined;
    const visit = (node: unknown, at: Seg[]): void => {
      if (isMap(node)) {
        for (const pair of node.items) {
          const key = keyString(pair);
          if (key === undefined) continue;
          const off = (pair.key as YamlNode | null)?.range?.[0];
          if (off !== undefined && this.pos(off).line === line) found = formatPath([...at, key]);
          visit(pair.value, [...at, key]);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => visit(item, [...at, i]));
      }
    };
    visit(this.doc.contents, []);
    return found;
  }

  // -- pass 2: JSON Schema --------------------------------------------------

  validateSchema(data: unknown): void {
    const validate = validator();
    if (validate(data)) return;
    const best = new Map<string, { rank: number; diag: Omit<Diagnostic, 'file'> }>();
    for (const e of validate.errors ?? []) {
      const found = this.describeSchemaError(e, data);
      if (!found) continue;
      const key = formatPath(found.target);
      const prior = best.get(key);
      if (!prior || found.rank < prior.rank) best.set(key, { rank: found.rank, diag: found.diag });
    }
    for (const [key, { diag }] of best) {
      this.flagged.add(key);
      this.diagnostics.push({ file: this.file, ...diag });
    }
  }

  private describeSchemaError(
    e: ErrorObject,
    data: unknown,
  ): { target: Seg[]; rank: number; diag: Omit<Diagnostic, 'file'> } | undefined {
    const at = pointerToSegs(e.instancePath, data);
    const parentSchema = (e.parentSchema ?? {}) as Record<string, unknown>;
    const make = (target: Seg[], where: Where, rank: number, code: string, message: string) => {
      const { line, col } = this.locate(target, where);
      return { target, rank, diag: { line, col, path: formatPath(target), code, message } };
    };

    switch (e.keyword) {
      case 'if':
      case 'const':
        return undefined; // only the inner errors of an if/then say something
      case 'required': {
        if (e.schemaPath.startsWith('#/oneOf/')) return undefined; // said by the oneOf below
        const missing = (e.params as { missingProperty: string }).missingProperty;
        const target = [...at, missing];
        const owner = valueAt(data, at);
        const backend = isObject(owner) && typeof owner.backend === 'string' ? owner.backend : undefined;
        const why =
          at.length === 0
            ? (ROOT_HINTS[missing] ?? '')
            : e.schemaPath.includes('/then/') && backend
              ? ` for backend "${backend}"`
              : '';
        return make(target, 'owner', 0, 'E_SCHEMA_REQUIRED', `${missing} is required${why}`);
      }
      case 'oneOf': {
        if (e.schemaPath !== '#/oneOf' || !isObject(data)) break;
        if ('hydrant' in data && 'hydrants' in data) {
          return make(['hydrants'], 'key', 0, 'E_SCHEMA_CONFLICT', 'use hydrant (one) or hydrants (a list), not both');
        }
        return make(['hydrant'], 'owner', 0, 'E_SCHEMA_REQUIRED', `hydrant is required${ROOT_HINTS.hydrant}`);
      }
      case 'not': {
        // The only `not` in the schema: interval with cron.
        if (at.length === 1 && at[0] === 'schedule') {
          const message = 'interval and cron cannot be used together — keep one of them';
          return make([...at, 'cron'], 'key', 0, 'E_SCHEMA_CONFLICT', message);
        }
        break;
      }
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys((parentSchema.properties as object | undefined) ?? {});
        return make([...at, extra], 'key', 0, 'E_SCHEMA_UNKNOWN_FIELD', unknownFieldMessage(extra, allowed, at));
      }
      case 'false schema': {
        const field = String(at[at.length - 1]);
        const owner = valueAt(data, at.slice(0, -1));
        if (field === 'batch') {
          const message = 'batch settings apply only with mode: batch — add mode: batch, or remove batch';
          return make(at, 'key', 0, 'E_SCHEMA_NOT_APPLICABLE', message);
        }
        const backend = isObject(owner) ? String(owner.backend) : '?';
        const takes = BACKEND_OPTIONS[backend] ?? [];
        const list = takes.length === 0 ? `${backend} takes no options` : `it takes ${takes.join(', ')}`;
        return make(at, 'key', 0, 'E_SCHEMA_NOT_APPLICABLE', `${field} does not apply to backend "${backend}" (${list})`);
      }
      case 'enum': {
        const options = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
        const value = e.data;
        const guess = typeof value === 'string' ? closest(value, options) : undefined;
        const hint = guess ? ` (did you mean "${guess}"?)` : '';
        const message = `unknown ${fieldName(at)} ${show(value)} — one of ${options.join(', ')}${hint}`;
        return make(at, 'value', 1, 'E_SCHEMA_ENUM', message);
      }
      case 'type':
        return make(at, 'value', 0, 'E_SCHEMA_TYPE', valueMessage(fieldName(at), e, parentSchema));
      case 'pattern':
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
      case 'minLength':
      case 'maxLength':
      case 'minItems':
      case 'maxItems':
        return make(at, 'value', 1, 'E_SCHEMA_VALUE', valueMessage(fieldName(at), e, parentSchema));
      default:
        break;
    }
    return make(at, 'value', 2, 'E_SCHEMA', `${fieldName(at)} ${e.message ?? 'is not valid'}`);
  }

  // -- pass 3: meaning ------------------------------------------------------

  checkMeaning(data: Data): void {
    this.checkSchedule(data.schedule);
    this.checkNames(data);
    if (Array.isArray(data.notches)) {
      data.notches.forEach((n, i) => {
        if (isObject(n)) this.checkPositiveDuration(['notches', i, 'timeout'], n.timeout);
      });
    }
  }

  private checkSchedule(schedule: unknown): void {
    if (!isObject(schedule)) return;
    this.checkPositiveDuration(['schedule', 'interval'], schedule.interval);

    let zone: string | undefined;
    let zoneOk = true;
    if (typeof schedule.timezone === 'string' && !this.isFlagged(['schedule', 'timezone'])) {
      zone = schedule.timezone;
      if (!isValidTimeZone(zone)) {
        zoneOk = false;
        const guess = closest(zone, knownTimeZones());
        const hint = guess ? ` — did you mean "${guess}"?` : ' — use an IANA name such as Europe/Berlin or UTC';
        this.report(['schedule', 'timezone'], 'value', 'E_TIMEZONE', `unknown time zone "${zone}"${hint}`);
      }
    }

    if (typeof schedule.cron === 'string' && !this.isFlagged(['schedule', 'cron'])) {
      for (const problem of checkCron(schedule.cron, zoneOk ? zone : undefined)) {
        this.report(['schedule', 'cron'], 'value', 'E_CRON', problem);
      }
    }

    if (typeof schedule.startTime === 'string' && !this.isFlagged(['schedule', 'startTime'])) {
      // With an unknown zone, still check the form (read as UTC) so every error shows at once.
      const parsed = parseStartTime(schedule.startTime, zoneOk ? zone : 'UTC');
      if (typeof parsed === 'string') this.report(['schedule', 'startTime'], 'value', 'E_START_TIME', parsed);
    }
  }

  private checkPositiveDuration(at: Seg[], value: unknown): void {
    if ((typeof value !== 'string' && typeof value !== 'number') || this.isFlagged(at)) return;
    if (parseDuration(value) === 0) {
      this.report(at, 'value', 'E_DURATION', `${fieldName(at)} must be more than 0, got ${show(value)}`);
    }
  }

  private checkNames(data: Data): void {
    const seen = new Map<string, Seg[]>();
    for (const { at, stage } of stagesOf(data)) {
      if (!isObject(stage)) continue;
      const explicit = typeof stage.name === 'string';
      const name = explicit ? (stage.name as string) : typeof stage.function === 'string' ? stage.function : undefined;
      if (name === undefined) continue;
      const where: Seg[] = explicit ? [...at, 'name'] : [...at, 'function'];
      if (this.isFlagged(where)) continue;
      if (name === 'bocca') {
        const fix = explicit ? 'pick another name' : 'add a name: field';
        this.report(where, 'value', 'E_NAME_RESERVED', `the name "bocca" is reserved for the sink — ${fix}`);
        continue;
      }
      const first = seen.get(name);
      if (first) {
        const fix = explicit ? 'give it another name' : 'add a name: field to tell them apart';
        const other = formatPath(first.slice(0, -1));
        this.report(where, 'value', 'E_NAME_DUPLICATE', `two stages are named "${name}" (the other is ${other}) — ${fix}`);
      } else {
        seen.set(name, where);
      }
    }
  }

  // -- pass 3b: modules -----------------------------------------------------

  async checkModules(data: Data): Promise<void> {
    const dir = path.dirname(this.absFile);
    // Everything that names a module: hydrants, notches, and a module bocca.
    const refs: Array<{ at: Seg[]; module: string; exportName: string; exportAt: Seg[]; noun: string }> = [];
    for (const { at, stage } of stagesOf(data)) {
      if (!isObject(stage) || typeof stage.module !== 'string' || this.isFlagged([...at, 'module'])) continue;
      refs.push({
        at,
        module: stage.module,
        exportName: typeof stage.function === 'string' ? stage.function : '',
        exportAt: [...at, 'function'],
        noun: 'function',
      });
    }
    const bocca = isObject(data.bocca) && data.bocca.backend === 'module' ? data.bocca : undefined;
    if (bocca && typeof bocca.module === 'string' && !this.isFlagged(['bocca', 'module'])) {
      refs.push({
        at: ['bocca'],
        module: bocca.module,
        exportName: typeof bocca.export === 'string' ? bocca.export : 'default',
        exportAt: typeof bocca.export === 'string' ? ['bocca', 'export'] : ['bocca', 'module'],
        noun: 'export',
      });
    }

    const byFile = new Map<string, typeof refs>();
    for (const r of refs) {
      const abs = path.resolve(dir, r.module);
      byFile.set(abs, [...(byFile.get(abs) ?? []), r]);
    }

    await Promise.all(
      [...byFile].map(async ([abs, users]) => {
        const first = users[0]!;
        const moduleAt = [...first.at, 'module'];
        if (!(await isFile(abs))) {
          const guess = closest(path.basename(abs), await siblings(abs));
          const hint = guess ? ` — did you mean "${path.join(path.dirname(first.module), guess)}"?` : '';
          for (const u of users) {
            const message = `module file "${u.module}" does not exist (looked for ${this.display(abs)})${hint}`;
            this.report([...u.at, 'module'], 'value', 'E_MODULE_MISSING', message);
          }
          return;
        }
        const compiled = await compileModule(abs);
        if (!compiled.ok) {
          for (const d of compiled.diagnostics) {
            this.diagnostics.push({ ...d, file: this.display(d.file), path: formatPath(moduleAt) });
          }
          return;
        }
        this.modules.set(abs, compiled.module);
        const exported = compiled.module.exports;
        for (const u of users) {
          if (u.exportName === '' || this.isFlagged(u.exportAt) || exported.includes(u.exportName)) continue;
          const guess = closest(u.exportName, exported);
          const list = exported.length === 0 ? 'it exports nothing' : `it exports ${exported.join(', ')}`;
          const hint = guess ? ` — did you mean "${guess}"? (${list})` : ` (${list})`;
          const message = `${u.noun} "${u.exportName}" is not exported by ${u.module}${hint}`;
          this.report(u.exportAt, 'value', 'E_FUNCTION_MISSING', message);
        }
      }),
    );
  }

  /** A path for a diagnostic in the same style (relative or absolute) as the YAML path the caller gave. */
  private display(abs: string): string {
    return path.isAbsolute(this.file) ? abs : path.relative(process.cwd(), abs);
  }

  // -- positions and reporting ----------------------------------------------

  private report(at: Seg[], where: Where, code: string, message: string): void {
    const { line, col } = this.locate(at, where);
    this.flagged.add(formatPath(at));
    this.diagnostics.push({ file: this.file, line, col, path: formatPath(at), code, message });
  }

  private add(line: number, col: number, p: string, code: string, message: string): void {
    this.diagnostics.push({ file: this.file, line, col, path: p, code, message });
  }

  private isFlagged(at: Seg[]): boolean {
    return this.flagged.has(formatPath(at));
  }

  private pos(offset: number): { line: number; col: number } {
    return this.lineCounter.linePos(offset);
  }

  /**
   * Where to point for a spec path: at its value, at its key (unknown or
   * misplaced fields), or at its owner's key (a missing field).
   */
  private locate(at: Seg[], where: Where): { line: number; col: number } {
    if (where === 'owner') {
      const owner = at.slice(0, -1);
      if (owner.length === 0) return this.pos(this.doc.contents?.range?.[0] ?? 0);
      return this.locate(owner, typeof owner[owner.length - 1] === 'string' ? 'key' : 'value');
    }
    // Walk down as far as the tree goes; point at the deepest node found.
    let node: unknown = this.doc.contents;
    let best = this.doc.contents?.range?.[0] ?? 0;
    for (let i = 0; i < at.length; i++) {
      const seg = at[i]!;
      if (isAlias(node)) node = node.resolve(this.doc);
      let next: unknown;
      let keyOffset: number | undefined;
      if (isMap(node)) {
        const pair = [...node.items].reverse().find((p) => keyString(p) === String(seg));
        if (!pair) break;
        keyOffset = (pair.key as YamlNode | null)?.range?.[0];
        next = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        next = node.items[seg];
      } else {
        break;
      }
      const last = i === at.length - 1;
      const valueOffset = (next as YamlNode | null)?.range?.[0];
      if (last && where === 'key' && keyOffset !== undefined) return this.pos(keyOffset);
      // An empty value (`bocca:`) has no node of its own: point at its key.
      best = valueOffset !== undefined && !isEmptyScalar(next) ? valueOffset : (keyOffset ?? best);
      node = next;
    }
    return this.pos(best);
  }

  sorted(): Diagnostic[] {
    const own = (d: Diagnostic) => (d.file === this.file ? 0 : 1);
    return [...this.diagnostics].sort(
      (a, b) => own(a) - own(b) || a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col,
    );
  }
}

type Where = 'value' | 'key' | 'owner';

function isEmptyScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null && (node.source === '' || node.source === undefined);
}

function keyString(pair: Pair): string | undefined {
  const key = pair.key;
  if (isScalar(key)) return String(key.value);
  if (key === null || key === undefined) return undefined;
  return typeof key === 'object' ? undefined : String(key);
}

/** Hydrants (one or a list) and notches, with their spec paths. */
function stagesOf(data: Data): Array<{ at: Seg[]; stage: unknown }> {
  const out: Array<{ at: Seg[]; stage: unknown }> = [];
  if ('hydrant' in data) out.push({ at: ['hydrant'], stage: data.hydrant });
  if (Array.isArray(data.hydrants)) data.hydrants.forEach((h, i) => out.push({ at: ['hydrants', i], stage: h }));
  if (Array.isArray(data.notches)) data.notches.forEach((n, i) => out.push({ at: ['notches', i], stage: n }));
  return out;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function siblings(p: string): Promise<string[]> {
  try {
    return (await readdir(path.dirname(p))).filter((f) => /\.(ts|mts|cts|js|mjs|cjs)$/.test(f));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------
// Schema and messages

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  if (!compiled) {
    // src/spec/ and dist/spec/ are both two levels below the package root.
    const text = readFileSync(new URL('../../schemas/typology.schema.json', import.meta.url), 'utf8');
    const schema = JSON.parse(text) as object;
    // verbose: errors carry the data and the schema, which the messages are made from.
    const ajv = new Ajv({
      allErrors: true,
      verbose: true,
      strict: true,
      allowUnionTypes: true,
      strictTypes: false,
      strictRequired: false,
    });
    ajv.addKeyword({ keyword: 'x-expect', schemaType: 'string' });
    compiled = ajv.compile(schema);
  }
  return compiled;
}

const ROOT_HINTS: Readonly<Record<string, string>> = {
  name: ' — the typology needs a name, such as name: cityweather',
  hydrant: ' — the module and function called on every tick (or hydrants: a list of them)',
  bocca: ' — where results go, such as bocca: { backend: stdout }',
};

const SCHEDULE_FIELDS = ['interval', 'cron', 'timezone', 'startTime', 'overlap'];
const STAGE_ONLY_FIELDS = ['processes', 'threads', 'timeout', 'retries', 'retryBackoff'];

function unknownFieldMessage(extra: string, allowed: string[], at: Seg[]): string {
  const base = `unknown field "${extra}"`;
  const guess = closest(extra, allowed);
  if (guess) return `${base} — did you mean "${guess}"?`;
  if (at.length === 0 && SCHEDULE_FIELDS.includes(extra)) return `${base} — it belongs under schedule:`;
  if ((at[0] === 'hydrant' || at[0] === 'hydrants') && STAGE_ONLY_FIELDS.includes(extra)) {
    return `${base} — a hydrant is called once per tick; ${extra} is for notches`;
  }
  return `${base} — allowed here: ${allowed.join(', ')}`;
}

function expectOf(schema: Record<string, unknown>): string {
  if (typeof schema['x-expect'] === 'string') return schema['x-expect'];
  const type = schema.type;
  return Array.isArray(type) ? type.join(' or ') : String(type ?? 'valid');
}

function valueMessage(field: string, e: ErrorObject, schema: Record<string, unknown>): string {
  const isDuration = Array.isArray(schema.type) && schema.type.includes('number') && schema.type.includes('string');
  const value = e.data;
  if (isDuration) {
    const negative = (typeof value === 'number' && value < 0) || (typeof value === 'string' && value.trim().startsWith('-'));
    if (negative || (e.keyword === 'exclusiveMinimum' && value === 0)) {
      return schema.exclusiveMinimum !== undefined
        ? `${field} must be more than 0, got ${show(value)}`
        : `${field} must not be negative, got ${show(value)}`;
    }
  }
  return `${field} must be ${expectOf(schema)}, got ${show(value)}`;
}

/** The word a message uses for the value at a path: `threads`, `hydrants[1]`. */
function fieldName(at: Seg[]): string {
  if (at.length === 0) return 'the file';
  let i = at.length - 1;
  while (i > 0 && typeof at[i] === 'number') i--;
  return formatPath(at.slice(i));
}

/** `['notches', 0, 'threads']` → `notches[0].threads`. */
export function formatPath(at: readonly Seg[]): string {
  let out = '';
  for (const seg of at) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out;
}

function pointerToSegs(pointer: string, data: unknown): Seg[] {
  if (pointer === '') return [];
  const out: Seg[] = [];
  let node = data;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const asIndex = Array.isArray(node) && /^\d+$/.test(seg) ? Number(seg) : seg;
    out.push(asIndex);
    node = isObject(node) || Array.isArray(node) ? (node as Record<string, unknown>)[seg] : undefined;
  }
  return out;
}

function valueAt(data: unknown, at: Seg[]): unknown {
  let node = data;
  for (const seg of at) {
    node = isObject(node) || Array.isArray(node) ? (node as Record<string, unknown>)[String(seg)] : undefined;
  }
  return node;
}

/** A value as a message shows it: strings quoted, containers named. */
function show(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (typeof value === 'object') return Object.keys(value).length === 0 ? 'an empty mapping' : 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

const YAML_HINTS: Readonly<Record<string, string>> = {
  MULTIPLE_DOCS: 'only one typology per file — remove the second document (the line with ---) or move it to its own file',
  BLOCK_AS_IMPLICIT_KEY:
    'a value on the same line as its key cannot itself be "key: value" — check the indentation, or quote the value',
  MULTILINE_IMPLICIT_KEY:
    'a key must fit on one line and be followed by a colon — check for a missing ":" or wrong indentation',
};

function yamlMessage(code: string, message: string): string {
  const hint = YAML_HINTS[code];
  if (hint) return `invalid YAML: ${hint}`;
  if (/call stack/i.test(message)) return 'the file nests too deeply to read';
  const first = message.split('\n')[0]!.replace(/\s+at line \d+, column \d+.*$/, '');
  return `invalid YAML: ${first.charAt(0).toLowerCase()}${first.slice(1)}`;
}

// ---------------------------------------------------------------------------
// Suggestions

/** The candidate closest to `word` by edit distance, if it is close enough to be a likely typo. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (c.toLowerCase() === lower) return c;
    const d = editDistance(lower, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return bestDistance <= limit ? best : undefined;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

let zones: readonly string[] | undefined;
function knownTimeZones(): readonly string[] {
  zones ??= [...Intl.supportedValuesOf('timeZone'), 'UTC'];
  return zones;
}

// ---------------------------------------------------------------------------
// startTime

const START_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * Epoch ms of a startTime, or a message saying what is wrong. Without an
 * offset the wall time is read in `zone` (undefined: this process's zone).
 */
export function parseStartTime(text: string, zone?: string): number | string {
  const trimmed = text.trim();
  const m = START_TIME.exec(trimmed);
  const example = '"2026-12-03 20:18:03" (or with an offset: "2026-12-03T20:18:03+01:00")';
  if (!m) return `startTime "${text}" is not a date and time — write it as ${example}`;
  const [y, mo, d, h = 0, mi = 0, s = 0] = m.slice(1, 7).map((v) => (v === undefined ? undefined : Number(v))) as number[];
  const ms = m[7] ? Number(m[7].padEnd(3, '0')) : 0;
  const probe = new Date(Date.UTC(y!, mo! - 1, d!));
  if (mo! < 1 || mo! > 12 || probe.getUTCDate() !== d || probe.getUTCMonth() !== mo! - 1) {
    return `startTime "${text}" is not a real date`;
  }
  if (h > 23 || mi > 59 || s > 59) return `startTime "${text}" is not a real time of day`;
  const wall = Date.UTC(y!, mo! - 1, d!, h, mi, s, ms);
  if (wall < Date.UTC(1970, 0, 1)) return `startTime "${text}" is before 1970`;

  const offset = m[8];
  if (offset) {
    if (offset.toUpperCase() === 'Z') return wall;
    const digits = offset.slice(1).replace(':', '');
    const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0');
    if (minutes > 14 * 60) return `startTime "${text}" has an offset beyond ±14:00`;
    return wall - (offset[0] === '-' ? -1 : 1) * minutes * 60_000;
  }

  // Try the offsets in force around that day; keep the instants that show this wall time.
  const candidates = new Set<number>();
  for (const probeAt of [wall - 86_400_000, wall, wall + 86_400_000]) {
    const t = wall - zoneOffset(probeAt, zone);
    if (wallClock(t, zone) === wall) candidates.add(t);
  }
  if (candidates.size === 0) {
    const where = zone ?? 'the local time zone';
    return (
      `startTime "${text}" does not exist in ${where} (the clocks skip it for daylight saving time)` +
      ' — pick another time or add an offset'
    );
  }
  return Math.min(...candidates);
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function wallClock(t: number, zone: string | undefined): number {
  const key = zone ?? '';
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(key, f);
  }
  const parts = f.formatToParts(new Date(t));
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value);
  const ms = ((t % 1000) + 1000) % 1000;
  return Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'), ms);
}

function zoneOffset(t: number, zone: string | undefined): number {
  return wallClock(t, zone) - t;
}

// ---------------------------------------------------------------------------
// Normalization (only ever sees data that passed every check)

function normalize(data: Data, file: string): Typology {
  const dir = path.dirname(file);
  const name = data.name as string;
  const rawSchedule = (data.schedule ?? {}) as Data;
  const schedule: ScheduleSpec = {
    ...(rawSchedule.interval !== undefined ? { intervalMs: parseDuration(rawSchedule.interval as string | number)! } : {}),
    ...(rawSchedule.cron !== undefined ? { cron: (rawSchedule.cron as string).trim() } : {}),
    ...(rawSchedule.timezone !== undefined ? { timezone: rawSchedule.timezone as string } : {}),
    ...(rawSchedule.startTime !== undefined
      ? { startTime: parseStartTime(rawSchedule.startTime as string, rawSchedule.timezone as string | undefined) as number }
      : {}),
    overlap: (rawSchedule.overlap as OverlapPolicy | undefined) ?? 'allow',
  };

  const rawHydrants = (data.hydrants ?? [data.hydrant]) as Data[];
  const hydrants: HydrantSpec[] = rawHydrants.map((h) => ({
    name: (h.name as string | undefined) ?? (h.function as string),
    module: path.resolve(dir, h.module as string),
    moduleAsWritten: h.module as string,
    function: h.function as string,
    args: (h.args as unknown[] | undefined) ?? [],
  }));

  const notches: NotchSpec[] = ((data.notches ?? []) as Data[]).map((n) => ({
    name: (n.name as string | undefined) ?? (n.function as string),
    module: path.resolve(dir, n.module as string),
    moduleAsWritten: n.module as string,
    function: n.function as string,
    processes: (n.processes as number | undefined) ?? 1,
    threads: (n.threads as number | undefined) ?? 1,
    ...(n.timeout !== undefined ? { timeoutMs: parseDuration(n.timeout as string | number)! } : {}),
    retries: (n.retries as number | undefined) ?? 0,
    retryBackoffMs: n.retryBackoff !== undefined ? parseDuration(n.retryBackoff as string | number)! : 1000,
  }));

  const b = data.bocca as Data;
  const batch = (b.batch ?? {}) as Data;
  const bocca: BoccaSpec = {
    name: 'bocca',
    backend: b.backend as string,
    mode: (b.mode as BoccaMode | undefined) ?? 'stream',
    batchSize: (batch.size as number | undefined) ?? 500,
    lingerMs: batch.linger !== undefined ? parseDuration(batch.linger as string | number)! : 200,
    processes: (b.processes as number | undefined) ?? 1,
    threads: (b.threads as number | undefined) ?? 1,
    options: boccaOptions(b, name, dir),
  };

  return {
    name,
    file,
    dir,
    ...(typeof data.description === 'string' ? { description: data.description } : {}),
    schedule,
    hydrants,
    notches,
    bocca,
    queueCapacity: ((data.queue as Data | undefined)?.capacity as number | undefined) ?? 10_000,
    persistQueues: ((data.queue as Data | undefined)?.persist as boolean | undefined) ?? true,
  };
}

/** Backend options with defaults filled in and file paths made absolute. */
function boccaOptions(b: Data, name: string, dir: string): Record<string, unknown> {
  const table = (b.table as string | undefined) ?? name.replace(/-/g, '_');
  switch (b.backend) {
    case 'file':
      return { path: path.resolve(dir, b.path as string) };
    case 'sqlite':
      return { path: path.resolve(dir, (b.path as string | undefined) ?? `${name}.sqlite`), table };
    case 'postgres':
    case 'mysql':
      return { url: b.url, table };
    case 'redis':
      return {
        url: (b.url as string | undefined) ?? 'redis://127.0.0.1:6379',
        key: (b.key as string | undefined) ?? `rezina:${name}`,
        type: (b.type as string | undefined) ?? 'list',
      };
    case 'module':
      return {
        module: path.resolve(dir, b.module as string),
        moduleAsWritten: b.module,
        export: (b.export as string | undefined) ?? 'default',
      };
    default:
      return {};
  }
}

function isObject(v: unknown): v is Data {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
