/** A workspace module compiled for shipping to stage processes. */
export interface CompiledModule {
  /** Absolute path of the source file (.ts, .mts, .js, .mjs). */
  readonly source: string;
  /** sha256 hex of `code`; workers cache modules by it. */
  readonly hash: string;
  /** One self-contained ESM file: local imports bundled, npm packages imported by absolute file URL. */
  readonly code: string;
  /** Absolute paths of the local source files bundled into `code` (the module itself first; no node_modules). */
  readonly inputs: readonly string[];
  /** Names the module exports (`default` included when present). */
  readonly exports: readonly string[];
}
