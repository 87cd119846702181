/**
 * Loading the native backend's addon (blas.c beside this file, built by `npm run build:native`
 * into build/Release/neural_diff_blas.node at the package's root) and its typed surface.
 *
 * The addon is optional: nothing imports it eagerly, a missing build is reported (never thrown)
 * by {@link nativeAddonStatus}, and {@link loadNativeAddon} throws a {@link MissingDependencyError}
 * saying how to get it. `NDIFF_NATIVE_ADDON` names another .node file, or `none` to act as if
 * the addon were not built (tests of the fallback use it).
 *
 * A file is checked before it is loaded ({@link addonFileProblem}): a regular file (not a FIFO,
 * a device or a folder, which would hang or be read without end), of a sane size, and on Linux
 * an ELF shared object whole (a build cut short kills the loading process with SIGBUS) that
 * exports blas.c's version symbol (another project's addon is refused without running it). After
 * loading, its `abi` export and functions are checked too. A file that fails is reported as
 * unavailable, so `ndiff train` falls back to wasm saying why.
 */
import { closeSync, constants as fsConstants, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MissingDependencyError, ModelFormatError } from '../../../core/errors.ts';
import { elfProblem } from './elf.ts';

/** What the addon exports (src/engine/kernels/native/blas.c). */
export interface NativeBlasAddon {
  /**
   * C_i = op(A_i) op(B_i) for i < batch, row-major; a stride of 0 broadcasts one operand; then
   * act(C + bias) per column when given (biasActivation's codes): one product's on each block of C
   * as it is finished, a batch's in one pass after.
   */
  sgemmBatched(
    transA: boolean,
    transB: boolean,
    batch: number,
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    aStride: number,
    b: Float32Array,
    bStride: number,
    c: Float32Array,
    bias?: Float32Array | null,
    activation?: 0 | 1 | 2,
  ): void;
  /**
   * y = conv2d(x, filter), NHWC; `geometry` as {@link GEOMETRY_FIELDS}; then act(y + bias) per
   * output channel when given (biasActivation's codes), on each block's rows as it is computed.
   */
  conv2dForward(x: Float32Array, filter: Float32Array, y: Float32Array, geometry: Int32Array, columnBudget: number, bias?: Float32Array | null, activation?: 0 | 1 | 2): void;
  /** dw = the filter gradient from x and dy. */
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, geometry: Int32Array, columnBudget: number): void;
  /** dx = the input gradient from dy and the filter. */
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, geometry: Int32Array, columnBudget: number): void;
  /** One Adam step (adam.c's operations, its bits): m, v in place, the new values into xo; s: 8 scalars (adam.ts AdamScalars). */
  adamStep(x: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, xo: Float32Array, s: Float32Array): void;
  /** y = the max pool of x (geometry as maxPoolGrad's; a window's first maximum from -Infinity, NaNs never win). */
  maxPool(x: Float32Array, y: Float32Array, geometry: Int32Array): void;
  /**
   * dx = the gradient of a max pool of x (NHWC; geometry B, H, W, C, OH, OW, KH, KW, strideH,
   * strideW, padTop, padLeft), times Relu's step(reluX) when reluX is given (maxpool.c).
   */
  maxPoolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, geometry: Int32Array, reluX: Float32Array | null): void;
  /** y = GELU(x) (elementwise.c; transformer.c's float32 operations, the wasm kernel's bits). */
  geluForward(x: Float32Array, y: Float32Array): void;
  /** dx = dy GELU'(x). */
  geluGrad(dy: Float32Array, x: Float32Array, dx: Float32Array): void;
  /** n = (x - mean) rstd per row of `width`, rstd = 1 / sqrt(var + eps). */
  layerNorm(x: Float32Array, n: Float32Array, rstd: Float32Array, width: number, eps: number): void;
  /** dx = rstd (dy - mean(dy) - n mean(dy n)) per row of `width`. */
  layerNormGrad(dy: Float32Array, n: Float32Array, rstd: Float32Array, dx: Float32Array, width: number): void;
  /** y = softmax(x) per row of `width` (softmax.ts's twin, bit for bit). */
  softmax(x: Float32Array, y: Float32Array, width: number): void;
  /** dx = dy y - (sum of dy y) y per row of `width`. */
  softmaxGrad(dy: Float32Array, y: Float32Array, dx: Float32Array, width: number): void;
  /** x as [outer, P, C], out [outer, C]: out[o, c] = the sum over p of x[o, p, c] in order of p (mean: then / P). */
  reduceSum(x: Float32Array, out: Float32Array, outer: number, mean: boolean): void;
  /** A fused chain's program (elementwise.ts): code 5 ints an instruction, kinds 0 full, 1 scalar, 2 channel per input. */
  elementwise(code: Int32Array, kinds: Int32Array, inputs: Float32Array[], immediates: Float32Array, registers: number, out: Float32Array, channels: number): void;
  /** Relu's (which 0), Relu6's (1) or ClipByValue's (2, between lo and hi) gradient: activation-grad.c's operations. */
  activationGrad(which: 0 | 1 | 2, dy: Float32Array, x: Float32Array, dx: Float32Array, lo: number, hi: number): void;
  /** out = a op b (op: elementwise.ts's OP code, add to sqdiff); `geometry` rank, then per output axis its size, a's stride, b's stride (0: broadcast). */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, geometry: Int32Array): void;
  /** A permutation of 4-byte elements, `geometry` rank then per output axis its size and input stride (transpose.ts's transposeGeometry). */
  transpose32(x: Float32Array | Int32Array, out: Float32Array | Int32Array, geometry: Int32Array): void;
  /** In place: y = act(y + bias) per row of bias.length; activation 0 linear, 1 relu, 2 relu6. */
  biasActivation(y: Float32Array, bias: Float32Array | null, activation: 0 | 1 | 2): void;
  /**
   * The kernels' threads: a pool of threads - 1 workers beside the caller, started once for this
   * addon instance (one per Node thread), each kernel cut into blocks from its shapes alone;
   * OpenBLAS stays on one thread (process-wide). `idleMicroseconds`: how long an idle thread keeps
   * watching for the next call (yielding its core) before it sleeps; 0 (the default) sleeps after a
   * few microseconds of spinning (pool.c says why; benchmarks compare the two).
   */
  setThreads(threads: number, idleMicroseconds?: number): void;
  /**
   * The OpenBLAS loaded and its threads; the pool's threads, and the calls its workers shared since
   * it started (more than one part on more than one thread) with their parts.
   */
  info(): { config: string; corename: string; threads: number; poolThreads: number; poolCalls: number; poolParts: number };
  /** The interface version ({@link NATIVE_ABI}). */
  readonly abi: number;
}

