/**
 * The committed Silero VAD v5 -> v6 payloads (`bench/results/vad-v5-v6-2pct.ndiff`,
 * `-10pct.ndiff`, written by `npm run bench:vad-learned`): each is within its budget of the v6
 * file, applies to `silero_vad_v5.onnx` of `@ricky0123/vad-web` with the device applier (which
 * checks the base before the first write and the promised target after the last), and the patched
 * file runs in onnxruntime-web with its speech probability moved from v5's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-web';
import { applyPayload } from '../src/apply/index.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const root = path.join(import.meta.dirname, '..');
const VAD = path.join(root, 'node_modules/@ricky0123/vad-web/dist');
const v5 = new Uint8Array(readFileSync(path.join(VAD, 'silero_vad_v5.onnx')));
const v6Size = readFileSync(path.join(VAD, 'silero_vad_v6.onnx')).length;

/** Speech probabilities of 12 frames of a tone burst in noise, fed as vad-web feeds them. */
async function probabilities(model: Uint8Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  const sr = new ort.Tensor('int64', BigInt64Array.from([16000n]), []);
  let state: ort.Tensor = new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]);
  const out = new Float32Array(12);
  let seed = 7;
  const noise = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  for (let f = 0; f < 12; f++) {
    const input = new Float32Array(576);
    for (let i = 0; i < 576; i++) input[i] = 0.01 * noise() + (f >= 4 ? 0.3 * Math.sin((2 * Math.PI * 180 * (f * 512 + i)) / 16000) : 0);
    const r = await session.run({ input: new ort.Tensor('float32', input, [1, 576]), state, sr });
    state = r.stateN;
    out[f] = (r.output.data as Float32Array)[0];
  }
  await session.release();
  return out;
}

for (const pct of [2, 10]) {
  test(`bench/results/vad-v5-v6-${pct}pct.ndiff: within ${pct}% of v6, applies to vad-web's v5, and the patched file runs in onnxruntime-web`, async (t) => {
    const payload = new Uint8Array(readFileSync(path.join(root, `bench/results/vad-v5-v6-${pct}pct.ndiff`)));
    assert.ok(payload.length <= Math.floor((pct / 100) * v6Size), `${payload.length} bytes against ${pct}% of ${v6Size}`);
    const store = new OnnxWeightStore(v5.slice(), { source: 'silero_vad_v5.onnx' });
    const result = await applyPayload(store, payload);
    assert.equal(result.status, 'applied');
    const patched = store.modelBytes();
    assert.notDeepEqual(patched, v5);
    const before = await probabilities(v5);
    const after = await probabilities(patched);
    const moved = Math.max(...after.map((p, i) => Math.abs(p - before[i])));
    t.diagnostic(`${payload.length} bytes; largest change of the speech probability over 12 frames: ${moved.toExponential(2)}`);
    assert.ok(after.every(Number.isFinite));
    assert.ok(moved > 1e-4, `the patched model's outputs moved by ${moved}`);
  });
}
