/**
 * Training toward a teacher reads each output for what it is (issue 62, findings 1 and 7): a
 * segmentation-like model whose output is a sigmoid map (LiteRT `LOGISTIC`, ONNX `Sigmoid`) is
 * matched by closeness (mean squared error, chosen by mean |output - teacher|), never as class
 * logits; a result further from the teacher than the unpatched base on --eval is refused
 * (NoImprovementError, exit 10) and nothing is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/engine/backend.ts';
import { trainTfliteDiff } from '../src/train/tflite/train-tflite.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { NoImprovementError } from '../src/core/errors.ts';
import { agreementDropBeyondNoise, refuseWorseOnEval } from '../src/train/eval-gate.ts';
import { seededRandom } from '../src/core/random.ts';
import { writeNpy } from '../src/io/npy/npy.ts';
import { main } from '../cli/ndiff.ts';
import { segOnnx, segTflite, SIDE } from './helpers/segmentation.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process map-output training cases are') };

await initBackend('cpu');

/**
 * Images around `centre` (± `spread`). Base mask sigmoid(x), teacher sigmoid(2x): on training
 * images near 2 the diff learns w·2 + b ≈ 4, moving the bias too; on evaluation images near 0,
 * where the base already equals the teacher, that bias takes the update further from it.
 */
function images(n: number, centre: number, spread: number, seed: number, shape: number[]): { inputs: Record<string, { values: Float32Array; shape: number[] }> } {
  const r = seededRandom(seed);
  return { inputs: { image: { values: Float32Array.from({ length: n * SIDE * SIDE }, () => centre + spread * (2 * r() - 1)), shape } } };
}

const common = { method: 'full' as const, budgetBytes: 0, epochs: 4, tune: 'off' as const, seed: 1, batchSize: 16, learningRate: 0.05, trainable: 'all' as const, header: { modelId: 'seg', sequence: 1 } };

for (const format of ['tflite', 'onnx'] as const) {
  const shape = format === 'tflite' ? [SIDE, SIDE, 1] : [1, SIDE, SIDE];
  const train = (bytes: Uint8Array, teacher: Uint8Array, options: Record<string, unknown>) => format === 'tflite'
    ? trainTfliteDiff(bytes, images(96, 2, 0.3, 5, shape), { ...common, teacher, ...options })
    : trainOnnxDiff(bytes, images(96, 2, 0.3, 5, shape), { ...common, teacher, ...options });
  const [v1, v2] = format === 'tflite' ? [segTflite(1, 0), segTflite(2, 0)] : [segOnnx(1, 0), segOnnx(2, 0)];

  test(`${format}: a sigmoid map output is matched by closeness (mse, mean |output - teacher|), not read as class logits`, once, async () => {
    const res = await train(v1, v2, { eval: images(32, 2, 0.3, 7, shape), allowWorse: false });
    const t = res.teacher as NonNullable<typeof res.teacher>;
    assert.equal(t.loss, 'mse', 'a sigmoid map trains by the squared error of its values');
    assert.equal(t.metric, 'mae', 'and is chosen by mean |output - teacher|');
    const te = res.teacherEval as NonNullable<typeof res.teacherEval>;
    assert.ok(te.after.meanAbsDiff < te.before.meanAbsDiff, `closer to the teacher: ${te.before.meanAbsDiff} -> ${te.after.meanAbsDiff}`);
    assert.ok(Number.isNaN(te.after.agreement), `no top-1 agreement for a map: ${te.after.agreement}`);
  });

  test(`${format}: an update further from the teacher than the base on --eval is refused (nothing to ship)`, once, async () => {
    await assert.rejects(train(v1, v2, { eval: images(32, 0, 0.05, 7, shape), allowWorse: false }), (e: unknown) => e instanceof NoImprovementError && /on the evaluation examples/.test(e.message) && /mean \|output − teacher\|/.test(e.message));
  });
}

function npy(dir: string, name: string, values: Float32Array, shape: number[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, name), writeNpy(values, shape));
}

