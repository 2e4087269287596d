import fs from 'node:fs';
import path from 'node:path';
import type { Typology } from '../spec/types.js';
import type { VersionRecord } from './master.js';

/** What the master remembers of a typology across restarts (its queued items live in the queue journal). */
export interface SavedTypology {
  typology: Typology;
  history: VersionRecord[];
  nextRun: number;
  stopped: boolean;
  /** Fire time of the last scheduled run; a once-only schedule that fired does not fire again after a restart. */
  lastFireTime?: number;
}

/** One JSON file per typology under `<stateDir>/typologies/`, replaced atomically. */
export class StateStore {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'typologies');
    fs.mkdirSync(this.dir, { recursive: true });
  }

  load(name: string): SavedTypology | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, `${name}.json`), 'utf8')) as SavedTypology;
    } catch {
      return undefined;
    }
  }

  save(name: string, data: SavedTypology): void {
    const file = path.join(this.dir, `${name}.json`);
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(data));
    fs.renameSync(tmp, file);
  }

  remove(name: string): void {
    fs.rmSync(path.join(this.dir, `${name}.json`), { force: true });
  }
}
