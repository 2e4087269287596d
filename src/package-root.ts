import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The rezina install directory (where package.json is), from src/ or dist/ alike. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the rezina package root');
    dir = up;
  }
  return dir;
}

/** A compiled file of rezina's own; stage processes always run from dist/. */
export function distFile(rel: string): string {
  return path.join(packageRoot(), 'dist', rel);
}
