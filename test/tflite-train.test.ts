/**
 * LiteRT models as trainable programs: the executor's forward pass equals LiteRT.js
 * (`@litertjs/core`) on a small CNN built here and on MediaPipe's selfie segmentation model; a
 * teacher diff of the CNN (float16 convolution weights through DEQUANTIZE, float32 depthwise and
 * dense weights) applied to the file gives in LiteRT.js the outputs the trainer reported; `ndiff
 * train --base model.tflite` from .npy folders; an operator the executor lacks refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { TfliteProgram } from '../src/engine/tflite/program.ts';
import { trainTfliteDiff } from '../src/train/tflite/train-tflite.ts';
import { applyToTfliteFile } from '../src/io/tflite/files.ts';
import { toHalfBits } from '../src/core/float16.ts';
import { seededRandom } from '../src/core/random.ts';
import { runTflite } from '../bench/litert.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process LiteRT training cases are') };

await initBackend('cpu');

function halves(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(2 * values.length);
  const d = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) d.setUint16(2 * i, toHalfBits(values[i]), true);
  return out;
}

/** A small CNN: DEQUANTIZE(f16 conv) -> CONV_2D relu -> DEPTHWISE relu6 -> MAX_POOL -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX. */
function cnn(seed: number, moved = 0): Uint8Array {
  const r = seededRandom(1);
  const m = seededRandom(seed);
  const draw = (n: number, scale: number) => Array.from({ length: n }, () => (r() - 0.5) * scale + (moved ? (m() - 0.5) * moved * scale : 0));
  return buildTflite({
    tensors: [
      { name: 'image', shape: [1, 8, 8, 3], type: T.FLOAT32 }, // 0
      { name: 'conv/kernel_f16', shape: [4, 3, 3, 3], type: T.FLOAT16, buffer: 1 }, // 1
      { name: 'conv/kernel', shape: [4, 3, 3, 3], type: T.FLOAT32 }, // 2
      { name: 'conv/bias', shape: [4], type: T.FLOAT32, buffer: 2 }, // 3
      { name: 'conv/out', shape: [1, 8, 8, 4], type: T.FLOAT32 }, // 4
      { name: 'dw/kernel', shape: [1, 3, 3, 4], type: T.FLOAT32, buffer: 3 }, // 5
      { name: 'dw/bias', shape: [4], type: T.FLOAT32, buffer: 4 }, // 6
      { name: 'dw/out', shape: [1, 4, 4, 4], type: T.FLOAT32 }, // 7
      { name: 'pool/out', shape: [1, 2, 2, 4], type: T.FLOAT32 }, // 8
      { name: 'flat/shape', shape: [2], type: T.INT32, buffer: 5 }, // 9
      { name: 'flat/out', shape: [1, 16], type: T.FLOAT32 }, // 10
      { name: 'dense/kernel', shape: [3, 16], type: T.FLOAT32, buffer: 6 }, // 11
      { name: 'dense/bias', shape: [3], type: T.FLOAT32, buffer: 7 }, // 12
      { name: 'logits', shape: [1, 3], type: T.FLOAT32 }, // 13
      { name: 'probs', shape: [1, 3], type: T.FLOAT32 }, // 14
    ],
    buffers: [halves(draw(108, 0.8)), f32Bytes(draw(4, 0.2)), f32Bytes(draw(36, 1)), f32Bytes(draw(4, 0.2)), new Uint8Array(new Int32Array([1, 16]).buffer), f32Bytes(draw(48, 1)), f32Bytes(draw(3, 0.2))],
    operators: [
      { op: 6, inputs: [1], outputs: [2] },
      // CONV_2D (Conv2DOptions: padding SAME, stride 1x1, RELU)
      { op: 3, inputs: [0, 2, 3], outputs: [4], options: { type: 1, fields: [{ u8: 0 }, { i32: 1 }, { i32: 1 }, { u8: 1 }] } },
      // DEPTHWISE_CONV_2D (padding SAME, stride 2x2, multiplier 1, RELU6)
      { op: 4, inputs: [4, 5, 6], outputs: [7], options: { type: 2, fields: [{ u8: 0 }, { i32: 2 }, { i32: 2 }, { i32: 1 }, { u8: 3 }] } },
      // MAX_POOL_2D (Pool2DOptions: VALID, stride 2x2, filter 2x2)
      { op: 17, inputs: [7], outputs: [8], options: { type: 5, fields: [{ u8: 1 }, { i32: 2 }, { i32: 2 }, { i32: 2 }, { i32: 2 }, { u8: 0 }] } },
      { op: 22, inputs: [8, 9], outputs: [10] },
      { op: 9, inputs: [10, 11, 12], outputs: [13], options: { type: 8, fields: [{ u8: 0 }] } },
      { op: 25, inputs: [13], outputs: [14], options: { type: 9, fields: [{ f32: 1 }] } },
    ],
    inputs: [0],
    outputs: [14],
  });
}

