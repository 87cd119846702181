/**
 * Choosing and preparing the tfjs backend that trains diffs.
 *
 * `wasm` (the default) is tfjs-backend-wasm with our kernel fixes (src/engine/kernels): XNNPACK for
 * every matmul of the backward pass and the conv gradients the package lacks. `cpu` is tfjs' plain
 * JavaScript backend. `tensorflow` is tfjs-node, for build servers where it can be installed.
 * `native` is `wasm` with convolutions and matmuls on the system's OpenBLAS (an optional addon,
 * src/engine/kernels/native); `auto` is `native` when its addon loads, else `wasm`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { registerWasmKernelFixes, stockWasmKernels } from './kernels/index.ts';
import { describeNativeBlas, NATIVE, nativeAddonStatus, registerNativeBackend, setNativeThreads } from './kernels/native/index.ts';
import { MissingDependencyError, UsageError } from '../core/errors.ts';

/** Backends {@link initBackend} can prepare. */
export type TrainBackendName = 'wasm' | 'native' | 'auto' | 'cpu' | 'tensorflow';

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /**
   * XNNPACK threads for `wasm`. Only the threaded wasm build honours it, and tfjs-backend-wasm
   * never starts that build under Node (its workers need browser Blob URLs), so in Node the wasm
   * backend computes on one thread whatever is asked; values above 1 are rejected there rather
   * than silently ignored. Use the second core by running a second training process.
   * For `native`: the native kernels' threads, the addon's own (default: every core).
   */
  threads?: number;
}

/**
 * Name of the side-by-side stock wasm backend (see {@link initStockWasmBackend}). Never chosen
 * automatically: it has the lowest priority.
 */
export const STOCK_WASM_BACKEND = 'wasm-stock';

const requireHere = createRequire(import.meta.url);

type WasmPackage = typeof import('@tensorflow/tfjs-backend-wasm');

let wasmPackage: Promise<WasmPackage> | null = null;

/** The folder holding the .wasm binaries shipped in the installed tfjs-backend-wasm. */
export function wasmBinaryDir(): string {
  return path.dirname(requireHere.resolve('@tensorflow/tfjs-backend-wasm'));
}

/**
 * Import tfjs-backend-wasm once (which registers the `wasm` backend and its stock kernels) and
 * point it at its own .wasm files by absolute path, so it works from any working directory and
 * never fetches.
 */
function loadWasmPackage(): Promise<WasmPackage> {
  wasmPackage ??= import('@tensorflow/tfjs-backend-wasm').then((pkg) => {
    pkg.setWasmPaths(wasmBinaryDir() + path.sep);
    return pkg;
  });
  return wasmPackage;
}

