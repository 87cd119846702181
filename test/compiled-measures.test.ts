/**
 * Passes repeated over the same inputs outside training run as compiled forward plans
 * (src/engine/compiled/forward.ts) and give what the eager passes give, to the bit: the calibration
 * measure's passes (one per candidate measured; a layers model's and an ONNX program's), the
 * closeness of a payload (the base's pass, then the patched one), and the program trainer's
 * outputs on its evaluation examples before and after training (the same payload bytes with
 * the plans as without). A measure disposed leaves nothing in the backend's memory.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ForwardPlans, forwardSwitch } from '../src/engine/compiled/forward.ts';
import { calibrationMeasure } from '../src/train/calibrate.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { onnxCalibration, onnxPayloadCloseness } from '../src/train/onnx/payload-closeness.ts';
import { trainOnnxDiff } from '../src/train/onnx/train-onnx.ts';
import { OnnxProgram } from '../src/engine/onnx/executor.ts';
import { ProgramTrainingModel } from '../src/engine/program/training-model.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { getHasher } from '../src/core/hasher.ts';
import { cnn, images } from './helpers/onnx-models.ts';

before(async () => {
  await initBackend('wasm');
});

/** `f` with every forward pass eager, then compiled: both results, and how many passes each set of plans disposed meanwhile replayed. */
async function bothWays<T>(f: () => T | Promise<T>): Promise<{ eager: T; compiled: T; replayed: number[] }> {
  const proto = ForwardPlans.prototype as { dispose(): void };
  const own = Object.prototype.hasOwnProperty.call(proto, 'dispose');
  const dispose = proto.dispose;
  const replayed: number[] = [];
  try {
    forwardSwitch.compiled = false;
    const eager = await f();
    forwardSwitch.compiled = true;
    proto.dispose = function (this: ForwardPlans) {
      replayed.push(this.replayed);
      dispose.call(this);
    };
    return { eager, compiled: await f(), replayed };
  } finally {
    forwardSwitch.compiled = true;
    if (own) proto.dispose = dispose;
    else delete (proto as { dispose?: () => void }).dispose;
  }
}

/** A classifier of 6 features into 3 classes, seeded. */
function classifier(seed: number): tf.LayersModel {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: seed * 10 + s });
  const m = tf.sequential();
  m.add(tf.layers.dense({ name: 'hidden', inputShape: [6], units: 12, activation: 'tanh', kernelInitializer: init(1) }));
  m.add(tf.layers.dense({ name: 'out', units: 3, activation: 'softmax', kernelInitializer: init(2) }));
  return m;
}

/** Small deltas for every tensor of `names` (shapes from `sizes`), seeded. */
function deltas(sizes: ReadonlyMap<string, number>, seed: number): Map<string, Float32Array> {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2;
  return new Map([...sizes].map(([name, n]) => [name, Float32Array.from({ length: n }, r)]));
}