test('ndiff train --base seg.tflite --teacher: exit 10 and no payload for an update further from v2 on --eval; no "top-1 agreement" printed for a map', once, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ndiff-seg-'));
  try {
    writeFileSync(path.join(dir, 'v1.tflite'), segTflite(1, 0));
    writeFileSync(path.join(dir, 'v2.tflite'), segTflite(2, 0));
    const shape = [SIDE, SIDE, 1];
    npy(path.join(dir, 'train'), 'image.npy', images(96, 2, 0.3, 5, shape).inputs.image.values, [96, ...shape]);
    npy(path.join(dir, 'near'), 'image.npy', images(32, 2, 0.3, 7, shape).inputs.image.values, [32, ...shape]);
    npy(path.join(dir, 'far'), 'image.npy', images(32, 0, 0.05, 7, shape).inputs.image.values, [32, ...shape]);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const args = (evalDir: string, out: string) => ['train', '--model-id', 'seg', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, evalDir), '--method', 'full', '--epochs', '4', '--tune', 'off', '--lr', '0.05', '--batch-size', '16', '--backend', 'cpu', '--out', path.join(dir, out)];
    assert.equal(await main(args('near', 'near.ndiff'), io), 0, lines.join('\n'));
    const text = lines.join('\n');
    assert.ok(existsSync(path.join(dir, 'near.ndiff')));
    assert.doesNotMatch(text, /top-1 agreement|agreement with the teacher/, 'a map has no classes to agree on');
    assert.match(text, /eval, mean \|output - teacher\| [\d.]+ -> [\d.]+/);
    t.diagnostic(lines.filter((l) => /^(validation|eval)[, ]/.test(l)).join(' | '));
    lines.length = 0;
    assert.equal(await main(args('far', 'far.ndiff'), io), 10, lines.join('\n'));
    t.diagnostic(lines.filter((l) => /less close to the teacher/.test(l)).join(' | '));
    assert.ok(!existsSync(path.join(dir, 'far.ndiff')), 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff train --teacher whose output differs from the base\'s (a mask of 2 channels for 1): refused before training, naming the output, for .tflite and .onnx', once, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ndiff-seg-'));
  try {
    for (const [ext, v1, v2, shape] of [['tflite', segTflite(1, 0), segTflite(2, 0, 2), [SIDE, SIDE, 1]], ['onnx', segOnnx(1, 0), segOnnx(2, 0, 2), [1, SIDE, SIDE]]] as const) {
      writeFileSync(path.join(dir, `v1.${ext}`), v1);
      writeFileSync(path.join(dir, `v2.${ext}`), v2);
      npy(path.join(dir, `train-${ext}`), 'image.npy', images(32, 2, 0.3, 5, [...shape]).inputs.image.values, [32, ...shape]);
      const lines: string[] = [];
      const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
      const code = await main(['train', '--model-id', 'seg', '--base', path.join(dir, `v1.${ext}`), '--teacher', path.join(dir, `v2.${ext}`), '--train', path.join(dir, `train-${ext}`), '--method', 'full', '--epochs', '1', '--tune', 'off', '--backend', 'cpu', '--out', path.join(dir, `${ext}.ndiff`)], io);
      const text = lines.join('\n');
      assert.equal(code, 2, text);
      assert.match(text, /has another output than the base \(output 0 .*-> .*2.*\)/);
      assert.match(text, /ndiff diff --base BASE --target .* --budget all/);
      assert.doesNotMatch(text, /epoch 1/, 'refused before training');
      assert.ok(!existsSync(path.join(dir, `${ext}.ndiff`)), 'nothing written');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff train holding out a handful of validation examples warns (on stderr) and says how to pass more', once, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ndiff-seg-'));
  try {
    writeFileSync(path.join(dir, 'v1.tflite'), segTflite(1, 0));
    writeFileSync(path.join(dir, 'v2.tflite'), segTflite(2, 0));
    const shape = [SIDE, SIDE, 1];
    npy(path.join(dir, 'train'), 'image.npy', images(64, 2, 0.3, 5, shape).inputs.image.values, [64, ...shape]);
    const errors: string[] = [];
    const io = { out: () => {}, err: (l: string) => errors.push(l), progress: () => {} };
    const code = await main(['train', '--model-id', 'seg', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--method', 'full', '--epochs', '1', '--tune', 'off', '--lr', '0.05', '--backend', 'cpu', '--out', path.join(dir, 'p.ndiff')], io);
    assert.equal(code, 0, errors.join('\n'));
    const warning = errors.find((l) => /^warning: only \d+ validation example\(s\)/.test(l));
    assert.ok(warning, errors.join('\n'));
    assert.match(warning, /--val DATA/);
    assert.match(warning, /of 64 held out now/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the --eval refusal of a classifier\'s agreement: a drop beyond one standard error, not a decision flipping among hundreds', once, () => {
  assert.equal(agreementDropBeyondNoise(0.9967, 0.9933, 300), false, 'one of 300 decisions flipped: noise');
  assert.equal(agreementDropBeyondNoise(0.95, 0.80, 300), true, '45 of 300 flipped: further from the teacher');
  assert.equal(agreementDropBeyondNoise(0.8, 0.9, 300), false, 'closer');
  // Three of 300 where one was: beyond one standard error, not two; refused only when the outputs came no closer either.
  assert.equal(agreementDropBeyondNoise(0.9967, 0.99, 300), true);
  assert.equal(agreementDropBeyondNoise(0.9967, 0.99, 300, 2), false);
  const result = (meanAbsDiffAfter: number) => ({ method: 'lora' as const, teacher: { metric: 'top1', eval: { examples: 300, agreementBefore: 0.9967, agreementAfter: 0.99, meanAbsDiffBefore: 0.0021, meanAbsDiffAfter } } }) as unknown as Parameters<typeof refuseWorseOnEval>[0];
  assert.doesNotThrow(() => refuseWorseOnEval(result(0.0017), false), 'outputs closer: noise');
  assert.throws(() => refuseWorseOnEval(result(0.0025), false), NoImprovementError);
  assert.throws(() => refuseWorseOnEval({ ...result(0.0017), teacher: { ...result(0.0017).teacher!, eval: { ...result(0.0017).teacher!.eval!, agreementAfter: 0.95 } } } as Parameters<typeof refuseWorseOnEval>[0], false), NoImprovementError, 'far beyond noise whatever the outputs');
});

test('a map output is held out at random for validation, not stratified on its brightest pixel (which held out nothing when every frame was its own stratum), and no training accuracy is shown for it', once, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ndiff-seg-split-'));
  try {
    writeFileSync(path.join(dir, 'v1.tflite'), segTflite(1, 0));
    writeFileSync(path.join(dir, 'v2.tflite'), segTflite(2, 0));
    // 16 frames, each brightest at another pixel: as a class, each frame its own.
    const shape = [SIDE, SIDE, 1];
    const n = SIDE * SIDE;
    const values = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let p = 0; p < n; p++) values[i * n + p] = p === i ? 2 : 0.1 * ((i + p) % 3);
    npy(path.join(dir, 'frames'), 'image.npy', values, [n, ...shape]);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const code = await main(['train', '--model-id', 'seg', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'frames'), '--method', 'full', '--epochs', '2', '--tune', 'off', '--batch-size', '8', '--backend', 'cpu', '--val-fraction', '0.25', '--allow-worse', '--out', path.join(dir, 'p.ndiff')], io);
    const text = lines.join('\n');
    assert.equal(code, 0, text);
    assert.match(text, /12 training examples, 4 held out for validation/, `a quarter of 16 held out:\n${text}`);
    assert.doesNotMatch(text, /validation n\/a/, text);
    assert.doesNotMatch(text, /epoch \d+\/\d+ loss [\d.]+ acc/, 'no class accuracy for a map');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
