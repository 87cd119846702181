/**
 * Shapes a TF.js graph model derives from its constants, bounded as those of `.tflite` and `.onnx`
 * files are (train-shape-bounds.test.ts): a `model.json` whose Pad, Tile, BroadcastTo, Fill,
 * OneHot, Range or ResizeBilinear asks for 10^10 elements is refused with a ModelFormatError before
 * tfjs allocates (src/engine/tfjs-graph/shape-guard.ts), when the program runs and when training
 * probes the graph; the same operators with small constants run as before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ModelFormatError } from '../src/core/errors.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { writeModelDir } from '../src/io/tfjs/model-dir.ts';
import { TfjsGraphProgram } from '../src/engine/tfjs-graph/graph-program.ts';
import { trainTfjsGraphDiff } from '../src/train/tfjs-graph/train-graph.ts';

await tf.setBackend('cpu');

const root = mkdtempSync(path.join(tmpdir(), 'nd-graph-shape-bounds-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const dims = (shape: number[]) => ({ dim: shape.map((d) => ({ size: String(d) })) });
const T = { T: { type: 'DT_FLOAT' } };
type Constant = { shape: number[]; data: Float32Array | Int32Array };
const f32 = (shape: number[], ...v: number[]): Constant => ({ shape, data: Float32Array.from(v) });
const i32 = (shape: number[], ...v: number[]): Constant => ({ shape, data: Int32Array.from(v) });

let folders = 0;
/**
 * A graph-model folder: x [-1, 1] float, h = x + w (w the one trained weight), then `nodes`
 * (reading h and `constants`), the last of them the output.
 */
async function graphWith(nodes: Record<string, unknown>[], constants: Record<string, Constant>): Promise<string> {
  const dir = path.join(root, `g${folders++}`);
  const all: Record<string, Constant> = { w: f32([1], 0.5), ...constants };
  const constNodes = Object.entries(all).map(([name, c]) => {
    const type = c.data instanceof Int32Array ? 'DT_INT32' : 'DT_FLOAT';
    return { name, op: 'Const', attr: { value: { tensor: { dtype: type, tensorShape: dims(c.shape) } }, dtype: { type } } };
  });
  const last = String(nodes[nodes.length - 1].name);
  await writeModelDir(dir, {
    format: 'graph-model',
    generatedBy: '2.15.0',
    convertedBy: 'TensorFlow.js Converter v4.22.0',
    modelTopology: {
      node: [
        { name: 'x', op: 'Placeholder', attr: { shape: { shape: dims([-1, 1]) }, dtype: { type: 'DT_FLOAT' } } },
        ...constNodes,
        { name: 'h', op: 'AddV2', input: ['x', 'w'], attr: T },
        ...nodes,
        { name: 'Identity', op: 'Identity', input: [last], attr: T },
      ],
      library: {},
      versions: { producer: 1482 },
    },
    signature: {
      inputs: { 'x:0': { name: 'x:0', dtype: 'DT_FLOAT', tensorShape: dims([-1, 1]) } },
      outputs: { 'Identity:0': { name: 'Identity:0', dtype: 'DT_FLOAT' } },
    },
    weightsManifest: [{ paths: [], weights: Object.entries(all).map(([name, c]) => ({ name, shape: c.shape, dtype: c.data instanceof Int32Array ? 'int32' : 'float32' })) }],
  }, new Map(Object.entries(all)));
  return dir;
}

async function programOf(dir: string): Promise<{ program: TfjsGraphProgram; model: tf.GraphModel }> {
  const model = await tf.loadGraphModel(fileSystemIO(dir));
  return { program: new TfjsGraphProgram(model, await openTfjsModelDir(dir), { source: 'tiny/model.json' }), model };
}

const refusal = (what: RegExp) => (e: unknown) =>
  e instanceof ModelFormatError && what.test(e.message) && /at most 16777216 elements per example/.test(e.message) && /Nothing was allocated/.test(e.message);

