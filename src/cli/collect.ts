import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, type Diagnostic } from '../errors.js';
import type { ApplyFile } from '../master/apply.js';
import { loadTypologyFile } from '../spec/load.js';

/** The typology files named by `-f FILE|DIR` (a directory: its *.yaml / *.yml, not recursive). */
export function typologyFilesOf(target: string): string[] {
  const abs = path.resolve(target);
  if (!fs.existsSync(abs)) throw new ConfigError(`${target}: no such file or directory`);
  if (fs.statSync(abs).isDirectory()) {
    return fs.readdirSync(abs).filter((f) => /\.ya?ml$/i.test(f) && !f.startsWith('.')).sort().map((f) => path.join(abs, f));
  }
  return [abs];
}

/**
 * Validates each typology file here, as `rezina validate` would, and packs it
 * with the local module files it needs. Invalid files stop the whole apply.
 */
export async function collectApplyFiles(files: string[]): Promise<ApplyFile[]> {
  const out: ApplyFile[] = [];
  const problems: Diagnostic[] = [];
  for (const file of files) {
    const result = await loadTypologyFile(file);
    if (!result.ok) {
      problems.push(...result.diagnostics);
      continue;
    }
    const dir = path.dirname(file);
    const needed = new Set<string>();
    for (const m of result.modules.values()) for (const input of m.inputs ?? [m.source]) needed.add(input);
    const rel = [...needed].map((f) => path.relative(dir, f));
    const outside = rel.filter((r) => r.startsWith('..') || path.isAbsolute(r));
    if (outside.length > 0) {
      problems.push({ file, line: 0, col: 0, path: '', code: 'E_APPLY_PATH', message: `modules outside the typology's directory cannot be applied: ${outside.join(', ')}` });
      continue;
    }
    out.push({
      name: path.relative(process.cwd(), file) || file,
      files: [path.basename(file), ...rel.sort()].map((p) => ({ path: p, content: fs.readFileSync(path.join(dir, p)).toString('base64') })),
    });
  }
  if (problems.length > 0) throw new ConfigError('invalid typology files; nothing was applied', problems);
  return out;
}
