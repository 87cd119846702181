/**
 * Quantized models stay quantized, and lose nothing for it (issue #16): the keyword model of the
 * keyword-spotting benchmark, converted as tensorflowjs_converter does (--quantize_uint8 and
 * --quantize_float16: quantizeModelDir), learns update 1 (new words) as a sparse diff within 1%
 * of the model **as stored** (and, with `--methods sparse,lowbit`, as a low-bit diff: on the uint8
 * model codes in whole grid steps); the same diff is learned on the float32 model at the same bytes.
 * Each payload is applied to a copy of its folder with the device applier and the folder is
 * loaded with stock tfjs: the accuracy reported is the stored result's, the folder keeps its
 * dtypes and size.
 *
 *   node --import tsx bench/quantized.ts [--data DIR] [--work DIR] [--update 1] [--budget-pct 1]
 *        [--epochs 5] [--tune quick] [--methods sparse]
 *        [--dtypes uint8,float16] [--float32 yes] [--out bench/out/quantized.json]
 *
 * `--float32 no` leaves out the float32 model's runs at the same bytes (the last two columns).
 *
 * Needs the keyword benchmark's data (examples/keyword-spotting/data, made by `npm run bench:kws`
 * or its data.ts) and reuses its base model (work/full/base.json) when present.
 */
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { storedModelBytes } from '../src/diff/build.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { fileSystemIO, openTfjsModelDir, quantizeModelDir, referencedFiles } from '../src/io/tfjs/index.ts';
import { initBackend } from '../src/engine/backend.ts';
import { evaluate, pick, seededRandom, type LabelledData } from '../src/train/data.ts';
import { setModelWeights } from '../src/engine/model-weights.ts';
import { silenceTfjsNodeBanner } from '../src/engine/quiet.ts';
import { trainDiff, type TuneMode } from '../src/train/train-diff.ts';
import type { KwsManifest } from '../examples/keyword-spotting/data.ts';
import { loadSplit, toLabelled } from '../examples/keyword-spotting/splits.ts';
import { keywordModel } from '../examples/keyword-spotting/model.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    data: { type: 'string' },
    work: { type: 'string' },
    update: { type: 'string', default: '1' },
    'budget-pct': { type: 'string', default: '1' },
    epochs: { type: 'string', default: '5' },
    tune: { type: 'string', default: 'quick' },
    methods: { type: 'string', default: 'sparse' },
    dtypes: { type: 'string', default: 'uint8,float16' },
    float32: { type: 'string', default: 'yes' },
    out: { type: 'string' },
  },
});
const dataDir = resolve(args.data ?? join(here, '..', 'examples', 'keyword-spotting', 'data'));
const kwsWork = resolve(args.work ?? join(here, '..', 'examples', 'keyword-spotting', 'work', 'full'));
const u = Number(args.update);
const pct = Number(args['budget-pct']);
const epochs = Number(args.epochs);
const tune = args.tune as TuneMode;
const methods = (args.methods as string).split(',') as ('sparse' | 'lowbit')[];
const dtypes = (args.dtypes as string).split(',') as ('uint8' | 'float16')[];
for (const m of methods) if (m !== 'sparse' && m !== 'lowbit') throw new Error(`--methods: expected sparse and/or lowbit, found ${m}`);
for (const d of dtypes) if (d !== 'uint8' && d !== 'float16') throw new Error(`--dtypes: expected uint8 and/or float16, found ${d}`);
const outFile = resolve(args.out ?? join(here, 'out', 'quantized.json'));
const tmp = join(here, 'out', 'quantized-work');
const log = (l: string) => console.log(l);

if (!existsSync(join(dataDir, 'manifest.json'))) {
  throw new Error(`no keyword data in ${dataDir}: run npm run bench:kws (or examples/keyword-spotting/data.ts) first, or pass --data`);
}
const manifest = JSON.parse(readFileSync(join(dataDir, 'manifest.json'), 'utf8')) as KwsManifest;
const split = (name: string) => loadSplit(dataDir, manifest, name);
const concat = (names: string[]): LabelledData => toLabelled(names.map(split));

async function weightBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await referencedFiles(dir)) if (f !== 'model.json') n += (await stat(join(dir, f))).size;
  return n;
}

await initBackend('wasm');
silenceTfjsNodeBanner();
await rm(tmp, { recursive: true, force: true });
await mkdir(tmp, { recursive: true });

// The float32 base: the keyword benchmark's, or trained here as it trains it.
const model = keywordModel(manifest.numClasses, 0);
if (existsSync(join(kwsWork, 'base.json'))) {
  const t = JSON.parse(await readFile(join(kwsWork, 'base.json'), 'utf8')) as Record<string, { shape: number[]; b64: string }>;
  setModelWeights(model, (n) => {
    const e = t[n];
    if (!e) return undefined;
    const b = Buffer.from(e.b64, 'base64');
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  });
  log(`base: the keyword benchmark's (${kwsWork}/base.json)`);
} else {
  log('base: training it (10 epochs on the base words), as the keyword benchmark does');
  const base = concat([manifest.updates[0].train]);
  await trainDiff(model, base, { method: 'full', budgetBytes: 0, epochs: 10, seed: 1, tune: 'off', learningRate: 1e-3 });
  base.x.dispose();
}
const f32Dir = join(tmp, 'float32');
await model.save(fileSystemIO(f32Dir));