/** The addon interface this loader speaks (blas.c's NEURAL_DIFF_BLAS_ABI). */
export const NATIVE_ABI = 6;
/** The symbol blas.c exports to say it is this addon at {@link NATIVE_ABI}. */
export const NATIVE_ABI_SYMBOL = `neural_diff_blas_abi_${NATIVE_ABI}`;
/** The functions the addon must export. */
const ADDON_FUNCTIONS = [
  'sgemmBatched', 'conv2dForward', 'conv2dBackpropFilter', 'conv2dBackpropInput', 'biasActivation', 'adamStep', 'maxPool', 'maxPoolGrad', 'setThreads', 'info',
  'geluForward', 'geluGrad', 'layerNorm', 'layerNormGrad', 'softmax', 'softmaxGrad', 'reduceSum', 'elementwise', 'transpose32', 'binary', 'activationGrad',
] as const;
/** The largest addon file read (the build is about 30 KB; a debug build a few MB). */
export const MAX_ADDON_BYTES = 64 * 1024 * 1024;

/** Order of the Int32Array geometry the conv functions take (blas.c's enum). */
export const GEOMETRY_FIELDS = [
  'batch', 'inHeight', 'inWidth', 'inChannels', 'outHeight', 'outWidth', 'outChannels',
  'filterHeight', 'filterWidth', 'strideHeight', 'strideWidth', 'dilationHeight', 'dilationWidth', 'padTop', 'padLeft',
] as const;

const ADDON_FILE = path.join('build', 'Release', 'neural_diff_blas.node');

/**
 * How to get the native backend, for messages, where neural-diff runs from `root`: a clone (its
 * binding.gyp is there) builds the addon in place; an installed package carries no C sources and
 * looks for the addon under its own folder, so it is built in a clone and named by NDIFF_NATIVE_ADDON.
 */
export function nativeHowTo(root = packageRoot()): string {
  const install = 'install OpenBLAS (Debian/Ubuntu: `apt-get install libopenblas-dev`), then run `npm run build:native`';
  if (root !== undefined && existsSync(path.join(root, 'binding.gyp'))) return `${install} in this clone`;
  return `${install} in a clone of the neural-diff repository (the installed package has no C sources to build) and set NDIFF_NATIVE_ADDON=<clone>/${ADDON_FILE.split(path.sep).join('/')}`;
}