/** n images of 8x8x3, deterministic. */
function images(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n * 192 }, () => r() * 2 - 1);
}

/** LiteRT.js's outputs of `bytes` on each image, concatenated. */
async function liteRt(bytes: Uint8Array, x: Float32Array): Promise<Float32Array> {
  const out: number[] = [];
  for (let i = 0; i < x.length / 192; i++) out.push(...(await runTflite(bytes, [x.subarray(192 * i, 192 * (i + 1))]))[0].data);
  return Float32Array.from(out);
}

function worstRelative(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / (m || 1);
}

test('the executor\'s forward pass equals LiteRT.js: a CNN built here, batched, and MediaPipe\'s selfie segmentation', once, async () => {
  const bytes = cnn(1);
  const x = images(6, 9);
  const program = new TfliteProgram(bytes, { source: 'cnn.tflite' });
  try {
    const ours = tf.tidy(() => program.run({ image: tf.tensor(x, [6, 8, 8, 3]) }).probs.dataSync() as Float32Array);
    const theirs = await liteRt(bytes, x);
    assert.ok(worstRelative(ours, theirs) < 1e-5, `relative difference ${worstRelative(ours, theirs)}`);
  } finally {
    program.dispose();
  }
  const require = createRequire(import.meta.url);
  const selfie = new Uint8Array(readFileSync(path.join(path.dirname(require.resolve('@mediapipe/selfie_segmentation/package.json')), 'selfie_segmentation.tflite')));
  const p = new TfliteProgram(selfie, { source: 'selfie_segmentation.tflite' });
  try {
    const n = 256 * 256 * 3;
    const img = Float32Array.from({ length: n }, (_, i) => 0.5 + 0.45 * Math.sin(i * 0.37)); // noisy: the mask is not empty
    const ours = tf.tidy(() => Object.values(p.run({ [p.inputs[0].name]: tf.tensor(img, [1, 256, 256, 3]) }))[0].dataSync() as Float32Array);
    const theirs = (await runTflite(selfie, [img]))[0].data;
    assert.ok(Math.max(...theirs) > 0.01, 'the mask is not empty on this input');
    assert.ok(worstRelative(ours, theirs) < 1e-4, `relative difference ${worstRelative(ours, theirs)}`);
  } finally {
    p.dispose();
  }
});

