/**
 * `ndiff train --teacher` with a teacher of another structure (a tensor and a node added): the
 * trainer learns the kept weights' diff on the file a structural payload rebuilds first, the new
 * tensor comes whole from the teacher, and the payload (format v7) rebuilds on a device to the
 * model the trainer measured, which agrees with the teacher more than the base does; for ONNX
 * and LiteRT files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rebuildModelBytes } from '../src/apply/rebuild.ts';
import { decodePayload } from '../src/core/format.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { seededRandom } from '../src/core/random.ts';
import { buildTflite, f32Bytes, T } from './helpers/tflite-build.ts';
import { cnn, images } from './helpers/onnx-models.ts';

const ONNX = { kind: 'onnx' as const, open: (b: Uint8Array) => new OnnxWeightStore(b) };

test('a teacher with a tensor and a node added: a structural payload whose learned part trains the kept weights only, rebuilt by a device to --model-out', { timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-'));
  try {
    const v1 = cnn();
    const v2 = cnn(0.5, 60, 0, [1.5, 0.5, 1]);
    writeFileSync(path.join(dir, 'v1.onnx'), v1);
    writeFileSync(path.join(dir, 'v2.onnx'), v2);
    for (const [name, seed, n] of [['train', 1, 160], ['eval', 2, 80]] as const) {
      mkdirSync(path.join(dir, name));
      const d = images(n, seed);
      saveNpy(path.join(dir, name, 'x.npy'), d.inputs.x.values, [n, 1, 8, 8]);
    }
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const [payloadFile, modelOut, metricsOut] = ['p.ndiff', 'v2-out.onnx', 'metrics.json'].map((f) => path.join(dir, f));
    const code = await main(['train', '--base', path.join(dir, 'v1.onnx'), '--teacher', path.join(dir, 'v2.onnx'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '400', '--epochs', '3', '--tune', 'off', '--seed', '3', '--model-id', 'cnn', '--out', payloadFile, '--model-out', modelOut, '--metrics-out', metricsOut],
    { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    assert.equal(code, 0, err.join('\n'));
    const text = out.join('\n');
    assert.match(text, /the teacher's structure differs from the base's .*a structural payload \(format v7\)/);
    assert.match(text, /tensors added: head\.s;/);
    const payload = new Uint8Array(readFileSync(payloadFile));
    const doc = readMsgpack(payload) as Record<string, unknown>;
    assert.equal(doc.nd, 7);
    // The learned part patches kept weights only: head.s is the teacher's, whole.
    const inner = decodePayload(doc.pv as Uint8Array);
    assert.ok(inner.patches.length > 0);
    assert.ok(inner.patches.every((p) => p.name !== 'head.s'), inner.patches.map((p) => p.name).join(', '));
    // A device rebuilds v1 into --model-out's bytes exactly.
    const res = await rebuildModelBytes(v1.slice(), payload, ONNX);
    assert.equal(res.status, 'applied');
    assert.ok(Buffer.from(res.bytes).equals(readFileSync(modelOut)), 'the device ends at --model-out');
    const hasher = await getHasher();
    const reached = new OnnxWeightStore(res.bytes);
    assert.equal(fingerprintStore(hasher, reached).fingerprint, res.header.targetFingerprint);
    assert.deepEqual([...reached.values('head.s')], [1.5, 0.5, 1], 'the new tensor came whole from the teacher');
    const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
    assert.equal(metrics.bytes, payload.length);
    assert.deepEqual(metrics.structural.added, ['head.s']);
    assert.equal(metrics.structural.graphChanged, true);
    const te = metrics.teacherEval;
    t.diagnostic(`${payload.length} bytes (rebuild ${metrics.structural.rebuildBytes}, learned ${metrics.structural.valueBytes}); agreement with the teacher ${te.before.agreement} -> ${te.after.agreement}, mean abs diff ${te.before.meanAbsDiff.toFixed(4)} -> ${te.after.meanAbsDiff.toFixed(4)}`);
    assert.ok(te.after.agreement >= te.before.agreement, `agreement with the teacher ${te.before.agreement} -> ${te.after.agreement}`);
    assert.ok(te.after.meanAbsDiff < te.before.meanAbsDiff, `mean |output - teacher| ${te.before.meanAbsDiff} -> ${te.after.meanAbsDiff}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** LiteRT: x [1, 8] -> FULLY_CONNECTED (dense) -> [FULLY_CONNECTED (head), the teacher only] -> SOFTMAX. */
