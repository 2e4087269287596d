/** What the benchmarks ran on, for the results file and BENCHMARKS.md. */
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';

function read(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function git(args, cwd) {
  try {
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function machineInfo(root) {
  const cpuinfo = read('/proc/cpuinfo');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const memKb = Number(/^MemTotal:\s*(\d+)/m.exec(read('/proc/meminfo'))?.[1]);
  const limits = read('/proc/self/limits');
  const openFiles = /^Max open files\s+(\d+)\s+(\d+)/m.exec(limits);
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: model,
    memoryGiB: Number.isFinite(memKb) ? Math.round((memKb / 1024 / 1024) * 10) / 10 : Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: os.release(),
    openFilesLimit: openFiles ? { soft: Number(openFiles[1]), hard: Number(openFiles[2]) } : undefined,
    ephemeralPorts: read('/proc/sys/net/ipv4/ip_local_port_range').trim().replace(/\s+/, '-') || undefined,
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    gitCommit: git(['rev-parse', '--short', 'HEAD'], root),
    gitDirty: git(['status', '--porcelain', '--', 'src', 'pipelines'], root) ? true : false,
  };
}

/** The 1-minute load average, rounded. */
export function load1() {
  return Math.round(os.loadavg()[0] * 100) / 100;
}

function cpuTimes() {
  const line = read('/proc/stat').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 5) return undefined;
  const idle = f[3] + (f[4] ?? 0);
  return { idle, total: f.reduce((a, b) => a + b, 0) };
}

/**
 * The share of the machine's CPU that was idle over the next `ms` (0–1), or
 * undefined where /proc/stat is missing. Taken between measurements, when
 * none of the bench's own processes run, it shows what the machine's other
 * users leave: 1 is a quiet machine, 0.5 means one of two cores was taken.
 */
export async function idleShare(ms = 500) {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  if (!a || !b || b.total === a.total) return undefined;
  return Math.round(((b.idle - a.idle) / (b.total - a.total)) * 100) / 100;
}
