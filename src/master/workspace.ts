import fs from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';

/** Files whose change can change a typology. */
const RELEVANT = /\.(ya?ml|[cm]?[jt]s|json)$/i;
const TYPOLOGY = /\.ya?ml$/i;
/** A changed file must look the same this long apart before it is read. */
const STABLE_CHECK_MS = 40;
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
      atomic: true,
    });
    this.watcher.on('all', (_event: string, p: unknown) => {
      const file = String(p);
      if (!RELEVANT.test(file)) return;
      this.changed.add(file);
      this.schedule();
    });
    await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
  }

  private readonly changed = new Set<string>();

  /**
   * Coalesce a burst of events into one reload: every event restarts the
   * quiet period. When it ends, the changed files must also look the same
   * twice in a row (size, mtime), so a file still being written is not read
   * half-way.
   */
  schedule(delayMs = this.opts.debounceMs ?? 150): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const before = this.snapshot();
      setTimeout(() => {
        if (this.timer) return; // new events arrived meanwhile; their timer decides
        if (this.snapshot() !== before) return this.schedule();
        this.changed.clear();
        this.onChange();
      }, STABLE_CHECK_MS);
    }, delayMs);
  }

  private snapshot(): string {
    return [...this.changed]
      .map((f) => {
        try {
          const st = fs.statSync(f);
          return `${f}:${st.size}:${st.mtimeMs}`;
        } catch {
          return `${f}:gone`;
        }
      })
      .join('|');
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
  }
}
