/**
 * Training throughput of our wasm engine against stock tfjs-backend-wasm and stock cpu, side by
 * side in one process.
 *
 *   node --import tsx bench/train-engine.ts [--quick]
 *
 * Two models, trained with Adam on random data (throughput does not depend on the values):
 *   - mlp: 784-2000-1000-10 dense ReLU net, ~3.59M parameters;
 *   - cnn: keyword-spotting style CNN on 49x40x1 log-mel frames, three 3x3 conv + max-pool blocks
 *     (32, 64, 128 channels) and two dense layers, ~1.02M parameters.
 * Each engine gets fresh models built on its own backend. Step times are medians (the machine may
 * be shared; the load average is recorded). A second table times the individual kernels we replaced
 * against their stock wasm versions, on the shapes these two models produce. Prints both tables and
 * the speed ratios and writes bench/out/train-engine.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, initStockWasmBackend } from '../src/engine/backend.ts';

const quick = process.argv.includes('--quick');

interface Engine {
  key: 'ours' | 'stock-wasm' | 'stock-cpu';
  label: string;
  activate: () => Promise<string>;
}

const engines: Engine[] = [
  { key: 'ours', label: 'ours (wasm + fixes)', activate: () => initBackend('wasm') },
  { key: 'stock-wasm', label: 'stock wasm', activate: () => initStockWasmBackend() },
  { key: 'stock-cpu', label: 'stock cpu', activate: () => initBackend('cpu') },
];

interface ModelSpec {
  key: 'mlp' | 'cnn';
  label: string;
  inputShape: number[];
  classes: number;
  build: () => tf.Sequential;
  /** Batch size and timed steps per engine (cpu is far slower: fewer, smaller steps). */
  plan: Record<Engine['key'], { batch: number; steps: number }>;
}

function mlp(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [784], units: 2000, activation: 'relu' }),
      tf.layers.dense({ units: 1000, activation: 'relu' }),
      tf.layers.dense({ units: 10 }),
    ],
  });
}

function cnn(): tf.Sequential {
  const conv = (filters: number, extra: Record<string, unknown> = {}) =>
    tf.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu', ...extra });
  return tf.sequential({
    layers: [
      conv(32, { inputShape: [49, 40, 1] }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      conv(64),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      conv(128),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 240, activation: 'relu' }),
      tf.layers.dense({ units: 12 }),
    ],
  });
}

const models: ModelSpec[] = [
  {
    key: 'mlp',
    label: 'MLP 784-2000-1000-10',
    inputShape: [784],
    classes: 10,
    build: mlp,
    plan: quick
      ? { ours: { batch: 64, steps: 6 }, 'stock-wasm': { batch: 64, steps: 3 }, 'stock-cpu': { batch: 32, steps: 1 } }
      : { ours: { batch: 64, steps: 40 }, 'stock-wasm': { batch: 64, steps: 10 }, 'stock-cpu': { batch: 64, steps: 5 } },
  },
  {
    key: 'cnn',
    label: 'CNN 49x40x1 (3 conv+pool, 2 dense)',
    inputShape: [49, 40, 1],
    classes: 12,
    build: cnn,
    plan: quick
      ? { ours: { batch: 32, steps: 4 }, 'stock-wasm': { batch: 32, steps: 2 }, 'stock-cpu': { batch: 1, steps: 1 } }
      : { ours: { batch: 32, steps: 20 }, 'stock-wasm': { batch: 32, steps: 5 }, 'stock-cpu': { batch: 8, steps: 2 } },
  },
];

interface Result {
  model: ModelSpec['key'];
  modelLabel: string;
  params: number;
  engine: Engine['key'];
  engineLabel: string;
  backend: string;
  batch: number;
  steps: number;
  /** Median over the timed steps. */
  msPerStep: number | null;
  meanMsPerStep: number | null;
  samplesPerSec: number | null;
  firstLoss: number | null;
  lastLoss: number | null;
  error: string | null;
}

function randomBatch(spec: ModelSpec, batch: number, seed: number): { x: tf.Tensor; y: tf.Tensor } {
  return tf.tidy(() => {
    const x = tf.randomNormal([batch, ...spec.inputShape], 0, 1, 'float32', seed);
    const labels = tf.randomUniform([batch], 0, spec.classes, 'int32', seed + 1);
    return { x, y: tf.oneHot(labels, spec.classes).toFloat() };
  });
}

/** One Adam step; returns the loss (reading it forces the step to finish). */
function step(model: tf.Sequential, opt: tf.Optimizer, x: tf.Tensor, y: tf.Tensor): number {
  const loss = opt.minimize(
    () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar,
    true,
  );
  if (loss === null) throw new Error('optimizer returned no loss');
  const v = loss.dataSync()[0];
  loss.dispose();
  return v;
}

