#!/usr/bin/env node
/**
 * Summarize V8 .cpuprofile files (from `node --cpu-prof`, or
 * `node bench/run.mjs --cpu-prof DIR`): per file, the busy share of the
 * profile and the functions with the most self time.
 *
 *   node bench/tools/cpuprofile-top.mjs DIR_OR_FILES... [--top 25]
 */
import fs from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
let top = 25;
const inputs = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--top') top = Number(argv[++i]);
  else inputs.push(argv[i]);
}
const files = inputs.flatMap((p) =>
  fs.statSync(p).isDirectory() ? fs.readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(p, f)) : [p],
);

for (const file of files) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = prof.timeDeltas;
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
  }
  const totalUs = prof.endTime - prof.startTime;
  const agg = new Map();
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const where = cf.url ? `${cf.url.replace(/^file:\/\//, '').replace(/.*\/(node_modules|dist|bench|pipelines)\//, '$1/')}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`;
    agg.set(key, (agg.get(key) ?? 0) + us);
  }
  const busy = totalUs - idle;
  console.log(`\n${path.basename(file)}: ${(totalUs / 1e6).toFixed(2)} s profiled, ${(busy / 1e6).toFixed(2)} s busy (${((100 * busy) / totalUs).toFixed(0)}%)`);
  for (const [key, us] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${(us / 1000).toFixed(0).padStart(7)} ms  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${key}`);
  }
}
