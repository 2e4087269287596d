/**
 * The normalized, validated, frozen form of a typology file. Everything after
 * `spec/` works with these types and never re-checks them. Durations are in
 * milliseconds; every path is absolute.
 */

export type OverlapPolicy = 'allow' | 'skip' | 'queue';

export interface ScheduleSpec {
  /** Fixed period in ms, aligned to wall-clock multiples (or to startTime). */
  readonly intervalMs?: number;
  /** Cron expression, 5 fields (minute precision) or 6 fields (leading seconds). */
  readonly cron?: string;
  /** IANA time zone for cron and for a startTime written without an offset. Default: the master's local zone. */
  readonly timezone?: string;
  /** First run, as epoch ms. */
  readonly startTime?: number;
  /** What a tick does while the previous run is still in progress. Default `allow`. */
  readonly overlap: OverlapPolicy;
}

/** A function exported by a workspace module. */
export interface FunctionRef {
  /** Absolute path of the module source file. */
  readonly module: string;
  /** The module path as written in the YAML (relative to the YAML's directory). */
  readonly moduleAsWritten: string;
  /** Export name. */
  readonly function: string;
}

export interface HydrantSpec extends FunctionRef {
  /** Unique within the typology; defaults to the function name. */
  readonly name: string;
  /** Arguments the function is called with on every tick. Default []. */
  readonly args: readonly unknown[];
}

/** Common to everything that runs as stage processes (notches and the bocca). */
export interface StageScaling {
  /** OS processes, spread over workers. Default 1. */
  readonly processes: number;
  /** Items one process works on at once. Default 1. */
  readonly threads: number;
}

export interface NotchSpec extends FunctionRef, StageScaling {
  /** Unique within the typology; defaults to the function name. */
  readonly name: string;
  /** Per-call time limit in ms; undefined = no limit. */
  readonly timeoutMs?: number;
  /** Extra attempts after the first failure. Default 0. */
  readonly retries: number;
  /** Delay before the first retry in ms, doubled on each further retry. Default 1000. */
  readonly retryBackoffMs: number;
}

export type BoccaMode = 'stream' | 'batch';

export interface BoccaSpec extends StageScaling {
  /** Always `bocca`; the stage name used in logs, metrics and CLI output. */
  readonly name: string;
  /** stdout | file | sqlite | postgres | mysql | redis | module */
  readonly backend: string;
  readonly mode: BoccaMode;
  /** batch mode: write when this many items are waiting. Default 500. */
  readonly batchSize: number;
  /** batch mode: write a partial batch after this many ms. Default 200. */
  readonly lingerMs: number;
  /**
   * Backend options as written, with relative file paths (`path`, `module`)
   * resolved against the YAML's directory. Known keys: path, table, url, key,
   * type (redis: list|stream), module, export.
   */
  readonly options: Readonly<Record<string, unknown>>;
}

export interface Typology {
  readonly name: string;
  /** Absolute path of the YAML file. */
  readonly file: string;
  /** Directory of the YAML file; module paths are relative to it. */
  readonly dir: string;
  readonly description?: string;
  readonly schedule: ScheduleSpec;
  /** One or more; every tick calls each of them. */
  readonly hydrants: readonly HydrantSpec[];
  readonly notches: readonly NotchSpec[];
  readonly bocca: BoccaSpec;
  /** Bound of each queue between stages, in items. Default 10000. */
  readonly queueCapacity: number;
  /** Queued items are journaled in the state dir and survive a master restart. Default true. */
  readonly persistQueues: boolean;
}