async function measure(spec: ModelSpec, engine: Engine): Promise<Result> {
  const backend = await engine.activate();
  const { batch, steps } = spec.plan[engine.key];
  const model = spec.build();
  const params = model.countParams();
  const opt = tf.train.adam(1e-3);
  const { x, y } = randomBatch(spec, batch, 7);
  const base = { model: spec.key, modelLabel: spec.label, params, engine: engine.key, engineLabel: engine.label, backend, batch };
  try {
    // The warm-up step creates the optimizer state and XNNPACK operators; it is not timed.
    const firstLoss = step(model, opt, x, y);
    let lastLoss = firstLoss;
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      lastLoss = step(model, opt, x, y);
      times.push(performance.now() - t0);
    }
    const ms = median(times);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    return { ...base, steps, msPerStep: ms, meanMsPerStep: mean, samplesPerSec: (batch * 1000) / ms, firstLoss, lastLoss, error: null };
  } catch (err) {
    const e = (err as Error).message;
    return { ...base, steps: 0, msPerStep: null, meanMsPerStep: null, samplesPerSec: null, firstLoss: null, lastLoss: null, error: e };
  } finally {
    x.dispose();
    y.dispose();
    opt.dispose();
    model.dispose();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

interface KernelCase {
  label: string;
  kernel: string;
  /** Builds the inputs on the active backend; `fresh` names inputs re-created before every call. */
  inputs: () => Record<string, tf.Tensor>;
  attrs: Record<string, unknown>;
  /** Inputs cloned before each call, as weights are new tensors every training step. */
  fresh?: string[];
}

const kernelCases: KernelCase[] = [
  {
    label: 'dense forward x·W, 64x2000 · 2000x1000',
    kernel: 'BatchMatMul',
    inputs: () => ({ a: tf.randomNormal([64, 2000]), b: tf.randomNormal([2000, 1000]) }),
    attrs: { transposeA: false, transposeB: false },
    fresh: ['b'],
  },
  {
    label: 'dense dx = dy·Wᵀ, 64x1000 · (2000x1000)ᵀ',
    kernel: 'BatchMatMul',
    inputs: () => ({ a: tf.randomNormal([64, 1000]), b: tf.randomNormal([2000, 1000]) }),
    attrs: { transposeA: false, transposeB: true },
    fresh: ['b'],
  },
  {
    label: 'dense dW = xᵀ·dy, (64x2000)ᵀ · 64x1000',
    kernel: 'BatchMatMul',
    inputs: () => ({ a: tf.randomNormal([64, 2000]), b: tf.randomNormal([64, 1000]) }),
    attrs: { transposeA: true, transposeB: false },
  },
  {
    label: 'conv dW, x 32x24x20x32, 3x3 -> 64, same',
    kernel: 'Conv2DBackpropFilter',
    inputs: () => ({ x: tf.randomNormal([32, 24, 20, 32]), dy: tf.randomNormal([32, 24, 20, 64]) }),
    attrs: { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 32, 64] },
  },
  {
    label: 'conv dx, dy 32x12x10x128, 3x3 64 -> 128, stride 1',
    kernel: 'Conv2DBackpropInput',
    inputs: () => ({ dy: tf.randomNormal([32, 12, 10, 128]), filter: tf.randomNormal([3, 3, 64, 128]) }),
    attrs: { strides: 1, pad: 'same', dataFormat: 'NHWC', inputShape: [32, 12, 10, 64] },
  },
  {
    label: 'conv dx, dy 32x12x10x64, 3x3 32 -> 64, stride 2',
    kernel: 'Conv2DBackpropInput',
    inputs: () => ({ dy: tf.randomNormal([32, 12, 10, 64]), filter: tf.randomNormal([3, 3, 32, 64]) }),
    attrs: { strides: 2, pad: 'same', dataFormat: 'NHWC', inputShape: [32, 24, 20, 32] },
  },
  {
    label: 'max-pool dx, 32x49x40x32, 2x2',
    kernel: 'MaxPoolGrad',
    inputs: () => {
      const input = tf.randomNormal([32, 49, 40, 32]);
      return { input, output: tf.maxPool(input as tf.Tensor4D, 2, 2, 'valid'), dy: tf.randomNormal([32, 24, 20, 32]) };
    },
    attrs: { filterSize: 2, strides: 2, pad: 'valid' },
  },
  {
    label: 'depthwise dW, 32x24x20x64, 3x3',
    kernel: 'DepthwiseConv2dNativeBackpropFilter',
    inputs: () => ({ x: tf.randomNormal([32, 24, 20, 64]), dy: tf.randomNormal([32, 24, 20, 64]) }),
    attrs: { strides: 1, dilations: 1, pad: 'same', filterShape: [3, 3, 64, 1] },
  },
  {
    label: 'gather grad: 3.6M positions into 65536 buckets',
    kernel: 'UnsortedSegmentSum',
    inputs: () => ({ x: tf.randomNormal([3_600_000]), segmentIds: tf.randomUniform([3_600_000], 0, 65536, 'int32') }),
    attrs: { numSegments: 65536 },
  },
];

interface KernelResult {
  label: string;
  kernel: string;
  engine: Engine['key'];
  /** Best of several calls (ms). */
  ms: number | null;
  error: string | null;
}