test('the calibration measure of a layers model: each candidate\'s closeness the eager passes\' to the bit, replayed from the third; disposed, nothing left in memory', async () => {
  const model = classifier(1);
  const target = classifier(2);
  const store = modelToStore(model);
  const sizes = new Map(store.list().map((t) => [t.name, t.shape.reduce((a, d) => a * d, 1)]));
  let s = 3;
  // 300 examples in batches of 128: two full batches and one of 44.
  const x = tf.tensor2d(Float32Array.from({ length: 300 * 6 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1), [300, 6]);
  const measureAll = () => {
    const measure = calibrationMeasure(model, target, store, x, 128);
    try {
      return [measure.baseCloseness, ...[1, 2, 3, 4].map((k) => measure.measureModel(deltas(sizes, k))), measure.closenessOfValues?.(deltas(sizes, 5))];
    } finally {
      measure.restore();
      measure.dispose?.();
    }
  };
  try {
    const { eager, compiled, replayed } = await bothWays(measureAll);
    assert.deepEqual(compiled, eager);
    // Six evaluations of three batches: the two full ones replay from the second evaluation on,
    // the last from the third.
    assert.deepEqual(replayed, [2 * 5 + 4]);
    const backend = tf.engine().backend;
    const held = backend.numDataIds();
    measureAll();
    assert.equal(backend.numDataIds(), held, 'the measure\'s plans freed with it');
  } finally {
    tf.dispose([x]);
    model.dispose();
    target.dispose();
  }
});

test('an ONNX calibration (programCalibration): each candidate\'s error the eager passes\' to the bit, the passes replayed', async () => {
  const v1 = cnn();
  const store = new OnnxWeightStore(v1);
  const sizes = new Map(store.list().filter((t) => t.shape.length > 0).map((t) => [t.name, t.shape.reduce((a, d) => a * d, 1)]));
  const data = images(80, 5);
  const measureAll = () => {
    const session = onnxCalibration(v1, cnn(0.5, 60), store, data, { batchSize: 32 });
    try {
      return [session.measure.baseError, ...[1, 2, 3].map((k) => session.measure.measureModel(deltas(sizes, k)))];
    } finally {
      session.dispose();
    }
  };
  const { eager, compiled, replayed } = await bothWays(measureAll);
  assert.deepEqual(compiled, eager);
  assert.equal(replayed.length, 1);
  assert.ok(replayed[0] >= 4, `passes replayed: ${replayed[0]}`);
});

test('a payload\'s closeness on data of many batches: the base\'s and the patched pass compiled, the eager passes\' measure to the bit', async () => {
  const v1 = cnn();
  const v2 = cnn(0.5, 60);
  const built = exactDiff(await getHasher(), new OnnxWeightStore(v1), new OnnxWeightStore(v2), { modelId: 'cnn', sequence: 1 });
  // 100 examples in batches of 16: six full batches and one of 4, twice.
  const { eager, compiled, replayed } = await bothWays(() => onnxPayloadCloseness(v1, v2, built.bytes, images(100, 2), { batchSize: 16 }));
  assert.deepEqual(compiled, eager);
  assert.ok(compiled.patched.agreement > compiled.base.agreement, 'the payload moves the base toward the target');
  // Full batches: two recorded, the plan checked, four replayed in the first pass; six in the second.
  assert.deepEqual(replayed, [4 + 6]);
});

test('the program trainer\'s outputs on its evaluation examples: compiled before and after training, the eager outputs\' bits and the same payload bytes', async () => {
  const model = new ProgramTrainingModel(new OnnxProgram(cnn(), { source: 'cnn.onnx' }), { count: 600, inputs: images(600, 3).inputs }, { frozen: true });
  const plans = new ForwardPlans('evaluation', () => {});
  try {
    const eager = model.rawOutputs(0, 600);
    // Batches of 256: two full and one of 88; the full ones replay on the second call.
    for (let round = 0; round < 2; round++) {
      const got = model.rawOutputs(0, 600, plans);
      assert.deepEqual(new Uint8Array(got.buffer), new Uint8Array(eager.buffer), `round ${round}`);
    }
    assert.equal(plans.replayed, 2);
  } finally {
    plans.dispose();
    model.dispose();
  }

  const run = async () => {
    const said: string[] = [];
    const r = await trainOnnxDiff(cnn(), images(64, 4), { method: 'sparse', budgetBytes: 300, epochs: 1, tune: 'off', seed: 4, batchSize: 16, learningRate: 3e-2, validation: 0.25, teacher: cnn(0.5, 60), eval: images(520, 6), allowWorse: true, refuseWorseOnEval: false, onProgress: (m) => void said.push(m), header: { modelId: 'cnn', sequence: 1 }, program: { source: 'cnn.onnx' } });
    return { bytes: r.bytes, evalOutputs: r.evalOutputs, evalOutputsBefore: r.evalOutputsBefore, said };
  };
  const { eager: e, compiled: c, replayed } = await bothWays(run);
  assert.deepEqual(c.bytes, e.bytes, 'the same payload bytes');
  assert.deepEqual(c.evalOutputs, e.evalOutputs);
  assert.deepEqual(c.evalOutputsBefore, e.evalOutputsBefore);
  assert.ok(c.said.some((m) => /^evaluation: compiled forward plan \(\d+ kernels/.test(m)), c.said.join(' | '));
  assert.ok(!e.said.some((m) => m.startsWith('evaluation: compiled')));
  // 520 evaluation examples: two batches of 256 (and one of 8); after training both replay.
  assert.ok(replayed.length >= 1 && replayed.includes(2), JSON.stringify(replayed));
});
