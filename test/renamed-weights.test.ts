/**
 * A graph exported again under other names (issue 31, item 5: Silero v5.0 -> v5.1 kept its 32
 * float tensors bit for bit but renamed the nodes holding them): the diff refuses it as a
 * graph-only change, "the graph changed; the weights did not: ship the new model file", counting
 * what differs, instead of naming a renamed constant as an added tensor. The weights are paired by
 * content (dtype, shape, bits) whatever their names, in the one interface check every diff path
 * runs; an architecture change that also renames is still refused as one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { access } from 'node:fs/promises';
import { getHasher } from '../src/core/hasher.ts';
import { ModelMismatchError } from '../src/core/errors.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { compareInterfaces, type WeightsByContent } from '../src/diff/interface.ts';
import { openTfjsModelDir, writeModelDir } from '../src/io/tfjs/index.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';
import { DT, f32le, graph, model, node, tensor } from './helpers/onnx-build.ts';

const hasher = await getHasher();
const values = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * k + 1) / 5));

/** ONNX: weights in Constant nodes (as Silero keeps them), named by `names`; an INT64 shape constant; `extra` adds a node. */
function onnxModel(names: [string, string, string], extra: boolean, scale = 1): OnnxWeightStore {
  const constant = (out: string, dims: number[], data: number[], type: number = DT.FLOAT) =>
    node({ opType: 'Constant', outputs: [out], attributes: [{ name: 'value', type: 4, t: tensor({ dims, dataType: type, ...(type === DT.INT64 ? { int64Data: data } : { raw: f32le(data.map((x) => Math.fround(x * scale))) }) }) }] });
  const nodes = [
    constant(names[0], [4, 3], values(12, 1)),
    constant(names[1], [3], values(3, 2)),
    constant(names[2], [3], values(3, 3)),
    constant(extra ? 'shape_v2' : 'shape_v1', [2], [1, -1], DT.INT64),
    node({ opType: 'MatMul', inputs: ['x', names[0]], outputs: ['h'] }),
    node({ opType: 'Add', inputs: ['h', names[1]], outputs: ['y'] }),
    ...(extra ? [node({ opType: 'Reshape', inputs: ['y', 'shape_v2'], outputs: ['z'] })] : []),
  ];
  return new OnnxWeightStore(model(graph({ name: 'main', nodes })), { source: 'm.onnx' });
}

function refusal(run: () => unknown): ModelMismatchError {
  try {
    run();
  } catch (e) {
    if (e instanceof ModelMismatchError) return e;
    throw e;
  }
  assert.fail('expected a ModelMismatchError');
}

test('ONNX: weights renamed, graph changed: refused as graph-only by every diff path, with counts', () => {
  const base = onnxModel(['enc/w', 'enc/b', 'enc/c'], false);
  const target = onnxModel(['Constant_7_output_0', 'Constant_8_output_0', 'Constant_9_output_0'], true);
  const d = compareInterfaces(base, target);
  assert.ok(d.added.includes('Constant_7_output_0') && d.removed.includes('enc/w'), 'the names do not line up');
  assert.deepEqual(d.weightsByContent, { baseWeights: 3, targetWeights: 3, matched: 3, renamed: 3, same: true } satisfies WeightsByContent);
  for (const run of [() => exactDiff(hasher, base, target), () => topkDiff(hasher, base, target, { budgetBytes: 1000 }), () => diffOnnxModels(hasher, base, target, { budgetBytes: 1000 })]) {
    const e = refusal(run);
    assert.match(e.message, /^the graph changed; the weights did not \(all 3 weight tensors of the target are the base's, bit for bit in dtype, shape and values, 3 of them under other names\): ship the new model file\. What differs is the graph: \d+ tensor\(s\) added/);
    assert.match(e.message, /and the model's frame$/);
    assert.equal((e.details as { graphOnly: boolean }).graphOnly, true);
    assert.deepEqual((e.details as { weightsByContent: WeightsByContent }).weightsByContent, d.weightsByContent);
  }
});

test('ONNX: renamed and retrained, or renamed with one weight changed: not graph-only, and counted', () => {
  const base = onnxModel(['enc/w', 'enc/b', 'enc/c'], false);
  // Every weight changed too: nothing pairs, the plain architecture refusal.
  const retrained = refusal(() => exactDiff(hasher, base, onnxModel(['a', 'b', 'c'], true, 2)));
  assert.match(retrained.message, /^the target's tensors are not the base's: /);
  assert.doesNotMatch(retrained.message, /weights did not|bit for bit/);
  assert.equal((retrained.details as { graphOnly: boolean }).graphOnly, false);
  // Two of three weights kept under other names, one changed: said, and not graph-only.
  const changedOne = new OnnxWeightStore(model(graph({
    name: 'main',
    nodes: [
      node({ opType: 'Constant', outputs: ['a'], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [4, 3], dataType: DT.FLOAT, raw: f32le(values(12, 1)) }) }] }),
      node({ opType: 'Constant', outputs: ['b'], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [3], dataType: DT.FLOAT, raw: f32le(values(3, 2)) }) }] }),
      node({ opType: 'Constant', outputs: ['c'], attributes: [{ name: 'value', type: 4, t: tensor({ dims: [3], dataType: DT.FLOAT, raw: f32le(values(3, 7)) }) }] }),
    ],
  })), { source: 'm.onnx' });
  const e = refusal(() => exactDiff(hasher, base, changedOne));
  assert.match(e.message, /\(2 of the target's 3 weight tensors are the base's bit for bit, 2 of them under other names; the rest changed or are new\)/);
  assert.equal((e.details as { graphOnly: boolean }).graphOnly, false);
});