/** The package's root: the nearest folder above this file whose package.json is neural-diff's. */
function packageRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'neural-diff') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** How to get the native backend here, for messages ({@link nativeHowTo} of this package's folder). */
export const NATIVE_HOW_TO = nativeHowTo();

/** Where the addon is looked for (`NDIFF_NATIVE_ADDON`, else build/Release under the package root). */
export function nativeAddonPath(): string | undefined {
  const override = process.env.NDIFF_NATIVE_ADDON;
  if (override !== undefined && override !== '') return override === 'none' ? undefined : path.resolve(override);
  const root = packageRoot();
  return root === undefined ? undefined : path.join(root, ADDON_FILE);
}

/**
 * The OpenBLAS kernels to ask for on this CPU, or undefined to leave the choice to OpenBLAS.
 *
 * A `DYNAMIC_ARCH` OpenBLAS (Debian's) picks its kernels when it loads. Up to 0.3.24 it knew Intel
 * CPUs by family and model number and fell back to `Prescott` (SSE3, no FMA) on a model newer than
 * its table, whatever the CPU offers (OpenBLAS issue 4267, fixed in 0.3.25 by choosing on the CPU's
 * features). Debian 12 has 0.3.21: on a Xeon of family 6 model 207 its SGEMM ran at 10-25 GFLOP/s
 * a core, against 75-120 with the `SkylakeX` kernels, slower than the wasm backend. So on Intel
 * x86-64 the choice is made here as 0.3.25 makes it for an unknown model: AVX-512 (F, CD, BW, DQ,
 * VL) takes `SkylakeX` (the SGEMM every later AVX-512 core type of OpenBLAS uses), AVX2 with FMA
 * `Haswell`. Other vendors are left to OpenBLAS: it knows AMD's by family, so new models are found.
 *
 * @param cpuinfo the text of Linux's /proc/cpuinfo (its first processor is read)
 */
export function openBlasCoreFor(cpuinfo: string): { coreType: 'SkylakeX' | 'Haswell'; why: string } | undefined {
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? '';
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(first)?.[1]?.trim();
  if (field('vendor_id') !== 'GenuineIntel') return undefined;
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const has = (...names: string[]) => names.every((f) => flags.has(f));
  if (has('avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl')) return { coreType: 'SkylakeX', why: 'an Intel CPU with AVX-512' };
  if (has('avx2', 'fma')) return { coreType: 'Haswell', why: 'an Intel CPU with AVX2 and FMA' };
  return undefined;
}

/** How OpenBLAS's kernels were chosen in this process (set when the addon is first loaded). */
let coreChoice: string | undefined;

/**
 * Set `OPENBLAS_CORETYPE` from {@link openBlasCoreFor} before OpenBLAS loads, unless the user set it
 * (theirs always wins) or the CPU cannot be read (not Linux x86-64): OpenBLAS then chooses. Says
 * how the kernels were chosen. Child processes inherit the setting (a benchmark's PyTorch, say).
 */
export function chooseOpenBlasCore(): string {
  const own = process.env.OPENBLAS_CORETYPE;
  if (own !== undefined && own !== '') return `OPENBLAS_CORETYPE=${own} (set by the environment)`;
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'chosen by OpenBLAS';
  let cpuinfo: string;
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return 'chosen by OpenBLAS (/proc/cpuinfo unreadable)';
  }
  const core = openBlasCoreFor(cpuinfo);
  if (!core) return 'chosen by OpenBLAS';
  process.env.OPENBLAS_CORETYPE = core.coreType;
  return `${core.coreType} for ${core.why} (set OPENBLAS_CORETYPE to choose others)`;
}

/** How this process's OpenBLAS kernels were chosen, once the addon has been loaded. */
export function openBlasCoreChoice(): string | undefined {
  return coreChoice;
}

/**
 * What is wrong with `file` as this package's addon, or undefined when it may be loaded: it must
 * be a regular file (a FIFO would hang the loader, a device be read without end), hold at most
 * {@link MAX_ADDON_BYTES}, and on Linux be a whole ELF shared object exporting
 * {@link NATIVE_ABI_SYMBOL} (see elf.ts). Reads at most the file's size, opened without blocking.
 */
