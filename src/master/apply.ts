import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** One typology file and the module files it needs, as `rezina apply` sends them. */
export interface ApplyFile {
  /** The YAML's name as the user gave it (for messages). */
  name: string;
  /** Paths relative to the YAML's directory; the first is the YAML itself. Content is base64. */
  files: Array<{ path: string; content: string }>;
}

export interface StagedTypology {
  name: string;
  stagedPath: string;
  /** Module files, relative to the staging dir. */
  companions: string[];
}

export interface Staged {
  dir: string;
  typologies: StagedTypology[];
  originalName(stagedFile: string): string;
  /** sha256 of a staged file's text. */
  contentHash(stagedFile: string): string | undefined;
  /** sha256 of a file on disk (the running version's source). */
  fileHash(file: string): string | undefined;
  cleanup(): void;
}

const sha = (buf: Buffer) => crypto.createHash('sha256').update(buf).digest('hex');

/** Writes the sent files into a fresh staging directory, refusing paths that would escape it. */
export async function stageApplyFiles(bundles: ApplyFile[], stagingRoot: string): Promise<Staged> {
  if (!Array.isArray(bundles) || bundles.length === 0) throw Object.assign(new Error('apply needs at least one typology file'), { code: 'E_USAGE' });
  fs.mkdirSync(stagingRoot, { recursive: true });
  const dir = fs.mkdtempSync(path.join(stagingRoot, 'apply-'));
  const names = new Map<string, string>();
  const typologies: StagedTypology[] = [];
  bundles.forEach((b, i) => {
    const base = path.join(dir, String(i));
    const written: string[] = [];
    for (const f of b.files) {
      const rel = path.normalize(f.path);
      if (path.isAbsolute(rel) || rel.startsWith('..')) {
        throw Object.assign(new Error(`${b.name}: "${f.path}" is outside the typology's directory; keep modules next to or below the YAML file`), { code: 'E_CONFIG' });
      }
      const target = path.join(base, rel);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, Buffer.from(f.content, 'base64'));
      names.set(target, path.join(path.dirname(b.name), rel));
      written.push(path.relative(dir, target));
    }
    const [yaml, ...companions] = written;
    typologies.push({ name: b.name, stagedPath: path.join(dir, yaml!), companions });
  });
  const hashFile = (file: string) => {
    try {
      return sha(fs.readFileSync(file));
    } catch {
      return undefined;
    }
  };
  return {
    dir,
    typologies,
    originalName: (f) => names.get(f) ?? f,
    contentHash: hashFile,
    fileHash: hashFile,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
