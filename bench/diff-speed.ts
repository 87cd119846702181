/**
 * How fast the post-hoc encoders make a payload (issue 78, item 4): weights a second of each
 * method, on Silero VAD v5 -> v6 (the two .onnx files of `@ricky0123/vad-web`, 462,594 changed
 * weights) and on a generated float model (every weight changed a little, 1% of them a lot), at a
 * budget of 5% of the model. The time is the process's CPU time (user + system) of the encoding
 * alone, models already read: the encoders run on one thread, and on a shared machine CPU time
 * moves less than the wall clock. Each payload's sha256 is printed, so two checkouts can be
 * compared byte for byte.
 *
 * With `--against DIR` (another checkout of neural-diff, its node_modules in place), the same
 * encodings run with that checkout's encoders too, alternately in this one process (which goes
 * first alternates too), and the payloads must be the same bytes (the bench exits 1 otherwise).
 * Each figure is the least CPU time of `--reps` encodings (default 1).
 *
 *   npm run bench:diff-speed -- [--quick] [--weights 20000000] [--methods lowbit,topk] [--no-silero] [--against DIR] [--reps 3] [--json out.json]
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const VAD_DIR = path.join(root, 'node_modules/@ricky0123/vad-web/dist');

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const quick = process.argv.includes('--quick');
const generatedWeights = Number(arg('--weights') ?? (quick ? 60_000 : 20_000_000));
const silero = !quick && !process.argv.includes('--no-silero');
const METHODS = ['lowbit', 'lowbit-codes-only', 'topk', 'drop', 'lowrank'] as const;
type Method = (typeof METHODS)[number];
const methods = (arg('--methods')?.split(',') ?? [...METHODS]) as Method[];
for (const m of methods) if (!METHODS.includes(m)) throw new Error(`--methods: expected some of ${METHODS.join(', ')}, found ${m}`);
const against = arg('--against');
const reps = Math.max(1, Number(arg('--reps') ?? 1));

/** The encoders of one checkout. */
async function encodersOf(dir: string) {
  const src = (p: string) => import(path.join(dir, 'src', p));
  const [{ getHasher }, { diffOnnxModels, onnxDeltas }, { OnnxWeightStore }, { MemoryWeightStore }, { lowbitDiff }, { topkDiff }, { dropDiff }, { lowRankDiff }, { modelDelta }] = await Promise.all([
    src('core/hasher.ts'), src('diff/onnx.ts'), src('io/onnx/store.ts'), src('core/weight-store.ts'), src('lowbit-diff/encoder.ts'), src('topk-diff/encoder.ts'), src('diff/baselines.ts'), src('lowrank-diff/encoder.ts'), src('diff/delta.ts'),
  ]);
  return { hasher: await getHasher(), diffOnnxModels, onnxDeltas, OnnxWeightStore, MemoryWeightStore, lowbitDiff, topkDiff, dropDiff, lowRankDiff, modelDelta };
}
type Encoders = Awaited<ReturnType<typeof encodersOf>>;

const header = { modelId: 'bench', sequence: 1, createdAt: '2026-01-01T00:00:00Z' };
const CODES_ONLY = { lowRank: false, outliers: false, newValues: false };

/** A float model of about `n` weights in matrices of 512 columns and a bias each, and its fine-tune: every weight moved a little, 1% of them a lot. */
function generated(n: number): { base: Map<string, { shape: number[]; data: Float32Array }>; target: Map<string, { shape: number[]; data: Float32Array }> } {
  let s = 12345;
  const random = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const base = new Map<string, { shape: number[]; data: Float32Array }>();
  const target = new Map<string, { shape: number[]; data: Float32Array }>();
  const rowsPer = Math.max(1, Math.min(1024, Math.ceil(n / 512 / 8)));
  for (let layer = 0, left = n; left > 0; layer++) {
    const rows = Math.max(1, Math.min(rowsPer, Math.ceil(left / 512)));
    for (const [name, shape] of [[`layer${layer}/kernel`, [rows, 512]], [`layer${layer}/bias`, [512]]] as const) {
      const size = shape.reduce((a, b) => a * b, 1);
      const w = new Float32Array(size);
      const t = new Float32Array(size);
      for (let i = 0; i < size; i++) {
        w[i] = (random() - 0.5) * 0.2;
        t[i] = w[i] + (random() - 0.5) * 0.004 * (random() < 0.01 ? 20 : 1);
      }
      base.set(name, { shape: [...shape], data: w });
      target.set(name, { shape: [...shape], data: t });
      left -= size;
    }
  }
  return { base, target };
}

interface Row { model: string; method: Method; weights: number; checkout: string; seconds: number; weightsPerSecond: number; bytes: number; sha256: string }

