/**
 * Run a `.tflite` file with Google's LiteRT.js (`@litertjs/core`, a devDependency: benchmarks and
 * tests, never the package) in Node, on
 * the CPU (XNNPACK in WebAssembly), as an app runs it. LiteRT.js is written for browsers and
 * workers: its loader runs the Emscripten glue with `importScripts` when that exists, then calls
 * `self.ModuleFactory`. Here `importScripts` evaluates the glue as CommonJS (it sits in a
 * `"type": "module"` package, so `require` would load it as ESM and get nothing); the glue
 * itself reads its `.wasm` with node:fs. The SIMD128 ("compat") build is named explicitly: the
 * relaxed-SIMD build LiteRT.js would pick on engines that have it rounds differently (~1e-5).
 * `loadLiteRt` runs once per process, and this sets `self`, `importScripts` and `Module` on
 * globalThis: use it from its own process (a test file of its own, a benchmark).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

interface LiteRtTensor {
  toTypedArray(): ArrayLike<number>;
  delete(): void;
  type: { layout: { dimensions: ArrayLike<number> } };
}
interface LiteRtModel {
  getInputDetails(): { name: string; dtype: string; shape: ArrayLike<number> }[];
  getOutputDetails(): { name: string }[];
  run(inputs: LiteRtTensor[]): Promise<LiteRtTensor[]>;
  delete(): void;
}
interface LiteRtCore {
  loadLiteRt(path: string): Promise<void>;
  loadAndCompile(bytes: Uint8Array, options: { accelerator: 'wasm' }): Promise<LiteRtModel>;
  Tensor: new (data: Float32Array | Int32Array, shape: number[]) => LiteRtTensor;
}

let core: Promise<LiteRtCore> | undefined;

function init(): Promise<LiteRtCore> {
  core ??= (async () => {
    const dir = path.dirname(require.resolve('@litertjs/core/package.json'));
    const g = globalThis as Record<string, unknown>;
    g.self ??= globalThis;
    g.importScripts = (file: string) => {
      const filename = file.startsWith('file:') ? fileURLToPath(file) : file;
      const run = vm.compileFunction(readFileSync(filename, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename });
      const module = { exports: {} };
      run(module.exports, createRequire(filename), module, filename, path.dirname(filename));
      g.ModuleFactory = module.exports;
    };
    g.Module = { print: () => {}, printErr: () => {} };
    const mod = (await import(pathToFileURL(path.join(dir, 'dist', 'index.js')).href)) as LiteRtCore;
    // Environment.create() looks for a WebGPU device and warns when there is none: the CPU path needs none.
    const warn = console.warn;
    console.warn = (...a: unknown[]) => (String(a[0]).startsWith('Failed to create default WebGPU device') ? undefined : warn(...a));
    try {
      // LITERT_WASM_BUILD=relaxed: the relaxed-SIMD build (Node needs --experimental-wasm-relaxed-simd before 22), to compare the two.
      await mod.loadLiteRt(path.join(dir, 'wasm', process.env.LITERT_WASM_BUILD === 'relaxed' ? 'litert_wasm_internal.js' : 'litert_wasm_compat_internal.js'));
    } finally {
      console.warn = warn;
    }
    return mod;
  })();
  return core;
}

/** sin(i × 0.37) / 2: the input used when none is given. */
export function deterministicFill(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37) * 0.5;
  return a;
}

/** Compile `bytes` on LiteRT.js's CPU path, run it once on `inputs` (default: {@link deterministicFill}), and return its outputs. */
export async function runTflite(bytes: Uint8Array, inputs?: Float32Array[]): Promise<{ name: string; shape: number[]; data: Float32Array }[]> {
  const { loadAndCompile, Tensor } = await init();
  const model = await loadAndCompile(bytes, { accelerator: 'wasm' });
  const tensors: LiteRtTensor[] = [];
  let outs: LiteRtTensor[] = [];
  try {
    for (const [i, d] of model.getInputDetails().entries()) {
      const shape = Array.from(d.shape);
      const values = inputs?.[i] ?? deterministicFill(shape.reduce((a, b) => a * b, 1));
      tensors.push(new Tensor(d.dtype === 'int32' ? Int32Array.from(values, Math.round) : values, shape));
    }
    outs = await model.run(tensors);
    const names = model.getOutputDetails();
    return outs.map((t, i) => ({ name: names[i].name, shape: Array.from(t.type.layout.dimensions), data: Float32Array.from(t.toTypedArray()) }));
  } finally {
    for (const t of [...tensors, ...outs]) t.delete();
    model.delete();
  }
}
