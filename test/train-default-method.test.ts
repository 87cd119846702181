/**
 * `ndiff train` without `--method`: toward a teacher it trains distilled lowbit, which the
 * measured tables put first at 1, 5 and 10% (docs/BENCHMARKS.md), in every format (TF.js layers
 * models, ONNX and LiteRT files, a teacher of another structure too); with labels alone it trains
 * sparse, as the label tables measured. The progress and `--json` (`methodDefault`) say which and
 * why; an explicit `--method` is kept and not remarked on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { decodePayload } from '../src/core/format.ts';
import { seededRandom } from '../src/core/random.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { initBackend } from '../src/engine/backend.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';
import { cnn, images } from './helpers/onnx-models.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process default-method training cases are') };

interface Run {
  code: number;
  text: string;
  doc: { method?: string; methodDefault?: { method: string; why: string }; structural?: unknown };
}

async function train(...argv: string[]): Promise<Run> {
  const { main } = await import('../cli/ndiff.ts');
  const lines: string[] = [];
  let doc: Run['doc'] = {};
  const code = await main(['train', '--epochs', '1', '--tune', 'off', '--seed', '3', '--backend', 'cpu', ...argv], {
    out: (l) => lines.push(l), err: (l) => lines.push(l), progress: (l) => lines.push(l), result: (d: unknown) => (doc = d as Run['doc']),
  });
  return { code, text: lines.join('\n'), doc };
}

/** The method the payload's header names (a structural payload: its learned part's). */
function payloadMethod(file: string): string {
  const bytes = new Uint8Array(readFileSync(file));
  const doc = readMsgpack(bytes) as Record<string, unknown>;
  return decodePayload(doc.nd === 7 ? (doc.pv as Uint8Array) : bytes).header.method;
}

const LOWBIT_DEFAULT = /method lowbit \(the default: toward a teacher, distilled lowbit measured closest in docs\/BENCHMARKS\.md .*\); pass --method to choose another/;

