/**
 * The one place that listens for SIGINT/SIGTERM. The first signal asks for an
 * orderly stop; a second one forces the process out.
 */
export function onShutdownSignal(stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`\n${signal} again: exiting now\n`);
      process.exit(130);
    }
    stopping = true;
    void stop(signal).finally(() => {
      process.exitCode ??= 0;
    });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
