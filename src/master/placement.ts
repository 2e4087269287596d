/** What placement needs to know about a worker. */
export interface WorkerLoad {
  id: string;
  /** Sum of the threads of the stage processes placed on it. */
  threads: number;
  processes: number;
  /** When it joined (ms); older workers win ties, so placement is stable. */
  joinedAt: number;
}

/**
 * The least-loaded worker by threads, as the ancestor placed processes;
 * ties go to the worker with fewer processes, then the one that joined first.
 */
export function leastLoaded<W extends WorkerLoad>(workers: Iterable<W>): W | undefined {
  let best: W | undefined;
  for (const w of workers) {
    if (
      !best ||
      w.threads < best.threads ||
      (w.threads === best.threads && (w.processes < best.processes || (w.processes === best.processes && w.joinedAt < best.joinedAt)))
    ) {
      best = w;
    }
  }
  return best;
}
