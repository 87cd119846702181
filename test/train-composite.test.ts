/**
 * Composite diffs (`sparse-lora`, issue #37) on MNIST digits (base 0-6, the update teaches 7-9):
 * - the payload holds composite patches (format v5) and applies through the device applier,
 *   with either hasher, to exactly the weights that were evaluated;
 * - it validates within 5 points of the better of its parts trained alone (`sparse`, `lora`) at
 *   the same budget, seed and validation split, each tuned (quick), and above `lora`. That is
 *   what holds, not "never below": measured on seeds 5, 6, 7 it is level with sparse on the mean
 *   (84.5% vs 84.5%) and below it on seed 6 (82.1% against 85.7%), so issue #37's "never below
 *   the better of its parts" is not met yet (docs/composite-diffs.md);
 * - it learns toward a teacher from unlabeled inputs;
 * - a budget share outside (0, 1) is refused;
 * - `ndiff train --method sparse-lora --sparse-share` writes a v5 payload that applies to the
 *   folder it wrote, and `ndiff report` reads its metrics.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { applyPayload } from '../src/apply/index.ts';
import { UsageError } from '../src/core/errors.ts';
import { decodePayload } from '../src/core/format.ts';
import { encodePayload } from '../src/core/encode.ts';
import { getHasher } from '../src/core/hasher.ts';
import type { MemoryWeightStore } from '../src/core/weight-store.ts';
import { initBackend } from '../src/engine/backend.ts';
import { evaluate } from '../src/train/data.ts';
import { mnistModel, mnistSplits, type MnistSplits } from '../examples/lib/mnist-task.ts';
import { modelToStore, namedVariables, setModelWeights } from '../src/engine/model-weights.ts';
import { trainDiff, type TrainDiffResult } from '../src/train/train-diff.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';
import { onceSkip } from './helpers/benchmarks.ts';

// Trains in this process only, through the readers and writers other files test on every Node
// release (whose CLI training cases run there too): checked once per CI (test/helpers/benchmarks.ts).
const once = { skip: onceSkip('the in-process composite training cases on MNIST are') };

describe('composite (sparse-lora) diffs on MNIST digits', once, () => {
  let splits: MnistSplits;
  let model: tf.LayersModel;
  let base: MemoryWeightStore;
  let budget: number;
  let composite: TrainDiffResult;
  const reset = () => setModelWeights(model, (n) => base.values(n));
  // Quick tuning (the default): each method at its own best rate, the composite's split chosen on validation.
  const common = () => ({ budgetBytes: budget, epochs: 3, seed: 5, base, tune: 'quick' as const, eval: splits.eval });

  before(async () => {
    await initBackend('wasm');
    splits = mnistSplits(2000);
    model = mnistModel(1);
    await trainDiff(model, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 4, seed: 1, tune: 'off', validation: 0 });
    base = modelToStore(model);
    budget = Math.floor(base.list().reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0) * 0.01);
    composite = await trainDiff(model, splits.updateTrain, { ...common(), method: 'sparse-lora' });
  });
  after(() => {
    for (const d of [splits.baseTrain, splits.updateTrain, splits.eval]) d.x.dispose();
  });

  test('the payload holds composite patches (format v5) and applies, with either hasher, to exactly the evaluated weights', async () => {
    assert.ok(composite.bytes.length <= budget, `${composite.bytes.length} > ${budget}`);
    const payload = decodePayload(composite.bytes);
    assert.equal(payload.header.version, 5);
    assert.equal(payload.header.meta?.method, 'sparse-lora');
    const kinds = payload.patches.map((p) => p.kind);
    assert.ok(kinds.includes('composite'), kinds.join(', '));
    for (const p of payload.patches) if (p.kind === 'composite') assert.ok(p.positions.length > 0 && p.rank >= 1);
    // The model holds what was evaluated; the device must get exactly that.
    const held = new Map(namedVariables(model).map((v) => [v.name, Float32Array.from(v.variable.dataSync() as Float32Array)]));
    for (const kind of ['wasm', 'pure'] as const) {
      const device = base.clone();
      const res = await applyPayload(device, composite.bytes, { hasher: await getHasher({ prefer: kind }) });
      assert.equal(res.status, 'applied');
      for (const [n, v] of composite.targetValues) {
        assert.deepEqual(device.values(n), v, `${kind} ${n}`);
        assert.deepEqual(device.values(n), held.get(n), `${kind} ${n}: the model's weights`);
      }
      const fresh = mnistModel(9);
      setModelWeights(fresh, (n) => device.values(n));
      const e = evaluate(fresh, splits.eval);
      fresh.dispose();
      assert.equal(e.accuracy, composite.accuracyAfter);
    }
    // A payload whose composite patch reaches another target is undone: the device keeps the base bit for bit.
    const c = payload.patches.find((p) => p.kind === 'composite');
    assert.ok(c && c.kind === 'composite' && c.sparseScale !== undefined);
    const step = c.sparseScale;
    c.values[0] = Math.fround(c.values[0] + (c.values[0] > 0 ? -step : step));
    const device = base.clone();
    const before = Float32Array.from(device.values(c.name));
    await assert.rejects(applyPayload(device, encodePayload(payload)), (e: unknown) => (e as { code?: string }).code === 'ND_TARGET_MISMATCH');
    assert.deepEqual(device.values(c.name), before);
    assert.ok(composite.accuracyAfter! > composite.accuracyBefore!, `learns the update: ${composite.accuracyBefore} -> ${composite.accuracyAfter}`);
  });

  test('validates within 5 points of the better of its parts trained alone at the same budget, and above lora', async (t) => {
    const alone: Record<string, TrainDiffResult> = {};
    for (const method of ['sparse', 'lora'] as const) {
      reset();
      alone[method] = await trainDiff(model, splits.updateTrain, { ...common(), method });
    }
    reset();
    const v = (r: TrainDiffResult) => r.validation!.accuracy;
    t.diagnostic(`validation at 1% (${budget} bytes): sparse ${v(alone.sparse)}, lora ${v(alone.lora)}, sparse-lora ${v(composite)} (held out: ${alone.sparse.accuracyAfter}, ${alone.lora.accuracyAfter}, ${composite.accuracyAfter})`);
    assert.equal(composite.validation!.examples, alone.sparse.validation!.examples, 'the same validation split');
    assert.ok(v(composite) >= Math.max(v(alone.sparse), v(alone.lora)) - 0.05, `sparse-lora ${v(composite)} more than 5 points below max(sparse ${v(alone.sparse)}, lora ${v(alone.lora)})`);
    assert.ok(v(composite) > v(alone.lora), `sparse-lora ${v(composite)} not above lora ${v(alone.lora)}`);
  });

  test('learns toward a teacher from unlabeled inputs', async () => {
    reset();
    const teacher = mnistModel(1);
    setModelWeights(teacher, (n) => base.values(n));
    await trainDiff(teacher, splits.updateTrain, { method: 'full', budgetBytes: 0, epochs: 3, seed: 3, tune: 'off', validation: 0, base: modelToStore(teacher) });
    const r = await trainDiff(model, { x: splits.updateTrain.x }, { ...common(), tune: 'off', method: 'sparse-lora', teacher, eval: { x: splits.eval.x } });
    reset();
    teacher.dispose();
    assert.equal(r.teacher?.labels, false);
    const e = r.teacher!.eval!;
    assert.ok(e.agreementAfter > e.agreementBefore + 0.05, `agreement with the teacher ${e.agreementBefore} -> ${e.agreementAfter}`);
    assert.equal(decodePayload(r.bytes).header.version, 5);
    const device = base.clone();
    await applyPayload(device, r.bytes);
    for (const [n, v] of r.targetValues) assert.deepEqual(device.values(n), v, n);
  });

  test('a sparse share outside (0, 1) is refused before training', async () => {
    for (const sparseShare of [0, 1, Number.NaN]) {
      await assert.rejects(trainDiff(model, splits.updateTrain, { ...common(), tune: 'off', method: 'sparse-lora', sparseShare }), (e: unknown) => e instanceof UsageError && /sparseShare/.test(e.message));
    }
  });

  test('ndiff train --method sparse-lora --sparse-share 0.25 writes a v5 payload and its metrics; --sparse-share without it is refused', async () => {
    reset();
    const dir = await tempDir();
    await model.save(fileSystemIO(join(dir, 'v1')));
    for (const [name, data] of [['train', splits.updateTrain], ['eval', splits.eval]] as const) {
      await mkdir(join(dir, name));
      saveNpy(join(dir, name, 'x.npy'), data.x.dataSync() as Float32Array, data.x.shape);
      saveNpy(join(dir, name, 'y.npy'), data.y, [data.y.length]);
    }
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), progress: (l: string) => lines.push(l) };
    const args = ['train', '--model-id', 'digits', '--base', join(dir, 'v1'), '--train', join(dir, 'train'), '--eval', join(dir, 'eval'), '--budget', '1%', '--epochs', '2', '--tune', 'off', '--out', join(dir, 'u.ndiff'), '--model-out', join(dir, 'v2'), '--metrics-out', join(dir, 'm.json')];
    assert.equal(await main([...args, '--method', 'sparse', '--sparse-share', '0.5'], io), 2, lines.join('\n'));
    assert.ok(lines.some((l) => /--sparse-share splits the budget of --method sparse-lora/.test(l)), lines.join('\n'));
    lines.length = 0;
    assert.equal(await main([...args, '--method', 'sparse-lora', '--sparse-share', '0.25'], io), 0, lines.join('\n'));
    assert.ok(lines.some((l) => /sparse-lora: rank \d+ adapters on \d+ tensors and \d+ sparse weights/.test(l)), lines.join('\n'));
    const bytes = new Uint8Array(await readFile(join(dir, 'u.ndiff')));
    assert.equal(decodePayload(bytes).header.version, 5);
    const device = await openTfjsModelDir(join(dir, 'v1'));
    await applyPayload(device, bytes);
    const written = await openTfjsModelDir(join(dir, 'v2'));
    // The folder --model-out wrote holds what the device gets, in every tensor the payload patches.
    for (const p of decodePayload(bytes).patches) assert.deepEqual(device.values(p.name), written.values(p.name), p.name);
    const metrics = JSON.parse(await readFile(join(dir, 'm.json'), 'utf8'));
    assert.equal(metrics.method, 'sparse-lora');
    assert.equal(await main(['report', join(dir, 'm.json'), '--out', join(dir, 'report'), '--json'], { out: () => {}, err: (l: string) => lines.push(l), progress: () => {} }), 0, lines.join('\n'));
  });
});
