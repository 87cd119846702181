/**
 * Each operator of a `.tflite` model run alone by the trainer's executor (src/engine/tflite) on
 * LiteRT.js's own inputs to it, beside LiteRT.js's output: the executor's agreement with the
 * runtime operator by operator, apart from the float32 rounding that grows through a deep
 * network end to end (docs/BENCHMARKS-real.md). LiteRT.js is made to give an intermediate tensor
 * by naming it as the model's first output (a copy of the file, one int32 changed).
 *
 *   node --conditions=neural-diff-source --import tsx bench/tflite-ops.ts model.tflite [FROM TO]
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { FlatBufferReader } from '../src/io/tflite/flatbuffers.ts';
import { readTfliteGraph } from '../src/io/tflite/graph.ts';
import { initBackend } from '../src/engine/backend.ts';
import { TfliteProgram } from '../src/engine/tflite/program.ts';
import { runTflite } from './litert.ts';

const [file, fromArg, toArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: bench/tflite-ops.ts model.tflite [FROM TO]');
  process.exit(2);
}
await initBackend('cpu');
const bytes = new Uint8Array(readFileSync(file));
const g = readTfliteGraph(bytes, file);
const fb = new FlatBufferReader(bytes, file);
const sub = fb.tableAt(fb.fieldVector(fb.root('TFL3'), 2, 4, 'the subgraphs') as { at: number; length: number }, 0, 'subgraph 0');
const outputs = fb.fieldVector(sub, 2, 4, 'the outputs') as { at: number; length: number };
const input = g.tensors[g.inputs[0]];
const x = Float32Array.from({ length: input.shape.reduce((a, b) => a * b, 1) }, (_, k) => 0.5 + 0.45 * Math.sin(k * 0.37));
/** LiteRT.js's value of tensor `t` on `x`. */
async function liteRt(t: number): Promise<Float32Array> {
  const copy = bytes.slice();
  new DataView(copy.buffer).setInt32(outputs.at, t, true);
  return (await runTflite(copy, [x]))[0].data;
}
const program = new TfliteProgram(bytes, { source: file });
const computed = new Set(g.operators.flatMap((o) => (o.op === 'DEQUANTIZE' ? [] : o.outputs)));
let worst = 0;
for (let k = Number(fromArg ?? 0); k < Number(toArg ?? g.operators.length); k++) {
  const op = g.operators[k];
  // DEQUANTIZE of a weight is folded by LiteRT (no tensor to read back); the model's outputs are read as such.
  if (op.op === 'DEQUANTIZE' || g.outputs.includes(op.outputs[0])) continue;
  const inputs = await Promise.all(op.inputs.map(async (i) => (i === g.inputs[0] ? tf.tensor(x, input.shape) : i >= 0 && computed.has(i) ? tf.tensor(await liteRt(i), g.tensors[i].shape) : null)));
  const ours = tf.tidy(() => program.runOperator(k, inputs)[0].dataSync() as Float32Array);
  const ref = await liteRt(op.outputs[0]);
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(ours[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  worst = Math.max(worst, d / (m || 1));
  console.log(`${k} ${op.op} [${g.tensors[op.outputs[0]].shape.join(', ')}]: max-relative ${(d / (m || 1)).toExponential(2)}`);
}
console.log(`worst operator: max-relative ${worst.toExponential(2)}`);