test('TF.js layers model: --teacher without --method trains lowbit and says why; labels alone train sparse; --method is kept', { ...once, timeout: 600_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-default-'));
  try {
    await initBackend('cpu');
    const model = (seed: number) => {
      const m = tf.sequential();
      m.add(tf.layers.dense({ inputShape: [6], units: 8, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed }) }));
      m.add(tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }) }));
      return m;
    };
    const v1 = model(1);
    await v1.save(fileSystemIO(path.join(dir, 'v1')));
    // v2: v1 with every weight moved a little (a fine-tune's change).
    const r = seededRandom(9);
    v1.setWeights(v1.getWeights().map((w) => tf.tidy(() => w.add(tf.tensor(Float32Array.from({ length: w.size }, () => 0.3 * (r() - 0.5)), w.shape)))));
    await v1.save(fileSystemIO(path.join(dir, 'v2')));
    v1.dispose();
    mkdirSync(path.join(dir, 'data'));
    saveNpy(path.join(dir, 'data', 'x.npy'), Float32Array.from({ length: 120 * 6 }, () => r() * 2 - 1), [120, 6]);
    const common = ['--model-id', 'tiny', '--base', path.join(dir, 'v1'), '--train', path.join(dir, 'data'), '--budget', '1000'];

    const t = await train(...common, '--teacher', path.join(dir, 'v2'), '--out', path.join(dir, 't.ndiff'));
    assert.equal(t.code, 0, t.text);
    assert.match(t.text, LOWBIT_DEFAULT);
    assert.equal(t.doc.method, 'lowbit');
    assert.equal(t.doc.methodDefault?.method, 'lowbit');
    assert.match(t.doc.methodDefault?.why ?? '', /keyword teacher chains/);
    assert.equal(payloadMethod(path.join(dir, 't.ndiff')), 'lowbit');

    const s = await train(...common, '--teacher', path.join(dir, 'v2'), '--method', 'sparse', '--out', path.join(dir, 's.ndiff'));
    assert.equal(s.code, 0, s.text);
    assert.doesNotMatch(s.text, /the default/);
    assert.equal(s.doc.method, 'sparse');
    assert.equal(s.doc.methodDefault, undefined);

    // Labels, no teacher: sparse, as the label tables measured.
    saveNpy(path.join(dir, 'data', 'y.npy'), Int32Array.from({ length: 120 }, (_, i) => i % 3), [120]);
    const l = await train(...common, '--out', path.join(dir, 'l.ndiff'));
    assert.equal(l.code, 0, l.text);
    assert.match(l.text, /method sparse \(the default: with labels and no teacher/);
    assert.equal(l.doc.method, 'sparse');
    assert.equal(l.doc.methodDefault?.method, 'sparse');
    assert.equal(payloadMethod(path.join(dir, 'l.ndiff')), 'sparse');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ONNX: --teacher without --method trains lowbit, for a teacher of the same structure and one with a tensor and a node added', { ...once, timeout: 600_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-default-onnx-'));
  try {
    writeFileSync(path.join(dir, 'v1.onnx'), cnn());
    writeFileSync(path.join(dir, 'v2.onnx'), cnn(0.5, 60));
    writeFileSync(path.join(dir, 'v2-head.onnx'), cnn(0.5, 60, 0, [1.5, 0.5, 1]));
    mkdirSync(path.join(dir, 'train'));
    saveNpy(path.join(dir, 'train', 'x.npy'), images(120, 1).inputs.x.values, [120, 1, 8, 8]);
    const common = ['--model-id', 'cnn', '--base', path.join(dir, 'v1.onnx'), '--train', path.join(dir, 'train'), '--budget', '400'];
    const same = await train(...common, '--teacher', path.join(dir, 'v2.onnx'), '--out', path.join(dir, 'same.ndiff'));
    assert.equal(same.code, 0, same.text);
    assert.match(same.text, LOWBIT_DEFAULT);
    assert.equal(same.doc.method, 'lowbit');
    assert.equal(same.doc.methodDefault?.method, 'lowbit');
    assert.equal(payloadMethod(path.join(dir, 'same.ndiff')), 'lowbit');
    // Another structure: lowbit learns on the model the structural payload rebuilds first.
    const other = await train(...common, '--teacher', path.join(dir, 'v2-head.onnx'), '--out', path.join(dir, 'other.ndiff'));
    assert.equal(other.code, 0, other.text);
    assert.match(other.text, LOWBIT_DEFAULT);
    assert.ok(other.doc.structural, 'a structural payload');
    assert.equal(other.doc.method, 'lowbit');
    assert.equal(payloadMethod(path.join(dir, 'other.ndiff')), 'lowbit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** LiteRT: x [1, 8] -> FULLY_CONNECTED -> SOFTMAX; `moved` shifts every weight (v2 of v1). */
function mlp(moved: number): Uint8Array {
  const r = seededRandom(1);
  const m = seededRandom(7);
  const draw = (n: number, scale: number) => Array.from({ length: n }, () => (r() - 0.5) * scale + (m() - 0.5) * moved * scale);
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 8], type: T.FLOAT32 },
      { name: 'dense/kernel', shape: [3, 8], type: T.FLOAT32, buffer: 1 },
      { name: 'dense/bias', shape: [3], type: T.FLOAT32, buffer: 2 },
      { name: 'logits', shape: [1, 3], type: T.FLOAT32 },
      { name: 'probs', shape: [1, 3], type: T.FLOAT32 },
    ],
    buffers: [f32Bytes(draw(24, 1)), f32Bytes(draw(3, 0.2))],
    operators: [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: { type: 8, fields: [{ u8: 0 }] } }, { op: 25, inputs: [3], outputs: [4], options: { type: 9, fields: [{ f32: 1 }] } }],
    inputs: [0],
    outputs: [4],
  });
}

