/**
 * A process that caps its own address space just above what it holds, then asks the native addon
 * for more than is left, and prints one JSON line saying what happened:
 *
 *   maxPoolGrad CHANNELS THREADS: the max pool's gradient with more channels than its stack holds
 *     (the heap path), so its running maxima cannot be allocated:
 *     { threw: the error's name or null, message, dxUntouched, dxRight }
 *   setThreads FROM TO: a pool of FROM threads asked for TO, whose thread stacks cannot be mapped:
 *     { threw, message, poolThreads: the pool's threads after }
 *
 *   node --jitless --conditions=neural-diff-source --import tsx test/helpers/native-memory-child.ts MODE A B
 *
 * `--jitless` leaves WebAssembly out of the process: a WebAssembly instance reserves gigabytes of
 * address space, so one made after the cap (tsx's module lexer, on Node 22 and 24, compiles its
 * wasm when the first CommonJS module loads and instantiates it later) fails the process itself.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadNativeAddon } from '../../src/engine/kernels/native/loader.ts';

const [mode, a, b] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const addon = loadNativeAddon();

/** Cap the address space at what the process maps now plus `room` bytes. */
function capAt(room: number): void {
  const vmKb = Number(/VmSize:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  const cap = vmKb * 1024 + room;
  execFileSync('prlimit', ['--pid', String(process.pid), `--as=${cap}:${cap}`]);
}

/** The error `run` throws, as { threw, message }. */
function attempt(run: () => void): { threw: string | null; message: string } {
  try {
    run();
    return { threw: null, message: '' };
  } catch (e) {
    return { threw: (e as Error).name, message: (e as Error).message };
  }
}

if (mode === 'maxPoolGrad') {
  const C = a;
  addon.setThreads(b);
  // One item, one pixel, a 1x1 window: dx = dy wherever x is not NaN or -Infinity.
  const x = new Float32Array(C).fill(1);
  const dy = new Float32Array(C).fill(3);
  const dx = new Float32Array(C).fill(7);
  const geometry = Int32Array.of(1, 1, 1, C, 1, 1, 1, 1, 1, 1, 0, 0);
  // A quarter of the scratch's size left (C floats and C taps): room for V8, none for the scratch.
  capAt(C * 2);
  const out = attempt(() => addon.maxPoolGrad(x, dy, dx, geometry, null));
  process.stdout.write(`${JSON.stringify({ ...out, dxUntouched: dx.every((v) => v === 7), dxRight: dx.every((v) => v === 3) })}\n`);
} else if (mode === 'setThreads') {
  addon.setThreads(a, 100);
  // A new thread's stack is the soft stack limit the process started with (glibc's default; the test
  // starts this child with 1 GiB). Leave a mebibyte less than one stack: no new thread fits, and
  // V8 and Node keep the rest for themselves (tens of mebibytes were too few on a busy runtime:
  // a background compile or a heap growing there failed before the pool's threads did).
  const stack = Number(/Max stack size\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]);
  capAt(Number.isFinite(stack) && stack >= 8 * 2 ** 20 ? stack - 2 ** 20 : 4 * 2 ** 20);
  const out = attempt(() => addon.setThreads(b));
  process.stdout.write(`${JSON.stringify({ ...out, poolThreads: addon.info().poolThreads })}\n`);
} else {
  throw new Error(`unknown mode ${mode}: maxPoolGrad or setThreads`);
}
