/**
 * Child processes of the benchmarks, each started in its own process group
 * (`detached: true`) and remembered, so that everything a benchmark started —
 * the child and whatever it forked (a rezina worker's stage processes, a
 * cluster's workers) — is killed by process group, on success, on failure, on
 * a timeout, and when the bench itself is interrupted.
 */
import { fork, spawn } from 'node:child_process';

/** Live process groups (the leader's pid), by pid. */
const groups = new Map();

/** SIGKILL a process group, ignoring one that is already gone. */
export function killGroup(pid, signal = 'SIGKILL') {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * SIGTERM each group still alive, then SIGKILL what is left after `graceMs`.
 * Safe to call any number of times.
 */
export async function killAll(graceMs = 1500) {
  const pids = [...groups.keys()];
  if (pids.length === 0) return;
  for (const pid of pids) killGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && [...groups.keys()].some(groupAlive)) await sleep(50);
  for (const pid of groups.keys()) killGroup(pid, 'SIGKILL');
  groups.clear();
}

/** Whether any process of the group led by `pid` is alive. */
export function groupAlive(pid) {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function track(child, what) {
  if (child.pid === undefined) throw new Error(`cannot start ${what}`);
  groups.set(child.pid, what);
  child.once('exit', () => {
    // The leader is gone; stragglers of its group (orphaned children) die with it.
    killGroup(child.pid);
    groups.delete(child.pid);
  });
  return child;
}

/** `spawn` in a new process group; stdout and stderr are piped. */
export function spawnGroup(command, args, options = {}) {
  const child = spawn(command, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  return track(child, `${command} ${args.join(' ')}`);
}

/** `fork` (with an IPC channel) in a new process group. */
export function forkGroup(modulePath, args, options = {}) {
  const child = fork(modulePath, args, { ...options, detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return track(child, `${modulePath} ${args.join(' ')}`);
}

/** Collects a child's output; `text()` gives everything so far. */
export function capture(stream, maxChars = 4_000_000) {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (s) => {
    if (text.length < maxChars) text += s;
  });
  return { text: () => text };
}

/** Resolves with `{ code, signal }` when the child exits. */
export function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** The next IPC message from `child` that `match` accepts. */
export function message(child, match) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (!match(m)) return;
      cleanup();
      resolve(m);
    };
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`process ${child.pid} exited (${signal ?? `code ${code}`}) before sending the expected message`));
    };
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Rejects after `ms` with a message naming `what`; clears its timer when `promise` settles first. */
export function timeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Whatever happens to the bench, its children do not outlive it.
let hooked = false;
export function killAllOnExit() {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const pid of groups.keys()) killGroup(pid);
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}; stopping every process it started\n`);
      for (const pid of groups.keys()) killGroup(pid);
      process.exit(130);
    });
  }
}