test('LiteRT: --teacher without --method trains lowbit', { ...once, timeout: 600_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-default-tflite-'));
  try {
    writeFileSync(path.join(dir, 'v1.tflite'), mlp(0));
    writeFileSync(path.join(dir, 'v2.tflite'), mlp(0.6));
    const r = seededRandom(5);
    mkdirSync(path.join(dir, 'train'));
    saveNpy(path.join(dir, 'train', 'x.npy'), Float32Array.from({ length: 120 * 8 }, () => r() * 2 - 1), [120, 8]);
    const run = await train('--model-id', 'mlp', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--budget', '200', '--out', path.join(dir, 'p.ndiff'));
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, LOWBIT_DEFAULT);
    assert.equal(run.doc.method, 'lowbit');
    assert.equal(run.doc.methodDefault?.method, 'lowbit');
    assert.equal(payloadMethod(path.join(dir, 'p.ndiff')), 'lowbit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a teacher whose weights the base\'s names and shapes do not find keeps sparse, saying why; an explicit --method is kept as it is', once, async () => {
  const { settleDefaultMethod, defaultMethod } = await import('../src/train/front-settings.ts');
  const base = [{ name: 'dense/kernel', shape: [8, 3] }, { name: 'dense/bias', shape: [3] }, { name: 'frame', shape: [4], patchable: false }];
  const args = (over: object) => ({ method: 'lowbit', methodDefault: defaultMethod(true), ...over }) as unknown as Parameters<typeof settleDefaultMethod>[0];
  const lines: string[] = [];
  const same = settleDefaultMethod(args({}), base, [{ name: 'dense/kernel', shape: [8, 3] }, { name: 'dense/bias', shape: [3] }], (l) => lines.push(l));
  assert.equal(same.method, 'lowbit', 'a read-only tensor of the base need not be in the teacher');
  const renamed = settleDefaultMethod(args({}), base, [{ name: 'StatefulPartitionedCall/dense/MatMul', shape: [8, 3] }, { name: 'dense/bias', shape: [3] }], (l) => lines.push(l));
  assert.equal(renamed.method, 'sparse');
  assert.equal(renamed.methodDefault?.method, 'sparse');
  assert.match(lines[1], /method sparse \(the default: lowbit, which measured closest toward a teacher, compresses teacher − base, but the teacher has no weight dense\/kernel/);
  const reshaped = settleDefaultMethod(args({}), base, [{ name: 'dense/kernel', shape: [3, 8] }, { name: 'dense/bias', shape: [3] }], (l) => lines.push(l));
  assert.match(reshaped.methodDefault?.why ?? '', /holds dense\/kernel in another shape/);
  const explicit = settleDefaultMethod(args({ methodDefault: undefined, method: 'lowbit' }), base, [], (l) => lines.push(l));
  assert.equal(explicit.method, 'lowbit');
  assert.equal(lines.length, 3, 'an explicit --method says nothing');
});

test('TF.js layers model: a teacher with a layer added (a structural payload) trains lowbit by default too', { ...once, timeout: 600_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-default-structural-'));
  try {
    await initBackend('cpu');
    const r = seededRandom(11);
    const draw = (shape: number[], scale: number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * scale), shape);
    const build = (extra: boolean) => {
      const m = tf.sequential();
      m.add(tf.layers.dense({ inputShape: [8], units: 16, activation: 'relu', name: 'd1' }));
      if (extra) m.add(tf.layers.dense({ units: 16, activation: 'relu', name: 'extra' }));
      m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }));
      return m;
    };
    const [k1, b1, k2, b2] = [draw([8, 16], 1), draw([16], 0.2), draw([16, 3], 1), draw([3], 0.2)];
    const base = build(false);
    base.setWeights([k1, b1, k2, b2]);
    const teacher = build(true);
    teacher.setWeights([k1.add(draw([8, 16], 0.8)), b1, tf.eye(16).add(draw([16, 16], 0.3)), tf.fill([16], 0.05), k2.add(draw([16, 3], 0.8)), b2]);
    await base.save(fileSystemIO(path.join(dir, 'v1')));
    await teacher.save(fileSystemIO(path.join(dir, 'v2')));
    base.dispose();
    teacher.dispose();
    mkdirSync(path.join(dir, 'train'));
    saveNpy(path.join(dir, 'train', 'x.npy'), Float32Array.from({ length: 120 * 8 }, () => r() * 2 - 1), [120, 8]);
    const run = await train('--model-id', 'tiny', '--base', path.join(dir, 'v1'), '--teacher', path.join(dir, 'v2'), '--train', path.join(dir, 'train'), '--budget', '25%', '--out', path.join(dir, 'p.ndiff'));
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, LOWBIT_DEFAULT);
    assert.match(run.text, /the teacher's structure differs from the base's/);
    assert.ok(run.doc.structural, 'a structural payload');
    assert.equal(run.doc.method, 'lowbit');
    assert.equal(payloadMethod(path.join(dir, 'p.ndiff')), 'lowbit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
