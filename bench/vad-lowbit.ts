/**
 * Silero VAD v5 -> v6 (the two .onnx files of `@ricky0123/vad-web`) as post-hoc low-bit deltas,
 * beside post-hoc top-k and BitDelta's code: each payload applied to v5 by the device applier and
 * run with onnxruntime-web on bench:onnx's evaluation audio (synthetic espeak-ng speech with
 * silence and noise, and the Debian packages' English recordings), frame by frame with the state
 * carried as @ricky0123/vad-web runs it; the share of 32 ms frames whose speech decision
 * (threshold 0.5) is v6's, beside the unpatched v5's.
 *
 * Rows per budget (a share of the v6 file):
 * - top-k: `ndiff diff --budget B`;
 * - lowbit, no data: `ndiff diff --method lowbit`;
 * - lowbit, calibrated: lowbit's variants (errors relative to each layer or plain, with and
 *   without low-rank factors; lowbit.ts `lowbitVariants`) each run on calibration audio, the one
 *   whose decisions agree with v6's most kept: what `ndiff diff --calibrate` does for TF.js
 *   models. The calibration audio is bench:vad-learned's validation audio (other sentences, voices
 *   and languages), never the evaluation audio.
 * - BitDelta's post-hoc code (the sign of every change, one scale per tensor), at its own size.
 *
 * Debian packages espeak-ng, sox, ktuberling-data and klettres-data are installed with apt-get when
 * missing (as root), and the bench says so.
 *
 *   npm run bench:vad-lowbit -- [--quick] [--budgets 2,5,10] [--json out.json]   (the full run: about 15 minutes)
 */
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher } from '../src/core/hasher.ts';
import { diffOnnxModels, type OnnxDiffOptions } from '../src/diff/onnx.ts';
import { describeWidths, lowbitVariants, type LowBitResult } from '../src/diff/lowbit.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { compare, ensurePackages, real, synthetic, vadProbabilities } from './onnx.ts';
import { recordedStreams, trainingStreams, VAL_RECORDED, VAL_SENTENCES, VAL_VOICES } from './vad-learned.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const VAD_DIR = path.join(root, 'node_modules/@ricky0123/vad-web/dist');

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const quick = process.argv.includes('--quick');
const budgets = (arg('--budgets') ?? (quick ? '10' : '2,5,10')).split(',').map(Number);
const started = performance.now();
const log = (m: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(0)} s] ${m}`);

const installed = ensurePackages([{ pkg: 'espeak-ng', bin: 'espeak-ng' }, { pkg: 'sox', bin: 'sox' }, { pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }], log);
const v5 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v5.onnx')));
const v6 = new Uint8Array(await readFile(path.join(VAD_DIR, 'silero_vad_v6.onnx')));
const hasher = await getHasher();
const open = (bytes: Uint8Array) => new OnnxWeightStore(bytes.slice(), { source: 'silero_vad_v5.onnx' });

// Evaluation audio (bench:onnx's) and calibration audio (bench:vad-learned's validation audio).
const sets = { synthetic: synthetic(quick).pcm, real: real(quick).pcm };
const joined = (parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};
const calibration = joined([...trainingStreams(VAL_SENTENCES, VAL_VOICES, quick ? 1 : 8, 202), ...recordedStreams(VAL_RECORDED, quick ? 1 : 8, 404)]);
log(`audio: synthetic ${(sets.synthetic.length / 16000).toFixed(0)} s, real ${(sets.real.length / 16000).toFixed(0)} s (evaluation); calibration ${(calibration.length / 16000).toFixed(0)} s`);
const reference = { synthetic: await vadProbabilities(v6, sets.synthetic), real: await vadProbabilities(v6, sets.real) };
const calibrationReference = await vadProbabilities(v6, calibration);

interface Row { row: string; budget: string; bytes: number; synthetic: number; real: number; calibration?: number; carried?: string }
const rows: Row[] = [];
const measure = async (model: Uint8Array) => ({
  synthetic: compare(reference.synthetic, await vadProbabilities(model, sets.synthetic)).agreement,
  real: compare(reference.real, await vadProbabilities(model, sets.real)).agreement,
});
const patched = async (payload: Uint8Array) => {
  const s = open(v5);
  await applyPayload(s, payload, { hasher });
  return s.modelBytes();
};
const add = async (row: string, budget: string, payload: Uint8Array, extra: Partial<Row> = {}) => {
  const r: Row = { row, budget, bytes: payload.length, ...(await measure(await patched(payload))), ...extra };
  rows.push(r);
  log(`${row} at ${budget}: ${payload.length} bytes; agreement with v6 ${(100 * r.synthetic).toFixed(2)}% synthetic, ${(100 * r.real).toFixed(2)}% real${r.carried ? ` (${r.carried})` : ''}`);
};

const base5 = await measure(v5);
rows.push({ row: 'v5 unpatched', budget: '-', bytes: 0, ...base5 });
log(`v5 unpatched: ${(100 * base5.synthetic).toFixed(2)}% synthetic, ${(100 * base5.real).toFixed(2)}% real`);

const diff = (options: Partial<OnnxDiffOptions> & { budgetBytes: number }) => diffOnnxModels(hasher, open(v5), open(v6), { modelId: 'silero-vad', ...options });
const bitdelta = diff({ budgetBytes: 10 * v6.length, method: 'lowbit', lowbit: { widths: [1], layouts: ['tensor'], lowRank: false } }) as LowBitResult;
await add("BitDelta's code, post hoc", `${((100 * bitdelta.bytes.length) / v6.length).toFixed(1)}%`, bitdelta.bytes);

for (const pct of budgets) {
  const budgetBytes = Math.floor((pct / 100) * v6.length);
  await add('top-k, post hoc', `${pct}%`, diff({ budgetBytes }).bytes);
  const plain = diff({ budgetBytes, method: 'lowbit' }) as LowBitResult;
  await add('lowbit, no data', `${pct}%`, plain.bytes, { carried: describeWidths(plain.allocation) });
  // Calibrated: every variant run on the calibration audio; the one agreeing with v6 most kept.
  let best: { name: string; res: LowBitResult; agreement: number } | undefined;
  for (const v of lowbitVariants()) {
    const res = diff({ budgetBytes, method: 'lowbit', lowbit: v.options() }) as LowBitResult;
    const agreement = compare(calibrationReference, await vadProbabilities(await patched(res.bytes), calibration)).agreement;
    log(`  calibration: ${v.name}: ${res.bytes.length} bytes, agreement with v6 ${(100 * agreement).toFixed(2)}%`);
    if (!best || agreement > best.agreement) best = { name: v.name, res, agreement };
  }
  const b = best as NonNullable<typeof best>;
  await add(`${b.name}, chosen on calibration audio`, `${pct}%`, b.res.bytes, { calibration: b.agreement, carried: describeWidths(b.res.allocation) });
}

const md = [
  `# Silero VAD v5 -> v6 as low-bit deltas${quick ? ' (quick)' : ''}`,
  '',
  `\`node --conditions=neural-diff-source --import tsx bench/vad-lowbit.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\`; v6 file ${v6.length} bytes; agreement with v6's speech decisions on ${reference.synthetic.length} synthetic and ${reference.real.length} real 32 ms frames.`,
  '',
  '| payload | budget | bytes | synthetic | real |',
  '|---|---|---:|---:|---:|',
  ...rows.map((r) => `| ${r.row}${r.carried ? ` (${r.carried})` : ''} | ${r.budget} | ${r.bytes} | ${(100 * r.synthetic).toFixed(2)}% | ${(100 * r.real).toFixed(2)}% |`),
  '',
].join('\n');
console.log(`\n${md}\n(${((performance.now() - started) / 1000).toFixed(0)} s${installed.length ? `; installed ${installed.join(', ')}` : ''})`);
const j = arg('--json');
if (j) await writeFile(j, JSON.stringify({ quick, budgets, rows }, null, 2) + '\n');