const big = 100_000;
/** Each hostile graph: its nodes, its constants, and the refusal expected. */
const cases: [string, Record<string, unknown>[], Record<string, Constant>, RegExp][] = [
  ['Pad', [{ name: 'y', op: 'Pad', input: ['h', 'p'], attr: { ...T, Tpaddings: { type: 'DT_INT32' } } }], { p: i32([2, 2], big, big, big, big) }, /tiny\/model\.json: a Pad or PadV2 node \(tfjs kernel PadV2\) asks for a tensor of shape \[200001, 200001\]/],
  ['Tile', [{ name: 'y', op: 'Tile', input: ['h', 'm'], attr: { ...T, Tmultiples: { type: 'DT_INT32' } } }], { m: i32([2], big, big) }, /a Tile or BroadcastTo node \(tfjs kernel Tile\) asks for a tensor of shape \[100000, 100000\]/],
  ['BroadcastTo', [{ name: 'y', op: 'BroadcastTo', input: ['h', 's'], attr: { ...T, Tidx: { type: 'DT_INT32' } } }], { s: i32([2], big, big) }, /a Tile or BroadcastTo node \(tfjs kernel Tile\) asks for a tensor of shape \[100000, 100000\]/],
  ['Fill', [{ name: 'y', op: 'Fill', input: ['d', 'v'], attr: { ...T, index_type: { type: 'DT_INT32' } } }], { d: i32([2], big, big), v: f32([], 1) }, /a Fill node \(tfjs kernel Fill\) asks for a tensor of shape \[100000, 100000\]/],
  ['OneHot', [{ name: 'y', op: 'OneHot', input: ['i', 'n', 'on', 'off'], attr: { ...T, TI: { type: 'DT_INT32' }, axis: { i: '-1' } } }], { i: i32([3], 0, 1, 2), n: i32([], 2e9), on: f32([], 1), off: f32([], 0) }, /a OneHot node \(tfjs kernel OneHot\) asks for a tensor of shape \[3, 2000000000\]/],
  ['Range', [{ name: 'y', op: 'Range', input: ['a', 'b', 'c'], attr: { Tidx: { type: 'DT_FLOAT' } } }], { a: f32([], 0), b: f32([], 1e10), c: f32([], 1) }, /a Range node \(tfjs kernel Range\) asks for a tensor of shape \[10000000000\]/],
  ['ResizeBilinear', [
    { name: 'img', op: 'Reshape', input: ['h', 'r'], attr: { ...T, Tshape: { type: 'DT_INT32' } } },
    { name: 'y', op: 'ResizeBilinear', input: ['img', 'z'], attr: { ...T, align_corners: { b: false }, half_pixel_centers: { b: false } } },
  ], { r: i32([4], 1, 1, 1, 1), z: i32([2], big, big) }, /a ResizeBilinear node \(tfjs kernel ResizeBilinear\) asks for a tensor of shape \[1, 100000, 100000, 1\]/],
];

test('a graph model whose Pad, Tile, BroadcastTo, Fill, OneHot, Range or ResizeBilinear asks for billions of elements is refused before tfjs allocates', async () => {
  for (const [label, nodes, constants, why] of cases) {
    const { program, model } = await programOf(await graphWith(nodes, constants));
    const x = tf.tensor([[1]]);
    try {
      assert.throws(() => tf.tidy(() => program.run({ x })), refusal(why), label);
    } finally {
      x.dispose();
      program.dispose();
      model.dispose();
    }
    assert.ok(!Object.prototype.hasOwnProperty.call(tf.engine(), 'runKernel'), 'the engine is left as it was');
  }
});

test('training refuses such a graph before its first epoch (the gradient probe runs it bounded too)', async () => {
  const [, nodes, constants, why] = cases[1];
  const dir = await graphWith(nodes, constants);
  const model = await tf.loadGraphModel(fileSystemIO(dir));
  let epochs = 0;
  await assert.rejects(
    trainTfjsGraphDiff(model, await openTfjsModelDir(dir), { inputs: { x: { values: new Float32Array(8), shape: [1] } }, labels: new Int32Array(8) }, { method: 'sparse', budgetBytes: 4000, epochs: 1, tune: 'off', onEpoch: () => epochs++, source: 'tiny/model.json' }),
    refusal(why),
  );
  assert.equal(epochs, 0);
  model.dispose();
});

test('the same operators with small constants run as before', async () => {
  const small: [string, Record<string, unknown>[], Record<string, Constant>, number[]][] = [
    ['Pad', cases[0][1], { p: i32([2, 2], 1, 1, 2, 2) }, [3, 5]],
    ['Tile', cases[1][1], { m: i32([2], 4, 3) }, [4, 3]],
    ['BroadcastTo', cases[2][1], { s: i32([2], 2, 6) }, [2, 6]],
    ['Fill', cases[3][1], { d: i32([2], 3, 3), v: f32([], 1) }, [3, 3]],
    ['OneHot', cases[4][1], { i: i32([3], 0, 1, 2), n: i32([], 4), on: f32([], 1), off: f32([], 0) }, [3, 4]],
    ['Range', cases[5][1], { a: f32([], 0), b: f32([], 10), c: f32([], 2) }, [5]],
    ['ResizeBilinear', cases[6][1], { r: i32([4], 1, 1, 1, 1), z: i32([2], 8, 8) }, [1, 8, 8, 1]],
  ];
  for (const [label, nodes, constants, shape] of small) {
    const { program, model } = await programOf(await graphWith(nodes, constants));
    const x = tf.tensor([[1]]);
    try {
      assert.deepEqual(tf.tidy(() => program.run({ x }).Identity.shape), shape, label);
    } finally {
      x.dispose();
      program.dispose();
      model.dispose();
    }
  }
});
