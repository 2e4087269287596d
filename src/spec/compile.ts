/**
 * Workspace module → one self-contained ESM file (`CompiledModule`) that a
 * stage process can write anywhere on this machine and import.
 *
 * - Local (relative) imports are bundled by esbuild.
 * - Node builtins stay as they are.
 * - Bare npm specifiers stay external but are rewritten to the absolute
 *   `file://` URL of the file Node itself would load from the importing
 *   file's directory, so the bundle does not depend on where it is written.
 * - `import.meta.url` / `dirname` / `filename` keep meaning the source file,
 *   so `new URL('./cities.json', import.meta.url)` works from the bundle.
 * - The inline source map names sources by absolute `file://` URL, so stack
 *   traces (with source maps enabled in the stage process) point at the user's
 *   file:line.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import type { Diagnostic } from '../errors.js';
import type { CompiledModule } from './compile-types.js';

export type CompileResult = { ok: true; module: CompiledModule } | { ok: false; diagnostics: Diagnostic[] };

interface CacheEntry {
  /** Every file the bundle was built from, with what it looked like then. */
  readonly inputs: ReadonlyArray<{ file: string; mtimeMs: number; size: number }>;
  readonly module: CompiledModule;
}

// Keyed by entry path; valid while no input file changed (mtime and size).
const cache = new Map<string, CacheEntry>();

const BUILTINS = new Set(builtinModules);
const META_URL = '__rezina_import_meta_url';
const META_DIRNAME = '__rezina_import_meta_dirname';
const META_FILENAME = '__rezina_import_meta_filename';
const LOADERS: Readonly<Record<string, esbuild.Loader>> = {
  '.ts': 'ts',
  '.mts': 'ts',
  '.cts': 'ts',
  '.tsx': 'tsx',
  '.js': 'js',
  '.mjs': 'js',
  '.cjs': 'js',
  '.jsx': 'jsx',
};

/**
 * Compile the module at `absPath` (a .ts/.mts/.js/.mjs file). Problems — the
 * file missing, a syntax error, an import that does not resolve — come back as
 * diagnostics at the offending file:line:col (absolute paths), never thrown.
 */
export async function compileModule(absPath: string): Promise<CompileResult> {
  const entry = path.resolve(absPath);
  try {
    const s = await stat(entry);
    if (!s.isFile()) return fail(entry, 'E_MODULE_MISSING', `module "${entry}" is not a file`);
  } catch {
    return fail(entry, 'E_MODULE_MISSING', `module file "${entry}" does not exist`);
  }

  const cached = cache.get(entry);
  if (cached && (await unchanged(cached.inputs))) return { ok: true, module: cached.module };

  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      absWorkingDir: path.dirname(entry),
      // Never written (write: false); names the output so the metafile and map are keyed.
      outfile: path.join(path.dirname(entry), '__rezina_bundle.mjs'),
      bundle: true,
      write: false,
      metafile: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      sourcemap: 'inline',
      sourcesContent: true,
      keepNames: true,
      logLevel: 'silent',
      // Resolve like Node's ESM loader: no "module" condition, only "main".
      conditions: [],
      mainFields: ['main'],
      define: {
        'import.meta.url': META_URL,
        'import.meta.dirname': META_DIRNAME,
        'import.meta.filename': META_FILENAME,
      },
      plugins: [externalPackagesPlugin(), importMetaPlugin()],
    });
  } catch (err) {
    const failure = err as Partial<esbuild.BuildFailure>;
    if (Array.isArray(failure.errors) && failure.errors.length > 0) {
      return { ok: false, diagnostics: failure.errors.map((m) => messageToDiagnostic(m, entry)) };
    }
    return fail(entry, 'E_MODULE_COMPILE', `could not compile module: ${err instanceof Error ? err.message : String(err)}`);
  }

  const out = result.outputFiles.find((f) => f.path.endsWith('.mjs'));
  const meta = Object.values(result.metafile.outputs).find((o) => o.entryPoint !== undefined);
  if (!out || !meta) return fail(entry, 'E_MODULE_COMPILE', 'esbuild produced no output');

  const code = absoluteSourceMap(out.text, path.dirname(entry));
  // Local files only: npm packages are external, so never among the inputs.
  const inputFiles = Object.keys(result.metafile.inputs)
    .filter((p) => !/^[a-z][a-z0-9+.-]*:/i.test(p))
    .map((p) => path.resolve(path.dirname(entry), p));
  const ordered = [entry, ...inputFiles.filter((f) => f !== entry).sort()];
  const module: CompiledModule = Object.freeze({
    source: entry,
    hash: createHash('sha256').update(code).digest('hex'),
    code,
    inputs: Object.freeze(ordered),
    exports: Object.freeze([...meta.exports].sort()),
  });

  const inputs = await Promise.all(
    ordered.map(async (file) => {
      const s = await stat(file);
      return { file, mtimeMs: s.mtimeMs, size: s.size };
    }),
  ).catch(() => undefined);
  if (inputs) cache.set(entry, { inputs, module });
  return { ok: true, module };
}

