import fs from 'node:fs';
import { isMap, isSeq, parseDocument, type YAMLMap } from 'yaml';

/**
 * Change a stage's processes/threads in a typology file, keeping its comments
 * and layout, so `rezina scale` is an edit of the desired state like any
 * other (the master then reloads the file). Returns the new text.
 */
export function setStageScaling(text: string, stage: string, scaling: { processes?: number; threads?: number }): string {
  const doc = parseDocument(text);
  let target: YAMLMap | undefined;
  if (stage === 'bocca') {
    const b = doc.get('bocca');
    if (isMap(b)) target = b;
  } else {
    const notches = doc.get('notches');
    if (isSeq(notches)) {
      for (const n of notches.items) {
        if (!isMap(n)) continue;
        const name = n.get('name') ?? n.get('function');
        if (name === stage) target = n;
      }
    }
  }
  if (!target) throw Object.assign(new Error(`no notch or bocca named "${stage}"`), { code: 'E_NOT_FOUND' });
  if (scaling.processes !== undefined) target.set('processes', scaling.processes);
  if (scaling.threads !== undefined) target.set('threads', scaling.threads);
  return doc.toString();
}

/** Writes a file by temp-then-rename, so a watcher never sees half of it. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.rezina-${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}