/** One encoding of `method`, timed by CPU time. */
function encode(e: Encoders, model: 'silero' | 'generated', method: Method, inputs: { v5?: Uint8Array; v6?: Uint8Array; gen?: ReturnType<typeof generated> }, budgetBytes: number): { seconds: number; bytes: Uint8Array } {
  let run: () => { bytes: Uint8Array };
  if (model === 'silero') {
    const base = new e.OnnxWeightStore((inputs.v5 as Uint8Array).slice(), { source: 'silero_vad_v5.onnx' });
    const target = new e.OnnxWeightStore((inputs.v6 as Uint8Array).slice(), { source: 'silero_vad_v6.onnx' });
    const o = { ...header, budgetBytes };
    run = method === 'lowbit' ? () => e.diffOnnxModels(e.hasher, base, target, { ...o, method: 'lowbit' })
      : method === 'lowbit-codes-only' ? () => e.diffOnnxModels(e.hasher, base, target, { ...o, method: 'lowbit', lowbit: CODES_ONLY })
      : method === 'topk' ? () => e.diffOnnxModels(e.hasher, base, target, o)
      : method === 'drop' ? () => e.dropDiff(e.hasher, base, e.onnxDeltas(base, target), { ...o, seed: 1 })
      : () => e.lowRankDiff(e.hasher, base, e.onnxDeltas(base, target), o);
  } else {
    const copy = (m: Map<string, { shape: number[]; data: Float32Array }>) => new e.MemoryWeightStore([...m].map(([k, v]) => [k, { shape: v.shape, data: v.data.slice() }]));
    const gen = inputs.gen as ReturnType<typeof generated>;
    const base = copy(gen.base);
    const target = copy(gen.target);
    const o = { ...header, budgetBytes };
    run = method === 'lowbit' ? () => e.lowbitDiff(e.hasher, base, target, o)
      : method === 'lowbit-codes-only' ? () => e.lowbitDiff(e.hasher, base, target, { ...o, ...CODES_ONLY })
      : method === 'topk' ? () => e.topkDiff(e.hasher, base, target, o)
      : method === 'drop' ? () => e.dropDiff(e.hasher, base, e.modelDelta(base, target), { ...o, seed: 1 })
      : () => e.lowRankDiff(e.hasher, base, e.modelDelta(base, target), o);
  }
  const before = process.cpuUsage();
  const { bytes } = run();
  const used = process.cpuUsage(before);
  return { seconds: (used.user + used.system) / 1e6, bytes };
}

const checkouts: [string, Encoders][] = [['this checkout', await encodersOf(root)]];
if (against) checkouts.push([against, await encodersOf(path.resolve(against))]);
const inputs: { v5?: Uint8Array; v6?: Uint8Array; gen?: ReturnType<typeof generated> } = {};
const models: { model: 'silero' | 'generated'; weights: number; budgetBytes: number }[] = [];
if (silero) {
  inputs.v5 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v5.onnx')));
  inputs.v6 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v6.onnx')));
  // The budget `ndiff diff --budget 5%` gives Silero v5 (5% of its 2,182,376 bytes as stored).
  models.push({ model: 'silero', weights: 462_594, budgetBytes: 109_118 });
}
if (generatedWeights > 0) {
  inputs.gen = generated(generatedWeights);
  const weights = [...inputs.gen.base.values()].reduce((a, t) => a + t.data.length, 0);
  models.push({ model: 'generated', weights, budgetBytes: Math.floor(weights * 4 * 0.05) });
}
const rows: Row[] = [];
let differ = false;
for (const { model, weights, budgetBytes } of models) {
  for (const method of methods) {
    // Silero's change is a retrained model's: drop and low-rank are the comparison report's baselines of fine-tunes.
    if (model === 'silero' && (method === 'drop' || method === 'lowrank')) continue;
    const shas = new Set<string>();
    const best = new Map<string, { seconds: number; bytes: Uint8Array }>();
    for (let rep = 0; rep < reps; rep++) {
      for (const [checkout, e] of rep % 2 ? [...checkouts].reverse() : checkouts) {
        const run = encode(e, model, method, inputs, budgetBytes);
        shas.add(createHash('sha256').update(run.bytes).digest('hex'));
        if (!best.has(checkout) || run.seconds < (best.get(checkout) as { seconds: number }).seconds) best.set(checkout, run);
      }
    }
    for (const [checkout] of checkouts) {
      const { seconds, bytes } = best.get(checkout) as { seconds: number; bytes: Uint8Array };
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const row = { model, method, weights, checkout, seconds, weightsPerSecond: weights / seconds, bytes: bytes.length, sha256 };
      rows.push(row);
      console.log(`${model} (${weights.toLocaleString('en')} weights) ${method.padEnd(17)} ${checkout}: ${seconds.toFixed(2)} s CPU, ${Math.round(row.weightsPerSecond).toLocaleString('en')} weights/s, ${bytes.length} bytes, sha256 ${sha256.slice(0, 16)}`);
    }
    if (shas.size > 1) {
      differ = true;
      console.log(`  the payloads differ between the checkouts`);
    }
  }
}
const json = arg('--json');
if (json) {
  await writeFile(json, JSON.stringify({ quick, rows }, null, 2) + '\n');
  console.log(`wrote ${json}`);
}
if (differ) process.exit(1);
