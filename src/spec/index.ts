/** The spec layer: YAML typology file → validated, normalized, frozen `Typology`. */
export { loadTypologyFile, parseStartTime, formatPath, BACKENDS, type LoadOptions, type LoadResult } from './load.js';
export { compileModule, type CompileResult } from './compile.js';
export { parseDuration, formatDuration } from './duration.js';
export type * from './types.js';
export type { CompiledModule } from './compile-types.js';