test('TF.js: a graph model converted again (weights renamed, a node and an int32 constant added): graph-only, in the library and the CLI', async () => {
  const dir = await tempDir('nd-renamed-');
  const topology = (nodes: string[]) => ({ node: nodes.map((name, i) => ({ name, op: i ? 'Relu' : 'Placeholder' })) });
  const w = Float32Array.from(values(24, 1));
  const b = Float32Array.from(values(6, 2));
  await writeModelDir(join(dir, 'v1'), { format: 'graph-model', generatedBy: 'tests', modelTopology: topology(['x', 'dense/kernel', 'dense/bias']) }, { 'dense/kernel': { shape: [4, 6], data: w }, 'dense/bias': { shape: [6], data: b } });
  await writeModelDir(join(dir, 'v2'), { format: 'graph-model', generatedBy: 'tests', modelTopology: topology(['x', 'StatefulPartitionedCall/w', 'StatefulPartitionedCall/b', 'reshape']) }, {
    'StatefulPartitionedCall/w': { shape: [4, 6], data: w },
    'StatefulPartitionedCall/b': { shape: [6], data: b },
    'reshape/shape': { shape: [2], data: Int32Array.of(1, -1) },
  });
  const [v1, v2] = await Promise.all(['v1', 'v2'].map((v) => openTfjsModelDir(join(dir, v))));
  const e = refusal(() => exactDiff(hasher, v1, v2));
  assert.match(e.message, /^the graph changed; the weights did not \(all 2 weight tensors of the target are the base's, bit for bit in dtype, shape and values, 2 of them under other names\): ship the new model file\. What differs is the graph: 3 tensor\(s\) added \("StatefulPartitionedCall\/b", "StatefulPartitionedCall\/w", "reshape\/shape"\), 2 removed \("dense\/bias", "dense\/kernel"\), counting the renamed weights, and the model's frame$/);
  // No value payload joins them; the CLI writes a structural payload instead (format v7, FORMAT.md
  // §17): the weights are copied under their new names from the base's bytes, nothing re-sent.
  const lines: string[] = [];
  const errs: string[] = [];
  const out = join(dir, 'p.ndiff');
  assert.equal(await main(['diff', '--base', join(dir, 'v1'), '--target', join(dir, 'v2'), '--budget', 'all', '--model-id', 'pose', '--out', out, '--json'], { out: (l) => lines.push(l), err: (l) => errs.push(l), progress: () => {} }), 0, errs.join('\n'));
  const doc = JSON.parse(lines.join('\n')) as { structural: boolean; renamed: { from: string; to: string }[]; added: string[]; graphChanged: boolean; bytes: number };
  assert.equal(doc.structural, true);
  assert.deepEqual(doc.renamed, [{ from: 'dense/bias', to: 'StatefulPartitionedCall/b' }, { from: 'dense/kernel', to: 'StatefulPartitionedCall/w' }]);
  assert.equal(doc.graphChanged, true);
  await access(out);
});