async function timeKernel(c: KernelCase, engine: Engine, reps: number): Promise<KernelResult> {
  await engine.activate();
  const inputs = c.inputs();
  const call = () => {
    const ins: Record<string, tf.Tensor> = { ...inputs };
    for (const name of c.fresh ?? []) ins[name] = tf.clone(inputs[name]);
    const t0 = performance.now();
    const out = tf.engine().runKernel(c.kernel, ins, c.attrs as tf.NamedAttrMap) as tf.Tensor;
    out.dataSync();
    const ms = performance.now() - t0;
    out.dispose();
    for (const name of c.fresh ?? []) ins[name].dispose();
    return ms;
  };
  try {
    call();
    let best = Infinity;
    for (let i = 0; i < reps; i++) best = Math.min(best, call());
    return { label: c.label, kernel: c.kernel, engine: engine.key, ms: best, error: null };
  } catch (err) {
    return { label: c.label, kernel: c.kernel, engine: engine.key, ms: null, error: (err as Error).message };
  } finally {
    tf.dispose(Object.values(inputs));
  }
}

function fmt(n: number | null, digits = 1): string {
  return n === null ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

const loadAtStart = os.loadavg();
const results: Result[] = [];
const t00 = performance.now();
for (const spec of models) {
  for (const engine of engines) {
    const r = await measure(spec, engine);
    results.push(r);
    const what = r.error === null ? `${fmt(r.samplesPerSec)} samples/s (${fmt(r.msPerStep)} ms/step)` : `cannot train: ${r.error}`;
    console.error(`[${((performance.now() - t00) / 1000).toFixed(1)} s] ${spec.key} / ${engine.label}: ${what}`);
  }
}

const kernelResults: KernelResult[] = [];
for (const c of kernelCases) {
  for (const engine of engines.filter((e) => e.key !== 'stock-cpu')) {
    kernelResults.push(await timeKernel(c, engine, quick ? 2 : 7));
  }
}

const ratios = models.map((spec) => {
  const get = (k: Engine['key']) => results.find((r) => r.model === spec.key && r.engine === k)?.samplesPerSec ?? null;
  const ours = get('ours');
  const cpu = get('stock-cpu');
  const wasm = get('stock-wasm');
  return {
    model: spec.key,
    oursVsStockCpu: ours !== null && cpu !== null ? ours / cpu : null,
    oursVsStockWasm: ours !== null && wasm !== null ? ours / wasm : null,
  };
});

const header = ['model', 'params', 'engine', 'batch', 'steps', 'ms/step', 'samples/s', 'loss first->last'];
const rows = results.map((r) => [
  r.model,
  `${(r.params / 1e6).toFixed(2)}M`,
  r.engineLabel,
  String(r.batch),
  String(r.steps),
  r.error === null ? fmt(r.msPerStep) : '-',
  r.error === null ? fmt(r.samplesPerSec, 2) : `cannot train: ${r.error}`,
  r.error === null ? `${r.firstLoss?.toFixed(3)} -> ${r.lastLoss?.toFixed(3)}` : '-',
]);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join(' | ');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const row of rows) console.log(line(row));
console.log();
for (const r of ratios) {
  const x = (v: number | null, what: string) => (v === null ? `n/a (${what} cannot train)` : `${v.toFixed(1)}x`);
  console.log(`${r.model}: ours vs stock cpu ${x(r.oursVsStockCpu, 'stock cpu')}, ours vs stock wasm ${x(r.oursVsStockWasm, 'stock wasm')}`);
}

console.log('\nkernels we replaced, best of several calls (ms):');
const kHeader = ['kernel', 'case', 'ours', 'stock wasm', 'speed-up'];
const kRows = kernelCases.map((c) => {
  const ours = kernelResults.find((r) => r.label === c.label && r.engine === 'ours');
  const stock = kernelResults.find((r) => r.label === c.label && r.engine === 'stock-wasm');
  const cell = (r: KernelResult | undefined) =>
    r?.ms != null ? r.ms.toFixed(1) : /not registered/.test(r?.error ?? '') ? 'not registered' : `fails: ${r?.error ?? '?'}`;
  const speedup = ours?.ms != null && stock?.ms != null ? `${(stock.ms / ours.ms).toFixed(1)}x` : '-';
  return [c.kernel, c.label, cell(ours), cell(stock), speedup];
});
const kWidths = kHeader.map((h, i) => Math.max(h.length, ...kRows.map((row) => row[i].length)));
const kLine = (cells: string[]) => cells.map((c, i) => c.padEnd(kWidths[i])).join(' | ');
console.log(kLine(kHeader));
console.log(kWidths.map((w) => '-'.repeat(w)).join('-|-'));
for (const row of kRows) console.log(kLine(row));

const outDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(outDir, { recursive: true });
const outFile = path.join(outDir, 'train-engine.json');
writeFileSync(
  outFile,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      quick,
      node: process.version,
      tfjs: tf.version.tfjs,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? null,
      loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
      results,
      ratios,
      kernels: kernelResults,
    },
    null,
    2,
  ) + '\n',
);
console.log(`\nload average (1 min) at start ${loadAtStart[0].toFixed(2)}, at end ${os.loadavg()[0].toFixed(2)}, on ${os.cpus().length} cpus`);
console.log(`wrote ${path.relative(process.cwd(), outFile)}`);
