#!/usr/bin/env node
// Where a test run's CPU goes, by Node process: which test files, and which of the processes
// they start (the CLI, benchmarks' quick runs, workers, node-llama-cpp's binary checks), cost the
// most. Two uses:
//
//   NDIFF_PROCESS_CPU_LOG=/tmp/cpu.jsonl NODE_OPTIONS="--require $PWD/scripts/process-cpu.cjs" npm test
//       every Node process of the run appends one line at its exit: its pid, its parent's, its
//       first arguments, its CPU seconds (user + system, all its threads) and its wall seconds
//   node scripts/process-cpu.cjs /tmp/cpu.jsonl [N]
//       the totals, each test file with the processes under it, and the N costliest commands
//
// Processes other than Node (Chromium, Python, esbuild) are not counted; a process killed by a
// signal writes no line, and one started through `sh -c` (npm scripts) is not attributed to a
// test file (it is listed by its command).
'use strict';
const fs = require('node:fs');

if (require.main !== module) {
  const log = process.env.NDIFF_PROCESS_CPU_LOG;
  if (log) {
    const started = Date.now();
    process.on('exit', () => {
      try {
        const u = process.cpuUsage();
        const line = { pid: process.pid, ppid: process.ppid, argv: process.argv.slice(1, 6), cpu: (u.user + u.system) / 1e6, wall: (Date.now() - started) / 1000 };
        fs.appendFileSync(log, JSON.stringify(line) + '\n');
      } catch {
        // measuring never fails the process it measures
      }
    });
  }
} else {
  const [file, top = '30'] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node scripts/process-cpu.cjs LOG.jsonl [N]   (see the comment at the top for how to write LOG)');
    process.exit(2);
  }
  const rows = fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const byPid = new Map(rows.map((r) => [r.pid, r]));
  const testFile = (r) => r.argv.find((a) => /\.test\.[cm]?[jt]s$/.test(a));
  const short = (s) => s.replace(process.cwd() + '/', '').replace(/\/tmp\/\S*/g, 'TMP');
  const sum = (xs) => xs.reduce((a, r) => a + r.cpu, 0);
  const files = rows.filter(testFile);
  console.log(`${rows.length} Node processes, ${sum(rows).toFixed(0)} s of CPU; ${files.length} test-file processes ${sum(files).toFixed(0)} s, the processes they started ${(sum(rows) - sum(files)).toFixed(0)} s`);
  // Each process charged to the test file above it (through its parents that wrote a line).
  const charged = new Map();
  for (const r of rows) {
    let p = r;
    let hops = 0;
    while (p && !testFile(p) && hops++ < 32) p = byPid.get(p.ppid);
    const key = p && testFile(p) ? short(testFile(p)) : '(not under a test file: started through sh, or the runner)';
    const e = charged.get(key) ?? { cpu: 0, own: 0, n: 0 };
    e.cpu += r.cpu;
    e.n += 1;
    if (r === p) e.own = r.cpu;
    charged.set(key, e);
  }
  console.log(`\nCPU s with what they started | the file's own process | processes | test file`);
  for (const [k, e] of [...charged].sort((a, b) => b[1].cpu - a[1].cpu).slice(0, Number(top))) {
    console.log(`${e.cpu.toFixed(0).padStart(6)} | ${e.own.toFixed(0).padStart(6)} | ${String(e.n).padStart(4)} | ${k}`);
  }
  const commands = new Map();
  for (const r of rows) {
    if (testFile(r)) continue;
    const key = short(r.argv.slice(0, 2).join(' ')).slice(0, 100) || '(node -e or --input-type)';
    const e = commands.get(key) ?? { cpu: 0, n: 0 };
    e.cpu += r.cpu;
    e.n += 1;
    commands.set(key, e);
  }
  console.log(`\nCPU s | processes | command (started by tests)`);
  for (const [k, e] of [...commands].sort((a, b) => b[1].cpu - a[1].cpu).slice(0, Number(top))) console.log(`${e.cpu.toFixed(0).padStart(6)} | ${String(e.n).padStart(4)} | ${k}`);
  const floor = [...files].sort((a, b) => a.cpu - b.cpu);
  if (floor.length) console.log(`\ntest-file processes: median ${floor[Math.floor(floor.length / 2)].cpu.toFixed(2)} s of CPU, the cheapest ${floor[0].cpu.toFixed(2)} s (its loader and the test runner)`);
}