export function addonFileProblem(file: string): string | undefined {
  let kind: string | undefined;
  try {
    const st = statSync(file);
    kind = st.isFile() ? undefined : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isDirectory() ? 'a folder' : st.isSocket() ? 'a socket' : 'not a regular file';
  } catch (e) {
    return `it cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  }
  if (kind) return `it is ${kind}, not a regular file`;
  let fd: number;
  try {
    // O_NONBLOCK: if the path became a FIFO since the stat, opening it does not wait for a writer.
    fd = openSync(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (e) {
    return `it cannot be opened (${(e as NodeJS.ErrnoException).code ?? String(e)})`;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return 'it is not a regular file';
    if (st.size > MAX_ADDON_BYTES) return `it holds ${st.size} bytes, more than an addon's ${MAX_ADDON_BYTES}`;
    if (process.platform !== 'linux') return undefined;
    const bytes = new Uint8Array(st.size);
    let got = 0;
    while (got < bytes.length) {
      const n = readSync(fd, bytes, got, bytes.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return elfProblem(bytes.subarray(0, got), NATIVE_ABI_SYMBOL);
  } finally {
    closeSync(fd);
  }
}

/** What is wrong with a loaded module's exports as this addon, or undefined. */
function exportsProblem(exports: Record<string, unknown>): string | undefined {
  if (exports.abi !== NATIVE_ABI) return `its interface version is ${JSON.stringify(exports.abi)}, this neural-diff needs ${NATIVE_ABI}`;
  const missing = ADDON_FUNCTIONS.filter((f) => typeof exports[f] !== 'function');
  return missing.length ? `it does not export ${missing.join(', ')}` : undefined;
}

/**
 * The addon with every kernel's argument errors (blas.c throws RangeError or TypeError with a code
 * ND_NATIVE_*, e.g. sizes whose product overflows) turned into a typed {@link ModelFormatError}:
 * the sizes come from the model being trained.
 */
function typedErrors(raw: NativeBlasAddon): NativeBlasAddon {
  const wrapped: Record<string, unknown> = { abi: raw.abi };
  for (const name of ADDON_FUNCTIONS) {
    const f = raw[name] as (...args: unknown[]) => unknown;
    wrapped[name] = (...args: unknown[]) => {
      try {
        return f.apply(raw, args);
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (typeof code === 'string' && code.startsWith('ND_NATIVE')) {
          // Memory or threads the machine would not give are not the model's shapes: say what to free instead.
          const fix = code === 'ND_NATIVE_MEMORY' || code === 'ND_NATIVE_THREADS'
            ? 'The machine gave no more memory or threads: free memory, train on fewer threads (--threads), or train with --backend wasm'
            : 'The model\'s shapes are beyond what the kernels take: check the model, or train with --backend wasm';
          throw new ModelFormatError(`the native kernel ${name} refused its arguments: ${(e as Error).message}. ${fix}`, { kernel: name, native: code });
        }
        throw e;
      }
    };
  }
  return wrapped as unknown as NativeBlasAddon;
}

type Status = { available: true; addon: NativeBlasAddon; path: string } | { available: false; reason: string };

let status: Status | undefined;

/** Whether the addon loads here, and why not when it does not (loads it on first call). */
export function nativeAddonStatus(): Status {
  if (status) return status;
  const file = nativeAddonPath();
  if (file === undefined) {
    status = { available: false, reason: process.env.NDIFF_NATIVE_ADDON === 'none' ? 'disabled by NDIFF_NATIVE_ADDON=none' : 'the neural-diff package root was not found' };
    return status;
  }
  if (!existsSync(file)) {
    status = { available: false, reason: `the addon is not built (no ${file})` };
    return status;
  }
  // What to do about a refused file: rebuild ours, or stop pointing at another.
  const fix = process.env.NDIFF_NATIVE_ADDON ? 'point NDIFF_NATIVE_ADDON at a build of `npm run build:native`, or unset it' : 'run `npm run build:native` again';
  const problem = addonFileProblem(file);
  if (problem) {
    status = { available: false, reason: `the addon at ${file} is refused: ${problem}; ${fix}` };
    return status;
  }
  try {
    // OpenBLAS reads OPENBLAS_CORETYPE once, as the addon's dlopen loads it.
    coreChoice = chooseOpenBlasCore();
    // process.dlopen, not require: require reads a file not named *.node as JavaScript.
    const module = { exports: {} as Record<string, unknown> };
    process.dlopen(module, file, os.constants.dlopen.RTLD_NOW);
    const wrong = exportsProblem(module.exports);
    status = wrong
      ? { available: false, reason: `the addon at ${file} is refused: ${wrong}; ${fix}` }
      : { available: true, addon: typedErrors(module.exports as unknown as NativeBlasAddon), path: file };
  } catch (e) {
    status = { available: false, reason: `the addon at ${file} does not load: ${e instanceof Error ? e.message : String(e)}` };
  }
  return status;
}

/** The addon, or a {@link MissingDependencyError} saying why it is unavailable and how to get it. */
export function loadNativeAddon(): NativeBlasAddon {
  const s = nativeAddonStatus();
  if (s.available) return s.addon;
  throw new MissingDependencyError(`the "native" backend is unavailable: ${s.reason}. To get it, ${NATIVE_HOW_TO}; or use --backend wasm`, {
    package: 'libopenblas-dev',
    install: 'apt-get install libopenblas-dev && npm run build:native',
    reason: s.reason,
  });
}