async function unchanged(inputs: CacheEntry['inputs']): Promise<boolean> {
  try {
    for (const i of inputs) {
      const s = await stat(i.file);
      if (s.mtimeMs !== i.mtimeMs || s.size !== i.size) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function isBare(specifier: string): boolean {
  return !specifier.startsWith('.') && !path.isAbsolute(specifier) && !/^[a-z][a-z0-9+.-]*:/i.test(specifier);
}

/**
 * Keeps npm packages out of the bundle, pointing at the file Node would load.
 * Resolution is esbuild's own (it honours package.json `exports` with the
 * import/node/default conditions, like Node's ESM loader), asked again with a
 * marker so this hook does not see its own question.
 */
function externalPackagesPlugin(): esbuild.Plugin {
  return {
    name: 'rezina-external-packages',
    setup(build) {
      build.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, external: true }));
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === 'rezina-resolving' || !isBare(args.path)) return undefined;
        if (BUILTINS.has(args.path) || BUILTINS.has(args.path.split('/')[0]!)) {
          return { path: args.path, external: true };
        }
        const resolved = await build.resolve(args.path, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          importer: args.importer,
          pluginData: 'rezina-resolving',
        });
        if (resolved.errors.length > 0) {
          const pkg = args.path.startsWith('@') ? args.path.split('/').slice(0, 2).join('/') : args.path.split('/')[0]!;
          return {
            errors: [
              {
                text:
                  `Could not resolve "${args.path}" — is the package "${pkg}" installed?` +
                  ` (npm install ${pkg} in the workspace)`,
              },
            ],
          };
        }
        if (resolved.external) return { path: resolved.path, external: true };
        return { path: pathToFileURL(resolved.path).href, external: true };
      });
    },
  };
}

/** Gives each local file its own `import.meta.url` (see the `define` above). */
function importMetaPlugin(): esbuild.Plugin {
  return {
    name: 'rezina-import-meta',
    setup(build) {
      build.onLoad({ filter: /\.(m|c)?(j|t)sx?$/ }, async (args) => {
        if (args.namespace !== 'file') return undefined;
        const text = await readFile(args.path, 'utf8');
        const loader = LOADERS[path.extname(args.path)] ?? 'js';
        if (!text.includes('import.meta')) return { contents: text, loader };
        // Prepended on line 1 without a newline, so every line number stays the user's.
        const prelude =
          `const ${META_URL} = ${JSON.stringify(pathToFileURL(args.path).href)}, ` +
          `${META_DIRNAME} = ${JSON.stringify(path.dirname(args.path))}, ` +
          `${META_FILENAME} = ${JSON.stringify(args.path)};`;
        return { contents: shebangSafe(text, prelude), loader };
      });
    },
  };
}

function shebangSafe(text: string, prelude: string): string {
  if (!text.startsWith('#!')) return prelude + text;
  const nl = text.indexOf('\n');
  return nl < 0 ? text : text.slice(0, nl + 1) + prelude + text.slice(nl + 1);
}

const INLINE_MAP = /\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/;

/** esbuild writes map sources relative to the output; make them absolute file URLs. */
function absoluteSourceMap(code: string, outDir: string): string {
  const m = INLINE_MAP.exec(code);
  if (!m) return code;
  try {
    const map = JSON.parse(Buffer.from(m[1]!, 'base64').toString('utf8')) as { sources?: string[]; sourceRoot?: string };
    const absolute = (s: string) => (/^[a-z][a-z0-9+.-]*:/i.test(s) ? s : pathToFileURL(path.resolve(outDir, s)).href);
    map.sources = (map.sources ?? []).map(absolute);
    delete map.sourceRoot;
    const encoded = Buffer.from(JSON.stringify(map), 'utf8').toString('base64');
    return code.slice(0, m.index) + `//# sourceMappingURL=data:application/json;base64,${encoded}\n`;
  } catch {
    return code;
  }
}

function messageToDiagnostic(m: esbuild.Message, entry: string): Diagnostic {
  const loc = m.location;
  const file = loc?.file ? path.resolve(path.dirname(entry), loc.file) : entry;
  return {
    file,
    line: loc?.line ?? 0,
    // esbuild columns are 0-based; ours are 1-based.
    col: loc ? loc.column + 1 : 0,
    path: '',
    code: /Could not resolve/.test(m.text) ? 'E_MODULE_IMPORT' : 'E_MODULE_COMPILE',
    message: m.text,
  };
}

function fail(file: string, code: string, message: string): CompileResult {
  return { ok: false, diagnostics: [{ file, line: 0, col: 0, path: '', code, message }] };
}