const up = manifest.updates[u];
const fresh = split(up.train);
// Replay as the benchmark does: as many rows as the update's own, drawn (seeded) from earlier training splits.
const train = (() => {
  const all = concat([up.train, ...up.replay]);
  const random = seededRandom(1000 + u);
  const rest = Array.from({ length: all.y.length - fresh.y.length }, (_, i) => fresh.y.length + i);
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [rest[i], rest[j]] = [rest[j], rest[i]];
  }
  const idx = Int32Array.from([...Array.from({ length: fresh.y.length }, (_, i) => i), ...rest.slice(0, fresh.y.length)].sort((a, b) => a - b));
  const picked = pick(all, idx);
  all.x.dispose();
  return picked;
})();
const evalAll = concat(up.evalAll);
log(`update ${u} (${up.id}): ${train.y.length} training rows (${fresh.y.length} new), ${evalAll.y.length} evaluation rows`);

interface Row {
  storage: string;
  method: string;
  seconds: number;
  storedBytes: number;
  budgetBytes: number;
  bytes: number;
  accuracyBefore: number;
  accuracy: number;
  folderAccuracy: number;
  samePredictions: boolean;
  folderBytesBefore: number;
  folderBytesAfter: number;
  dtypesKept: boolean;
  learningRate: number;
}

async function run(dir: string, storage: string, budgetBytes: number, method: 'sparse' | 'lowbit'): Promise<Row> {
  const m = await tf.loadLayersModel(fileSystemIO(dir));
  const base = await openTfjsModelDir(dir);
  const t0 = performance.now();
  const res = await trainDiff(m, train, { method, budgetBytes, epochs, seed: 11, base, tune, eval: evalAll, header: { modelId: 'kws-en', sequence: u }, onProgress: (l) => log(`  [${storage} ${method} @ ${budgetBytes} B] ${l}`) });
  const seconds = (performance.now() - t0) / 1000;
  const device = join(tmp, `${storage}-${method}-${budgetBytes}-device`);
  await cp(dir, device, { recursive: true });
  const before = await weightBytes(dir);
  await applyToModelDir(device, res.bytes, { state: null });
  const loaded = await tf.loadLayersModel(fileSystemIO(device));
  const got = evaluate(loaded, evalAll);
  const entries = async (d: string) => JSON.stringify((JSON.parse(await readFile(join(d, 'model.json'), 'utf8')).weightsManifest as { weights: unknown[] }[]).map((g) => g.weights));
  const row: Row = {
    storage,
    method,
    seconds: Number(seconds.toFixed(1)),
    storedBytes: storedModelBytes(base),
    budgetBytes,
    bytes: res.bytes.length,
    accuracyBefore: res.accuracyBefore as number,
    accuracy: res.accuracyAfter as number,
    folderAccuracy: got.accuracy,
    samePredictions: got.predictions.every((p, i) => p === res.predictions![i]),
    folderBytesBefore: before,
    folderBytesAfter: await weightBytes(device),
    dtypesKept: (await entries(dir)) === (await entries(device)),
    learningRate: res.tuning.learningRate,
  };
  log(`${storage} ${method} @ ${budgetBytes} B (${row.seconds} s): ${row.bytes} bytes, accuracy ${(100 * row.accuracyBefore).toFixed(2)}% -> ${(100 * row.accuracy).toFixed(2)}% (folder by stock tfjs: ${(100 * row.folderAccuracy).toFixed(2)}%), weights ${row.folderBytesBefore} -> ${row.folderBytesAfter} bytes, dtypes kept: ${row.dtypesKept}`);
  m.dispose();
  loaded.dispose();
  return row;
}

const results: { variant: string; method: string; quantized: Row; float32?: Row; gapPoints?: number }[] = [];
for (const dtype of dtypes) {
  const dir = join(tmp, dtype);
  const sizes = await quantizeModelDir(f32Dir, dir, dtype);
  const stored = storedModelBytes(await openTfjsModelDir(dir));
  const budget = Math.floor((stored * pct) / 100);
  log(`${dtype}: weights ${sizes.bytesBefore} -> ${sizes.bytesAfter} bytes; budget ${pct}% of the model as stored = ${budget} bytes`);
  for (const method of methods) {
    const quantized = await run(dir, dtype, budget, method);
    const float32 = args.float32 === 'no' ? undefined : await run(f32Dir, 'float32', budget, method);
    results.push({ variant: dtype, method, quantized, ...(float32 ? { float32, gapPoints: Number((100 * (float32.accuracy - quantized.accuracy)).toFixed(2)) } : {}) });
  }
}
await mkdir(dirname(outFile), { recursive: true });
await writeFile(outFile, JSON.stringify({ update: u, budgetPct: pct, epochs, tune, methods, results }, null, 1) + '\n');
log('');
log('| stored as | method | budget (1% as stored) | payload | accuracy before | after (trainer) | after (folder, stock tfjs) | weights after | float32 model, same bytes | gap |');
log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of results) {
  const q = r.quantized;
  log(`| ${r.variant} | ${r.method} | ${q.budgetBytes} B | ${q.bytes} B | ${(100 * q.accuracyBefore).toFixed(2)}% | ${(100 * q.accuracy).toFixed(2)}% | ${(100 * q.folderAccuracy).toFixed(2)}% | ${q.folderBytesAfter} B (was ${q.folderBytesBefore}${q.dtypesKept ? ', dtypes kept' : ', DTYPES CHANGED'}) | ${r.float32 ? `${(100 * r.float32.accuracy).toFixed(2)}%` : '-'} | ${r.gapPoints?.toFixed(2) ?? '-'} pts |`);
}
log(`wrote ${outFile}`);
await rm(tmp, { recursive: true, force: true });