test('a teacher diff of a .tflite CNN: the payload patches the file (float16 weights stay float16) and LiteRT.js on it gives the trainer\'s outputs', once, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-tflite-train-'));
  try {
    const v1 = cnn(1);
    const v2 = cnn(7, 0.6);
    const train = { inputs: { image: { values: images(160, 3), shape: [8, 8, 3] } } };
    const evalSet = { inputs: { image: { values: images(40, 4), shape: [8, 8, 3] } } };
    const res = await trainTfliteDiff(v1, train, { method: 'full', budgetBytes: 0, teacher: v2, eval: evalSet, epochs: 6, tune: 'off', seed: 3, batchSize: 32, learningRate: 2e-2, allowWorse: false, trainable: 'all', header: { modelId: 'cnn', sequence: 1 }, source: 'cnn.tflite' });
    const te = res.teacherEval as NonNullable<typeof res.teacherEval>;
    assert.ok(te.after.meanAbsDiff < te.before.meanAbsDiff, `closer to the teacher: ${te.before.meanAbsDiff} -> ${te.after.meanAbsDiff}`);
    const file = path.join(dir, 'cnn.tflite');
    writeFileSync(file, v1);
    const applied = await applyToTfliteFile(file, res.bytes);
    assert.equal(applied.status, 'applied');
    assert.ok(applied.changedTensors.includes('conv/kernel_f16'), 'the float16 kernel was trained and patched');
    const patched = new Uint8Array(readFileSync(file));
    const theirs = await liteRt(patched, evalSet.inputs.image.values);
    const rel = worstRelative(res.evalOutputs as Float32Array, theirs);
    assert.ok(rel < 1e-4, `LiteRT.js on the patched file vs the trainer: ${rel}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff train --base model.tflite --teacher: from an .npy folder, the updated file written; an operator the executor lacks refused by name before training', once, async () => {
  const { main } = await import('../cli/ndiff.ts');
  const { saveNpy } = await import('../src/io/npy/files.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-tflite-train-cli-'));
  const run = async (...argv: string[]) => {
    const lines: string[] = [];
    const code = await main(argv, { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l) });
    return { code, text: lines.join('\n') };
  };
  try {
    writeFileSync(path.join(dir, 'v1.tflite'), cnn(1));
    writeFileSync(path.join(dir, 'v2.tflite'), cnn(7, 0.6));
    saveNpy(path.join(dir, 'train', 'x.npy'), images(120, 5), [120, 8, 8, 3]);
    saveNpy(path.join(dir, 'eval', 'image.npy'), images(30, 6), [30, 8, 8, 3]);
    const r = await run('train', '--model-id', 'cnn', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '40%', '--epochs', '4', '--tune', 'off', '--lr', '0.02', '--backend', 'cpu', '--out', path.join(dir, 'p.ndiff'), '--model-out', path.join(dir, 'v1-patched.tflite'));
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /eval agreement with the teacher [\d.]+% -> [\d.]+%/);
    assert.ok(existsSync(path.join(dir, 'v1-patched.tflite')));
    // --method auto --auto-search exhaustive: every candidate trained on the same examples, the best on validation written.
    const a = await run('train', '--model-id', 'cnn', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'auto', '--auto-search', 'exhaustive', '--budget', '40%', '--epochs', '2', '--tune', 'off', '--lr', '0.02', '--backend', 'cpu', '--out', path.join(dir, 'auto.ndiff'), '--metrics-out', path.join(dir, 'auto.json'));
    assert.equal(a.code, 0, a.text);
    const am = JSON.parse(readFileSync(path.join(dir, 'auto.json'), 'utf8')) as { method: string; auto: { chosen: string; candidates: { method: string; score?: number; bytes?: number }[] } };
    assert.deepEqual(am.auto.candidates.map((c) => c.method), ['lowbit', 'sparse', 'lora', 'sparse-lora', 'topk-retrain']);
    const best = Math.max(...am.auto.candidates.map((c) => c.score ?? -Infinity));
    assert.equal(am.auto.candidates.find((c) => c.method === am.auto.chosen)?.score, best);
    assert.equal(am.method, am.auto.chosen);
    assert.equal(readFileSync(path.join(dir, 'auto.ndiff')).length, am.auto.candidates.find((c) => c.method === am.auto.chosen)?.bytes);
    assert.match(a.text, new RegExp(`auto: chose ${am.auto.chosen} \\(\\d of 5 candidates had a result\\)`));
    assert.match(a.text, new RegExp(`, auto: ${am.auto.chosen}, trained in`));
    // An operator the executor does not implement (SQUARED_DIFFERENCE, 99): refused by name, nothing written.
    const odd = buildTflite({ tensors: [{ name: 'x', shape: [1, 2], type: T.FLOAT32 }, { name: 'y', shape: [1, 2], type: T.FLOAT32 }], buffers: [], operators: [{ op: 99, inputs: [0, 0], outputs: [1] }], inputs: [0], outputs: [1] });
    writeFileSync(path.join(dir, 'odd.tflite'), odd);
    const refused = await run('train', '--model-id', 'odd', '--base', path.join(dir, 'odd.tflite'), '--teacher', path.join(dir, 'odd.tflite'), '--train', path.join(dir, 'train'), '--out', path.join(dir, 'odd.ndiff'));
    assert.notEqual(refused.code, 0);
    assert.match(refused.text, /operator builtin 99 \(operator 0, producing "y"\) is not implemented by the trainer's LiteRT executor/);
    assert.ok(!existsSync(path.join(dir, 'odd.ndiff')), 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the executor\'s gradients match finite differences (convolution, depthwise, dense, and the float16 kernel through DEQUANTIZE)', once, () => {
  const program = new TfliteProgram(cnn(1), { source: 'cnn.tflite' });
  try {
    const x = tf.tensor(images(4, 11), [4, 8, 8, 3]);
    const weights = tf.tensor(Float32Array.from([0.3, -1.2, 0.7]), [1, 3]);
    const loss = () => tf.tidy(() => tf.sum(tf.mul(tf.log(program.run({ image: x }).probs), weights)) as tf.Scalar);
    const vars = program.variables.map((v) => v.variable);
    const { grads } = tf.variableGrads(loss, vars);
    const r = seededRandom(5);
    let checked = 0;
    for (const v of program.variables) {
      if (!/kernel/.test(v.name)) continue;
      const g = grads[v.variable.name].dataSync();
      const base = v.variable.dataSync().slice() as Float32Array;
      for (let k = 0; k < 3; k++) {
        const i = Math.floor(r() * base.length);
        const eps = 1e-2;
        const at = (delta: number) => {
          const w = base.slice();
          w[i] += delta;
          v.variable.assign(tf.tensor(w, v.variable.shape));
          return loss().dataSync()[0];
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        v.variable.assign(tf.tensor(base, v.variable.shape));
        assert.ok(Math.abs(numeric - g[i]) <= 2e-2 * Math.max(1, Math.abs(numeric)), `${v.name}[${i}]: analytic ${g[i]}, numeric ${numeric}`);
        checked++;
      }
    }
    assert.equal(checked, 9);
    x.dispose();
    weights.dispose();
    for (const g of Object.values(grads)) g.dispose();
  } finally {
    program.dispose();
  }
});

test('docs/guides/litert.md\'s diff and train commands run as written, on stand-in models', once, async () => {
  const { main } = await import('../cli/ndiff.ts');
  const { saveNpy } = await import('../src/io/npy/files.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-litert-docs-'));
  try {
    // The guide's own model: MediaPipe's selfie segmentation, and a v2 of it made here.
    const { fineTuneLike } = await import('../bench/tflite-corpus.ts');
    const require = createRequire(import.meta.url);
    const v1 = new Uint8Array(readFileSync(path.join(path.dirname(require.resolve('@mediapipe/selfie_segmentation/package.json')), 'selfie_segmentation.tflite')));
    writeFileSync(path.join(dir, 'selfie-v1.tflite'), v1);
    writeFileSync(path.join(dir, 'selfie-v2.tflite'), fineTuneLike(v1, 0.05));
    const r = seededRandom(8);
    saveNpy(path.join(dir, 'frames', 'x.npy'), Float32Array.from({ length: 6 * 256 * 256 * 3 }, () => r()), [6, 256, 256, 3]);
    const text = readFileSync(path.join(import.meta.dirname, '..', 'docs', 'guides', 'litert.md'), 'utf8');
    const block = /```sh\n([\s\S]*?)```/.exec(text)?.[1] ?? '';
    for (const command of ['diff', 'train']) {
      const line = block.split('\n').find((l) => l.startsWith(`ndiff ${command} `));
      assert.ok(line, `litert.md shows ndiff ${command}`);
      const argv = line.replace(/#.*$/, '').split(/\s+/).filter(Boolean).slice(1).map((a) => (/\.tflite$|\.ndiff$|\/$/.test(a) ? path.join(dir, a) : a));
      const err: string[] = [];
      const code = await main([...argv, ...(command === 'train' ? ['--epochs', '1', '--tune', 'off'] : []), '-q'], { out: () => {}, err: (l) => err.push(l), progress: () => {} });
      assert.equal(code, 0, `ndiff ${argv.join(' ')}: ${err.join('\n')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff diff --eval on .tflite files: base + payload measured against the target on inputs, run by the LiteRT executor', once, async () => {
  const { main } = await import('../cli/ndiff.ts');
  const { saveNpy } = await import('../src/io/npy/files.ts');
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-tflite-eval-'));
  try {
    writeFileSync(path.join(dir, 'v1.tflite'), cnn(1));
    writeFileSync(path.join(dir, 'v2.tflite'), cnn(7, 0.6));
    saveNpy(path.join(dir, 'eval', 'image.npy'), images(40, 12), [40, 8, 8, 3]);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: () => {} };
    let json: Record<string, unknown> | undefined;
    const code = await main(['diff', '--model-id', 'cnn', '--base', path.join(dir, 'v1.tflite'), '--target', path.join(dir, 'v2.tflite'), '--budget', 'all', '--eval', path.join(dir, 'eval'), '--out', path.join(dir, 'p.ndiff')], { ...io, result: (d: unknown) => (json = d as Record<string, unknown>) });
    assert.equal(code, 0, lines.join('\n'));
    // Every change, exactly: base + payload is the target, so it agrees with it on every input.
    const ev = json?.eval as { examples: number; patched: { agreement: number; meanAbsDiff: number }; base: { agreement: number } };
    assert.equal(ev.examples, 40);
    assert.equal(ev.patched.agreement, 1);
    assert.equal(ev.patched.meanAbsDiff, 0);
    assert.ok(ev.base.agreement < 1, `the unpatched base differs from v2 somewhere (${ev.base.agreement})`);
    assert.match(lines.join('\n'), /on 40 --eval inputs, closeness to --target: unpatched base top-1 agreement [\d.]+%.*base \+ payload top-1 agreement 100.00%/);
    // --calibrate: lowbit's variants and top-k (--method auto) measured on the inputs by the
    // LiteRT executor, the closest to v2 written; --eval measures what was written.
    json = undefined;
    const progress: string[] = [];
    const calibrated = await main(['diff', '--model-id', 'cnn', '--base', path.join(dir, 'v1.tflite'), '--target', path.join(dir, 'v2.tflite'), '--budget', '30%', '--method', 'auto', '--calibrate', path.join(dir, 'eval'), '--eval', path.join(dir, 'eval'), '--out', path.join(dir, 'c.ndiff')], { ...io, progress: (l: string) => progress.push(l), result: (d: unknown) => (json = d as Record<string, unknown>) });
    assert.equal(calibrated, 0, lines.join('\n'));
    const cal = (json as Record<string, unknown> | undefined)?.calibration as { examples: number; chosen: string; candidates: { name: string; loss: number; bytes: number }[] };
    assert.equal(cal.examples, 40);
    assert.ok(cal.candidates.some((c) => c.name === 'top-k') && cal.candidates.some((c) => c.name.startsWith('lowbit')));
    const best = Math.min(...cal.candidates.map((c) => c.loss));
    assert.equal(cal.candidates.find((c) => c.name === cal.chosen)?.loss, best);
    assert.equal(readFileSync(path.join(dir, 'c.ndiff')).length, cal.candidates.find((c) => c.name === cal.chosen)?.bytes);
    assert.match(progress.join('\n'), /calibrating on 40 examples from .*\(LiteRT executor\)/);
    // --state is ONNX's.
    const refused = await main(['diff', '--model-id', 'cnn', '--base', path.join(dir, 'v1.tflite'), '--target', path.join(dir, 'v2.tflite'), '--budget', 'all', '--eval', path.join(dir, 'eval'), '--state', 'a:b', '--out', path.join(dir, 'q.ndiff')], io);
    assert.equal(refused, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