function isModuleNotFound(err: unknown, specifier: string): boolean {
  const e = err as { code?: string; message?: string } | null;
  return (
    e !== null &&
    (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND') &&
    typeof e.message === 'string' &&
    e.message.includes(specifier)
  );
}

async function setBackendOrThrow(name: string): Promise<string> {
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tfjs could not initialize the "${name}" backend`);
  await tf.ready();
  return tf.getBackend();
}

/** The active backend's name as the trainers report it: on `native`, with OpenBLAS's kernels and threads. */
export function describeBackend(name: string = tf.getBackend()): string {
  return name === NATIVE ? `${name}: ${describeNativeBlas()}` : name;
}

/**
 * Make tfjs ready to train on `name` and make it the active backend.
 *
 * - `wasm`: loads tfjs-backend-wasm with its binaries from node_modules (no network), registers our
 *   kernel fixes for `wasm` and activates it. Safe to call any number of times, from any working
 *   directory; every call re-activates `wasm`.
 * - `native`: `wasm` plus OpenBLAS for convolutions and matmuls, on its own wasm heap; throws a
 *   MissingDependencyError saying how to build it when its addon does not load.
 * - `auto`: `native` when its addon loads, else `wasm`.
 * - `cpu`: the stock JavaScript backend.
 * - `tensorflow`: imports `@tensorflow/tfjs-node` (which registers the native backend); throws a
 *   clear Error when it is not installed.
 *
 * @returns the active backend name after the switch (`tf.getBackend()`).
 */
export async function initBackend(name: TrainBackendName = 'wasm', options: InitBackendOptions = {}): Promise<string> {
  switch (name) {
    case 'wasm': {
      const pkg = await loadWasmPackage();
      if (options.threads !== undefined) {
        if (!Number.isInteger(options.threads) || options.threads < 1) {
          throw new UsageError(`threads must be a positive integer, got ${options.threads}`);
        }
        if (tf.env().getBool('IS_NODE') && options.threads > 1) {
          throw new UsageError(
            'the wasm backend runs on one thread under Node (tfjs-backend-wasm does not start its threaded build ' +
              'there); run several trainings in parallel to use more cores',
          );
        }
        pkg.setThreadsCount(options.threads);
      }
      registerWasmKernelFixes();
      // setBackend also (re)runs kernel setup, which binds kernels registered after a first init.
      return setBackendOrThrow('wasm');
    }
    case 'native': {
      const pkg = await loadWasmPackage();
      registerWasmKernelFixes();
      registerNativeBackend(async () => new pkg.BackendWasm((await instantiateSeparateWasmModule()) as never));
      setNativeThreads(options.threads);
      return setBackendOrThrow(NATIVE);
    }
    case 'auto':
      return initBackend(nativeAddonStatus().available ? 'native' : 'wasm', options);
    case 'cpu':
      return setBackendOrThrow('cpu');
    case 'tensorflow': {
      const specifier = '@tensorflow/tfjs-node';
      try {
        await import(specifier);
      } catch (err) {
        if (isModuleNotFound(err, specifier)) {
          throw new MissingDependencyError(
            'the "tensorflow" backend needs @tensorflow/tfjs-node, which is not installed: run `npm i @tensorflow/tfjs-node` ' +
              '(its install downloads a native TensorFlow library, so it needs internet access), or use the wasm backend (--backend wasm)',
            { package: specifier, install: 'npm i @tensorflow/tfjs-node' },
          );
        }
        throw err;
      }
      return setBackendOrThrow('tensorflow');
    }
    default:
      throw new UsageError(`unknown backend "${String(name)}" (expected auto, wasm, native, cpu or tensorflow)`);
  }
}

interface EmscriptenModuleLike {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  tfjs?: unknown;
}

type WasmModuleFactory = (config: {
  wasmBinary: Uint8Array;
  locateFile: (file: string) => string;
}) => Promise<EmscriptenModuleLike>;

/**
 * A second, independent instance of the wasm module (own heap, own C++ tensor table), wired the
 * way tfjs-backend-wasm's own `init()` wires the first one.
 */
async function instantiateSeparateWasmModule(): Promise<EmscriptenModuleLike> {
  const factory = requireHere('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js') as WasmModuleFactory;
  const dir = wasmBinaryDir();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const binary = readFileSync(path.join(dir, simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm'));
  const mod = await factory({ wasmBinary: binary, locateFile: (file) => path.join(dir, file) });
  mod.tfjs = {
    init: mod.cwrap('init', null, []),
    initWithThreadsCount: mod.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: mod.cwrap('get_threads_count', 'number', []),
    registerTensor: mod.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: mod.cwrap('dispose_data', null, ['number']),
    dispose: mod.cwrap('dispose', null, []),
  };
  return mod;
}

/**
 * Register (once) and activate `wasm-stock`: tfjs-backend-wasm exactly as shipped, for measuring
 * our engine against it in one process.
 *
 * Why a second backend name and a second module: kernel registrations are global per backend name,
 * so `wasm` cannot be fixed and stock at once; and two backends must not share one wasm module,
 * because each numbers its tensors from 1 in the module's single C++ tensor table. So `wasm-stock`
 * gets its own module instance and copies of the stock kernel configs (captured before our fixes
 * replace them under `wasm`). The stock kernels keep their cwrap bindings in module-level
 * variables, shared by both names; that is safe because tfjs re-runs every kernel's setup on each
 * `tf.setBackend`, rebinding them to the module of the backend being activated, and kernels only
 * run on the active backend. Tensors created under one backend are moved on first use by the other.
 *
 * @returns `'wasm-stock'`, now the active backend.
 */
export async function initStockWasmBackend(): Promise<string> {
  const pkg = await loadWasmPackage();
  const stock = stockWasmKernels();
  if (tf.findBackendFactory(STOCK_WASM_BACKEND) == null) {
    tf.registerBackend(
      STOCK_WASM_BACKEND,
      async () => new pkg.BackendWasm((await instantiateSeparateWasmModule()) as never),
      -1,
    );
    for (const k of stock) tf.registerKernel({ ...k, backendName: STOCK_WASM_BACKEND });
  }
  return setBackendOrThrow(STOCK_WASM_BACKEND);
}
