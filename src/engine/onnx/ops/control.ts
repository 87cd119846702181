/**
 * Control flow, resolved while the graph is traced: `If` runs the branch its condition picks
 * (the condition is read when the graph runs, so each run traces the branch it takes), `Loop`
 * is unrolled for the trip count and condition known at each run. Gradients flow through the
 * branch taken and through every unrolled iteration.
 */
import * as tf from '@tensorflow/tfjs';
import { need, unsupported, type OpArgs, type OpTable } from './op.ts';

/** Iterations past which a `Loop` is refused rather than unrolled (a trainer cannot hold more). */
export const MAX_LOOP_ITERATIONS = 100_000;

function ifOp(a: OpArgs): tf.Tensor[] {
  const cond = need(a, 0).dataSync()[0];
  const branch = a.node.attributes.get(cond ? 'then_branch' : 'else_branch')?.g;
  if (!branch) throw unsupported(a, `the ${cond ? 'then' : 'else'} branch is missing`);
  return a.runGraph(branch, []);
}

function loop(a: OpArgs): tf.Tensor[] {
  const body = a.node.attributes.get('body')?.g;
  if (!body) throw unsupported(a, 'the body graph is missing');
  const trips = a.inputs[0] ? Number(a.inputs[0].dataSync()[0]) : Infinity;
  let cond = a.inputs[1] ? Boolean(a.inputs[1].dataSync()[0]) : true;
  let carried = a.inputs.slice(2).map((t, i) => {
    if (!t) throw unsupported(a, `loop-carried input ${i + 2} is missing`);
    return t;
  });
  const scans: tf.Tensor[][] = [];
  const nScan = body.outputs.length - 1 - carried.length;
  for (let k = 0; k < nScan; k++) scans.push([]);
  let iter = 0;
  for (; iter < trips && cond; iter++) {
    if (iter >= MAX_LOOP_ITERATIONS) throw unsupported(a, `a loop of more than ${MAX_LOOP_ITERATIONS} iterations`);
    const outs = a.runGraph(body, [tf.scalar(iter, 'int32'), tf.scalar(cond, 'bool'), ...carried]);
    cond = Boolean(outs[0].dataSync()[0]);
    carried = outs.slice(1, 1 + carried.length);
    outs.slice(1 + carried.length).forEach((t, k) => scans[k].push(t));
  }
  return [
    ...carried,
    ...scans.map((list, k) => {
      if (list.length) return tf.stack(list);
      const info = body.outputs[1 + carried.length + k];
      const dims = (info.shape ?? []).map((d) => (typeof d === 'number' && d >= 0 ? d : 0));
      return tf.zeros([0, ...dims]);
    }),
  ];
}

/** Control-flow operators. */
export const control: OpTable = {
  If: ifOp,
  Loop: loop,
};
