import fs from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';

/** Files whose change can change a typology. */
const RELEVANT = /\.(ya?ml|[cm]?[jt]s|json)$/i;
const TYPOLOGY = /\.ya?ml$/i;
/** Editors' swap, backup and temp files, hidden files and folders, dependencies, outputs. */
function ignoredPath(p: string): boolean {
  const base = path.basename(p);
  return (
    base.startsWith('.') ||
    base.endsWith('~') ||
    /\.(swp|swo|swx|tmp|bak|orig)$/i.test(base) ||
    /^#.*#$/.test(base) ||
    /^\d+$/.test(base) || // vim's write test file "4913"
    base === 'node_modules' ||
    base === 'results' ||
    base === 'dist'
  );
}

export interface WorkspaceOptions {
  /** Watch a directory: every *.yaml / *.yml in it (recursively) is a typology. */
  dir?: string;
  /** Or a fixed list of typology files (`rezina run FILE`). */
  files?: string[];
  /** Quiet time before a burst of saves becomes one reload. Default 150 ms. */
  debounceMs?: number;
}

/**
 * The desired state, as files. Lists the typology files and calls `onChange`
 * once per burst of relevant file events (saves, renames, deletes).
 */
export class Workspace {
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  readonly root: string;

  constructor(private readonly opts: WorkspaceOptions, private readonly onChange: () => void) {
    this.root = path.resolve(opts.dir ?? path.dirname(opts.files?.[0] ?? '.'));
  }

  typologyFiles(): string[] {
    if (this.opts.files) return this.opts.files.map((f) => path.resolve(f)).filter((f) => fs.existsSync(f));
    const out: string[] = [];
    const visit = (dir: string) => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = path.join(dir, e.name);
        if (ignoredPath(p)) continue;
        if (e.isDirectory()) visit(p);
        else if (e.isFile() && TYPOLOGY.test(e.name)) out.push(p);
      }
    };
    visit(this.root);
    return out.sort();
  }

  async start(): Promise<void> {
    this.watcher = watch(this.root, {
      ignoreInitial: true,
      ignored: (p, stats) => ignoredPath(p) || (stats?.isFile() === true && !RELEVANT.test(p)),
      // A file being written is applied once it stops changing, not half-written.
      awaitWriteFinish: { stabilityThreshold: 60, pollInterval: 20 },
      atomic: true,
    });
    this.watcher.on('all', (_event: string, p: unknown) => {
      if (!RELEVANT.test(String(p))) return;
      this.schedule();
    });
    await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
  }

  /** Coalesce a burst of events into one reload. */
  schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onChange();
    }, this.opts.debounceMs ?? 150);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
  }
}
