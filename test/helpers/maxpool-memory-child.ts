/**
 * A process that runs the native max pool's gradient with more channels than its stack holds (the
 * heap path) after capping its own address space just above what it holds, so the kernel's
 * scratch cannot be allocated. It prints one JSON line:
 * { threw: the error's name or null, message, dxUntouched, dxRight }.
 *
 *   node --conditions=neural-diff-source --import tsx test/helpers/maxpool-memory-child.ts CHANNELS THREADS
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadNativeAddon } from '../../src/train/kernels/native/loader.ts';

const C = Number(process.argv[2]);
const threads = Number(process.argv[3]);
const addon = loadNativeAddon();
addon.setThreads(threads);
// One item, one pixel, a 1x1 window: dx = dy wherever x is not NaN or -Infinity.
const x = new Float32Array(C).fill(1);
const dy = new Float32Array(C).fill(3);
const dx = new Float32Array(C).fill(7);
const geometry = Int32Array.of(1, 1, 1, C, 1, 1, 1, 1, 1, 1, 0, 0);
const vmKb = Number(/VmSize:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
// A quarter of the scratch's size left (C floats and C taps): room for V8, none for the scratch.
const cap = vmKb * 1024 + C * 2;
execFileSync('prlimit', ['--pid', String(process.pid), `--as=${cap}:${cap}`]);
let threw: string | null = null;
let message = '';
try {
  addon.maxPoolGrad(x, dy, dx, geometry, null);
} catch (e) {
  threw = (e as Error).name;
  message = (e as Error).message;
}
process.stdout.write(`${JSON.stringify({ threw, message, dxUntouched: dx.every((v) => v === 7), dxRight: dx.every((v) => v === 3) })}\n`);