function mlp(moved: number, head: boolean): Uint8Array {
  const r = seededRandom(1);
  const m = seededRandom(7);
  const draw = (n: number, scale: number) => Array.from({ length: n }, () => (r() - 0.5) * scale + (m() - 0.5) * moved * scale);
  const fc = { type: 8, fields: [{ u8: 0 }] };
  const headKernel = Array.from({ length: 9 }, (_, i) => (i % 4 === 0 ? 1.2 : 0.3 * Math.sin(i)));
  return buildTflite({
    tensors: [
      { name: 'x', shape: [1, 8], type: T.FLOAT32 }, // 0
      { name: 'dense/kernel', shape: [3, 8], type: T.FLOAT32, buffer: 1 }, // 1
      { name: 'dense/bias', shape: [3], type: T.FLOAT32, buffer: 2 }, // 2
      { name: 'logits', shape: [1, 3], type: T.FLOAT32 }, // 3
      { name: 'probs', shape: [1, 3], type: T.FLOAT32 }, // 4
      ...(head ? [{ name: 'head/kernel', shape: [3, 3], type: T.FLOAT32, buffer: 3 }, { name: 'head/out', shape: [1, 3], type: T.FLOAT32 }] : []), // 5, 6
    ],
    buffers: [f32Bytes(draw(24, 1)), f32Bytes(draw(3, 0.2)), ...(head ? [f32Bytes(headKernel)] : [])],
    operators: head
      ? [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: fc }, { op: 9, inputs: [3, 5, -1], outputs: [6], options: fc }, { op: 25, inputs: [6], outputs: [4], options: { type: 9, fields: [{ f32: 1 }] } }]
      : [{ op: 9, inputs: [0, 1, 2], outputs: [3], options: fc }, { op: 25, inputs: [3], outputs: [4], options: { type: 9, fields: [{ f32: 1 }] } }],
    inputs: [0],
    outputs: [4],
  });
}

test('LiteRT: a teacher with a layer added ships as a structural payload; the kept weights learn, the new layer comes whole', { timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-train-structural-tflite-'));
  try {
    const v1 = mlp(0, false);
    const v2 = mlp(0.6, true);
    writeFileSync(path.join(dir, 'v1.tflite'), v1);
    writeFileSync(path.join(dir, 'v2.tflite'), v2);
    const r = seededRandom(5);
    for (const [name, n] of [['train', 160], ['eval', 60]] as const) {
      mkdirSync(path.join(dir, name));
      saveNpy(path.join(dir, name, 'x.npy'), Float32Array.from({ length: n * 8 }, () => r() * 2 - 1), [n, 8]);
    }
    const out: string[] = [];
    const err: string[] = [];
    const { main } = await import('../cli/ndiff.ts');
    const [payloadFile, modelOut, metricsOut] = ['p.ndiff', 'v2-out.tflite', 'metrics.json'].map((f) => path.join(dir, f));
    const code = await main(['train', '--base', path.join(dir, 'v1.tflite'), '--teacher', path.join(dir, 'v2.tflite'), '--train', path.join(dir, 'train'), '--eval', path.join(dir, 'eval'),
      '--method', 'sparse', '--budget', '200', '--epochs', '3', '--tune', 'off', '--seed', '3', '--model-id', 'mlp', '--out', payloadFile, '--model-out', modelOut, '--metrics-out', metricsOut],
    { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
    assert.equal(code, 0, err.join('\n'));
    assert.match(out.join('\n'), /tensors added: head\/kernel;/);
    const payload = new Uint8Array(readFileSync(payloadFile));
    const res = await rebuildModelBytes(v1.slice(), payload, { kind: 'tflite', open: (b: Uint8Array) => new TfliteWeightStore(b) });
    assert.ok(Buffer.from(res.bytes).equals(readFileSync(modelOut)), 'the device ends at --model-out');
    const inner = decodePayload((readMsgpack(payload) as Record<string, unknown>).pv as Uint8Array);
    assert.ok(inner.patches.length > 0 && inner.patches.every((p) => p.name.startsWith('dense/')), inner.patches.map((p) => p.name).join(', '));
    const metrics = JSON.parse(readFileSync(metricsOut, 'utf8'));
    assert.deepEqual(metrics.structural.added, ['head/kernel']);
    const te = metrics.teacherEval;
    t.diagnostic(`${payload.length} bytes (rebuild ${metrics.structural.rebuildBytes}, learned ${metrics.structural.valueBytes}); agreement with the teacher ${te.before.agreement} -> ${te.after.agreement}, mean abs diff ${te.before.meanAbsDiff.toFixed(4)} -> ${te.after.meanAbsDiff.toFixed(4)}`);
    assert.ok(te.after.meanAbsDiff < te.before.meanAbsDiff, `mean |output - teacher| ${te.before.meanAbsDiff} -> ${te.after.meanAbsDiff}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
