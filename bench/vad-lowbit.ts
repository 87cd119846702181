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
 * - lowbit, calibrated: `ndiff diff --method lowbit --calibrate FRAMES --state state:stateN`, run
 *   here: lowbit's variants (errors relative to each layer or plain, with and without low-rank
 *   factors, on every tensor and on the tensors the audio reaches alone) measured by the ONNX
 *   executor on calibration frames, the closest to v6 kept. The calibration audio is
 *   bench:vad-learned's validation audio (other sentences, voices and languages), never the
 *   evaluation audio.
 * - BitDelta's post-hoc code (the sign of every change, one scale per tensor), at its own size;
 * - Delta-CoMe (src/diff/delta-come.ts: SVD of each matrix's change, 8/3/2 bits by singular value,
 *   no data), its bytes framed as a payload frames values, its deltas added to v5 as its storage
 *   gives them back.
 *
 * Debian packages espeak-ng, sox, ktuberling-data and klettres-data are installed with apt-get when
 * missing (as root), and the bench says so.
 *
 *   npm run bench:vad-lowbit -- [--quick] [--budgets 2,5,10] [--json out.json]   (the full run: about 14 minutes)
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyPayload } from '../src/apply/index.ts';
import { getHasher } from '../src/core/hasher.ts';
import { diffOnnxModels, type OnnxDiffOptions } from '../src/diff/onnx.ts';
import { BITDELTA_CODE, describeWidths, type LowBitResult } from '../src/lowbit-diff/encoder.ts';
import { deltaCome, payloadFraming, storeDeltas } from '../src/diff/delta-come.ts';
import { main } from '../cli/ndiff.ts';
import { writeFramesFolder } from './vad-frames.ts';
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
const work = await mkdtemp(path.join(tmpdir(), 'nd-vad-lowbit-'));
const calibrationDir = path.join(work, 'calibration');
const calibrationFrames = await writeFramesFolder(calibrationDir, [...trainingStreams(VAL_SENTENCES, VAL_VOICES, quick ? 1 : 8, 202), ...recordedStreams(VAL_RECORDED, quick ? 1 : 8, 404)]);
log(`audio: synthetic ${(sets.synthetic.length / 16000).toFixed(0)} s, real ${(sets.real.length / 16000).toFixed(0)} s (evaluation); calibration ${calibrationFrames} frames`);
const reference = { synthetic: await vadProbabilities(v6, sets.synthetic), real: await vadProbabilities(v6, sets.real) };

interface Row { row: string; budget: string; bytes: number; synthetic: number; real: number; carried?: string }
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
const bitdelta = diff({ budgetBytes: 10 * v6.length, method: 'lowbit', lowbit: BITDELTA_CODE }) as LowBitResult;
await add("BitDelta's code, post hoc", `${((100 * bitdelta.bytes.length) / v6.length).toFixed(1)}%`, bitdelta.bytes);

const come = storeDeltas(open(v5), open(v6));
const framing = payloadFraming(come.shapes, { method: 'lowrank', modelId: 'silero-vad', sequence: 1, budgetBytes: v6.length });
for (const pct of budgets) {
  const budgetBytes = Math.floor((pct / 100) * v6.length);
  await add('top-k, post hoc', `${pct}%`, diff({ budgetBytes }).bytes);
  const dc = deltaCome(come.deltas, come.shapes, { budgetBytes, framing });
  const s = open(v5);
  for (const [name, d] of dc.deltas) {
    const w = s.values(name);
    for (let i = 0; i < w.length; i++) w[i] += d[i];
  }
  s.commit?.([...dc.deltas.keys()]);
  const dcRow: Row = { row: 'Delta-CoMe, post hoc', budget: `${pct}%`, bytes: dc.bytes, ...(await measure(s.modelBytes())), carried: `${dc.allocation.length} matrices` };
  rows.push(dcRow);
  log(`Delta-CoMe at ${pct}%: ${dc.bytes} bytes; agreement with v6 ${(100 * dcRow.synthetic).toFixed(2)}% synthetic, ${(100 * dcRow.real).toFixed(2)}% real (${dc.allocation.join('; ')})`);
  const plain = diff({ budgetBytes, method: 'lowbit' }) as LowBitResult;
  await add('lowbit, no data', `${pct}%`, plain.bytes, { carried: describeWidths(plain.allocation) });
  // Calibrated: ndiff diff --calibrate itself, on the calibration frames.
  const out = path.join(work, `calibrated-${pct}.ndiff`);
  const progress: string[] = [];
  const metrics = path.join(work, `calibrated-${pct}.json`);
  const code = await main(['diff', '--model-id', 'silero-vad', '--base', path.join(VAD_DIR, 'silero_vad_v5.onnx'), '--target', path.join(VAD_DIR, 'silero_vad_v6.onnx'), '--budget', `${pct}%`, '--method', 'lowbit', '--calibrate', calibrationDir, '--state', 'state:stateN', '--out', out, '--metrics-out', metrics], {
    out: () => {}, err: (l) => progress.push(l), progress: (l) => progress.push(l),
  });
  if (code !== 0) throw new Error(`ndiff diff --calibrate exited ${code}: ${progress.join('\n')}`);
  for (const l of progress.filter((l) => /^  (lowbit|chose|the inputs)/.test(l))) log(`  calibration:${l.slice(1)}`);
  const r = JSON.parse(await readFile(metrics, 'utf8')) as { calibration: { chosen: string }; allocation?: LowBitResult['allocation'] };
  await add(`${r.calibration.chosen}, chosen on calibration frames`, `${pct}%`, new Uint8Array(await readFile(out)), { carried: r.allocation ? describeWidths(r.allocation) : undefined });
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
await rm(work, { recursive: true, force: true });
