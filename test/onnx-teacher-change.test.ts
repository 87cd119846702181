/**
 * Methods that start from the teacher's change (teacher − base) on a real ONNX update, Silero VAD
 * v5 -> v6 (`@ricky0123/vad-web`): v6 was re-exported, so some weights of the 8 kHz branch (which
 * no 16 kHz input reaches, so nothing trains it) carry other names in v6. Only the trained
 * tensors need a counterpart in the teacher: topk-retrain masks the largest changes of v6, and a
 * sparse diff with `sparseStart: 'teacher'` starts from them, on the real pair.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { initBackend } from '../src/engine/backend.ts';
import { trainOnnxDiff, type OnnxDataset } from '../src/train/onnx/train-onnx.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { applyPayload } from '../src/apply/index.ts';
import { seededRandom } from '../src/core/random.ts';
import { frames as vadFrames } from '../bench/vad-frames.ts';

await initBackend('wasm');

const VAD = path.join(import.meta.dirname, '../node_modules/@ricky0123/vad-web/dist');
const v5 = new Uint8Array(readFileSync(path.join(VAD, 'silero_vad_v5.onnx')));
const v6 = new Uint8Array(readFileSync(path.join(VAD, 'silero_vad_v6.onnx')));

/** `sequences` streams of `count` frames, cut as vad-web feeds them (bench/vad-frames.ts): tone bursts in noise. */
function frames(sequences: number, count: number, seed: number): OnnxDataset {
  const r = seededRandom(seed);
  const streams = Array.from({ length: sequences }, () => {
    const pcm = new Float32Array(count * 512);
    const f0 = 120 + 200 * r();
    for (let i = 0; i < pcm.length; i++) {
      const voiced = Math.floor(i / 2048) % 2 === 1;
      pcm[i] = 0.01 * (2 * r() - 1) + (voiced ? 0.3 * Math.sin((2 * Math.PI * f0 * i) / 16000) * (1 + 0.5 * Math.sin((2 * Math.PI * 3 * i) / 16000)) : 0);
    }
    return pcm;
  });
  const { input, sequence } = vadFrames(streams);
  return { inputs: { input: { values: input, shape: [576] } }, sequence };
}

const common = {
  budgetBytes: Math.floor(0.02 * v6.length),
  epochs: 1,
  batchSize: 16,
  tune: 'off' as const,
  seed: 1,
  teacher: v6,
  validation: frames(1, 12, 2),
  shared: { sr: { values: Int32Array.of(16000), shape: [] } },
  state: [{ input: 'state', output: 'stateN' }],
  bpttFrames: 1,
  allowWorse: true,
  header: { modelId: 'silero-vad', sequence: 1 },
  program: { source: 'silero_vad_v5.onnx' },
};

/** What a payload changes in v5: how many weights, how many of them move toward v6, the mean |v6 − v5| there and over every weight both files name, and the graph branches touched. */
async function changes(payload: Uint8Array) {
  const base = new OnnxWeightStore(v5.slice());
  const patched = new OnnxWeightStore(v5.slice());
  await applyPayload(patched, payload);
  const target = new OnnxWeightStore(v6.slice());
  const targetNames = new Set(target.weights().map((w) => w.name));
  let changed = 0;
  let towardV6 = 0;
  let changeAtChanged = 0;
  let changeEverywhere = 0;
  let everywhere = 0;
  const branches = new Set<string>();
  for (const w of base.weights()) {
    if (!targetNames.has(w.name)) continue;
    const a = base.values(w.name);
    const b = patched.values(w.name);
    const c = target.values(w.name);
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(c[i] - a[i]);
      if (a[i] !== b[i]) {
        changed++;
        changeAtChanged += d;
        if (Math.abs(c[i] - b[i]) < d) towardV6++;
        branches.add(w.name.split('/')[1]);
      }
    }
    for (let i = 0; i < a.length; i++) changeEverywhere += Math.abs(c[i] - a[i]);
    everywhere += a.length;
  }
  return { changed, towardV6, meanChangeAtChanged: changeAtChanged / changed, meanChange: changeEverywhere / everywhere, branches };
}

test('Silero v5 -> v6, topk-retrain from the teacher: the mask holds the largest changes of v6, though v6 names some untrained weights differently', async (t) => {
  const res = await trainOnnxDiff(v5, frames(2, 12, 1), { ...common, method: 'topk-retrain' });
  assert.ok(res.bytes.length <= common.budgetBytes, `${res.bytes.length} of ${common.budgetBytes} bytes`);
  const c = await changes(res.bytes);
  t.diagnostic(`${c.changed} weights changed; mean |v6 − v5| there ${c.meanChangeAtChanged.toExponential(2)}, over every weight ${c.meanChange.toExponential(2)}`);
  assert.ok(c.changed > 1000, `${c.changed} weights changed`);
  assert.equal(c.branches.size, 1, [...c.branches].join(', '));
  assert.ok(c.meanChangeAtChanged > 2 * c.meanChange, `${c.meanChangeAtChanged} against ${c.meanChange}`);
});

test('Silero v5 -> v6, a sparse diff starting from the teacher\'s change: the weights it changes move toward v6', async (t) => {
  const res = await trainOnnxDiff(v5, frames(2, 12, 1), { ...common, method: 'sparse', sparseStart: 'teacher' });
  assert.ok(res.bytes.length <= common.budgetBytes, `${res.bytes.length} of ${common.budgetBytes} bytes`);
  const c = await changes(res.bytes);
  t.diagnostic(`${c.changed} weights changed, ${c.towardV6} of them closer to v6 than v5 is`);
  assert.ok(c.changed > 1000, `${c.changed} weights changed`);
  assert.ok(c.towardV6 > 0.9 * c.changed, `${c.towardV6} of ${c.changed} toward v6`);
});
