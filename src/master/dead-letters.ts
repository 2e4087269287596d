import fs from 'node:fs';
import path from 'node:path';

export interface DeadLetter {
  id: string;
  time: string;
  typology: string;
  version: number;
  stage: string;
  run: number;
  error: string;
  at?: string;
  attempts: number;
  item: unknown;
}

/**
 * Items that failed after their retries, one JSON line each in
 * `<stateDir>/deadletters.jsonl`, so they survive restarts and can be
 * listed and replayed.
 */
export class DeadLetterStore {
  private readonly file: string;
  private seq = 0;

  constructor(stateDir: string) {
    fs.mkdirSync(stateDir, { recursive: true });
    this.file = path.join(stateDir, 'deadletters.jsonl');
  }

  add(letters: Omit<DeadLetter, 'id' | 'time'>[]): void {
    if (letters.length === 0) return;
    const now = new Date().toISOString();
    const lines = letters.map((l) => JSON.stringify({ id: `${Date.now().toString(36)}-${(++this.seq).toString(36)}`, time: now, ...l }, replacer));
    fs.appendFileSync(this.file, lines.join('\n') + '\n');
  }

  /** Forget these letters (they were replayed). */
  remove(ids: ReadonlySet<string>): void {
    const keep = this.list().filter((d) => !ids.has(d.id));
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, keep.map((d) => JSON.stringify(d, replacer)).join('\n') + (keep.length ? '\n' : ''));
    fs.renameSync(tmp, this.file);
  }

  list(typology?: string): DeadLetter[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch {
      return [];
    }
    const out: DeadLetter[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const d = JSON.parse(line) as DeadLetter;
        if (!typology || d.typology === typology) out.push(d);
      } catch {
        // A torn last line from a crash; skip it.
      }
    }
    return out;
  }
}

function replacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
