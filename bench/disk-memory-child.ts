/**
 * One measured job in a fresh process, for the disk-memory rows of bench/apply.ts: prints
 * `{"maxRssKiB": N}`, the process's peak resident memory: VmHWM from /proc/self/status on
 * Linux (`process.resourceUsage().maxRSS` is no good there: a child inherits its parent's peak
 * across fork and exec), else maxRSS.
 *
 *   node --import tsx bench/disk-memory-child.ts idle
 *   node --import tsx bench/disk-memory-child.ts load <model dir>
 *   node --import tsx bench/disk-memory-child.ts apply <model dir> <payload file>
 *
 * `idle` loads the same modules and does nothing, so a job's cost is its peak minus idle's.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { readModelTensors } from '../src/io/tfjs/index.ts';

const [mode, dir, payloadFile] = process.argv.slice(2);
let keep: unknown;
if (mode === 'load') {
  keep = await readModelTensors(dir);
} else if (mode === 'apply') {
  const res = await applyToModelDir(dir, new Uint8Array(await readFile(payloadFile)), { state: null });
  if (res.status !== 'applied') throw new Error(`expected the payload to apply, got ${res.status}`);
} else if (mode !== 'idle') {
  throw new Error(`unknown mode ${mode}: expected idle, load or apply`);
}
function peakKiB(): number {
  try {
    const m = /VmHWM:\s*(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS;
}
console.log(JSON.stringify({ maxRssKiB: peakKiB(), kept: keep !== undefined }));
