/**
 * Recurrent layers (LSTM, GRU, RNN; forward, reverse, bidirectional; batch-first `layout`),
 * unrolled over the sequence with tfjs ops so gradients flow through every step. The input
 * projection of all steps is one matrix product; each step adds the recurrent one.
 */
import * as tf from '@tensorflow/tfjs';
import { floats, int, need, str, strings, unsupported, values, type OpArgs, type OpTable } from './op.ts';

type Act = (x: tf.Tensor) => tf.Tensor;

/** The activations named by the node (ONNX defaults when absent), one list per direction. */
function activations(a: OpArgs, defaults: string[], dirs: number): Act[][] {
  const names = strings(a, 'activations') ?? [];
  const alphas = floats(a, 'activation_alpha') ?? [];
  const betas = floats(a, 'activation_beta') ?? [];
  let ai = 0;
  let bi = 0;
  const all = names.length ? names : Array.from({ length: dirs }, () => defaults).flat();
  const fns = all.map((name): Act => {
    const alpha = (d: number) => (ai < alphas.length ? alphas[ai++] : d);
    const beta = (d: number) => (bi < betas.length ? betas[bi++] : d);
    switch (name.toLowerCase()) {
      case 'sigmoid': return (x) => tf.sigmoid(x);
      case 'tanh': return (x) => tf.tanh(x);
      case 'relu': return (x) => tf.relu(x);
      case 'softsign': return (x) => tf.div(x, tf.add(1, tf.abs(x)));
      case 'softplus': return (x) => tf.softplus(x);
      case 'leakyrelu': { const al = alpha(0.01); return (x) => tf.leakyRelu(x, al); }
      case 'thresholdedrelu': { const al = alpha(1); return (x) => tf.where(tf.greater(x, al), x, tf.zerosLike(x)); }
      case 'elu': { const al = alpha(1); return (x) => tf.where(tf.greater(x, 0), x, tf.mul(al, tf.sub(tf.exp(x), 1))); }
      case 'affine': { const al = alpha(1); const be = beta(0); return (x) => tf.add(tf.mul(x, al), be); }
      case 'scaledtanh': { const al = alpha(1); const be = beta(1); return (x) => tf.mul(al, tf.tanh(tf.mul(be, x))); }
      case 'hardsigmoid': { const al = alpha(0.2); const be = beta(0.5); return (x) => tf.clipByValue(tf.add(tf.mul(al, x), be), 0, 1); }
      default: throw unsupported(a, `the recurrent activation ${JSON.stringify(name)}`);
    }
  });
  const per = fns.length / dirs;
  return Array.from({ length: dirs }, (_, d) => fns.slice(d * per, (d + 1) * per));
}

interface Common {
  x: tf.Tensor3D;
  seq: number;
  batch: number;
  hidden: number;
  dirs: number;
  reverse: boolean[];
  clip?: number;
  layout: number;
}

function common(a: OpArgs): Common {
  const layout = int(a, 'layout', 0);
  let x = need(a, 0) as tf.Tensor3D;
  if (layout === 1) x = tf.transpose(x, [1, 0, 2]);
  const direction = str(a, 'direction', 'forward');
  const dirs = direction === 'bidirectional' ? 2 : 1;
  const hidden = int(a, 'hidden_size', need(a, 2).shape[2] as number);
  const seqLens = a.inputs[4];
  if (seqLens && values(seqLens).some((n) => n !== x.shape[0])) throw unsupported(a, 'sequence_lens shorter than the sequence (padded batches)');
  const clipAt = a.node.attributes.get('clip')?.f;
  return {
    x, seq: x.shape[0], batch: x.shape[1], hidden, dirs, layout,
    reverse: direction === 'bidirectional' ? [false, true] : [direction === 'reverse'],
    ...(clipAt !== undefined ? { clip: clipAt } : {}),
  };
}

/** A state input ([dirs, batch, H], or [batch, dirs, H] batch-first) for direction `d`, zeros when absent. */
function initial(t: tf.Tensor | undefined, c: Common, d: number): tf.Tensor2D {
  if (!t) return tf.zeros([c.batch, c.hidden]);
  const s = c.layout === 1 ? tf.transpose(t, [1, 0, 2]) : t;
  return tf.squeeze(tf.slice(s, [d, 0, 0], [1, -1, -1]), [0]) as tf.Tensor2D;
}

/** Direction `d` of a [dirs, ...] weight. */
const dir = (t: tf.Tensor, d: number) => tf.squeeze(tf.slice(t, [d, ...t.shape.slice(1).map(() => 0)], [1, ...t.shape.slice(1)]), [0]);

/** The input projection of every step, [seq, batch, G], split per step. */
function projectInputs(c: Common, w: tf.Tensor, bias: tf.Tensor | undefined): tf.Tensor2D[] {
  let xw: tf.Tensor = tf.matMul(c.x.reshape([c.seq * c.batch, c.x.shape[2]]), w as tf.Tensor2D, false, true);
  if (bias) xw = tf.add(xw, bias);
  // tfjs' unstack gradient fails for a single piece (its dy is then not a list): reshape instead.
  if (c.seq === 1) return [xw as tf.Tensor2D];
  return tf.unstack(xw.reshape([c.seq, c.batch, w.shape[0]])) as tf.Tensor2D[];
}

/** The outputs from each direction's per-step states: Y [seq, dirs, batch, H] (or batch-first) and the last state. */
function outputs(c: Common, ys: tf.Tensor2D[][], lasts: tf.Tensor2D[][]): tf.Tensor[] {
  let y = tf.stack(ys.map((steps) => tf.stack(steps)), 1); // [seq, dirs, batch, H]
  if (c.layout === 1) y = tf.transpose(y, [2, 0, 1, 3]);
  return [
    y,
    ...lasts[0].map((_, k) => {
      const s = tf.stack(lasts.map((l) => l[k])); // [dirs, batch, H]
      return c.layout === 1 ? tf.transpose(s, [1, 0, 2]) : s;
    }),
  ];
}

const maybeClip = (x: tf.Tensor, c: Common) => (c.clip !== undefined ? tf.clipByValue(x, -c.clip, c.clip) : x);

function lstm(a: OpArgs): tf.Tensor[] {
  const c = common(a);
  const [W, R, B, , h0, c0, P] = [need(a, 1), need(a, 2), a.inputs[3], a.inputs[4], a.inputs[5], a.inputs[6], a.inputs[7]];
  const acts = activations(a, ['Sigmoid', 'Tanh', 'Tanh'], c.dirs);
  const coupled = int(a, 'input_forget', 0) === 1;
  const H = c.hidden;
  const ys: tf.Tensor2D[][] = [];
  const lasts: tf.Tensor2D[][] = [];
  for (let d = 0; d < c.dirs; d++) {
    const [f, g, h] = acts[d];
    const b = B ? dir(B, d) : undefined;
    const bias = b ? tf.add(tf.slice(b, [0], [4 * H]), tf.slice(b, [4 * H], [4 * H])) : undefined;
    const xs = projectInputs(c, dir(W, d), bias);
    const r = dir(R, d) as tf.Tensor2D;
    const p = P ? dir(P, d) : undefined;
    const [pi, po, pf] = p ? tf.split(p, 3) : [undefined, undefined, undefined];
    let ht = initial(h0, c, d);
    let ct = initial(c0, c, d);
    const steps: tf.Tensor2D[] = new Array(c.seq);
    for (let k = 0; k < c.seq; k++) {
      const t = c.reverse[d] ? c.seq - 1 - k : k;
      const gates = tf.add(xs[t], tf.matMul(ht, r, false, true));
      const [gi, go, gf, gc] = tf.split(gates, 4, 1);
      const i = f(maybeClip(pi ? tf.add(gi, tf.mul(pi, ct)) : gi, c));
      const fg = coupled ? tf.sub(1, i) : f(maybeClip(pf ? tf.add(gf, tf.mul(pf, ct)) : gf, c));
      ct = tf.add(tf.mul(fg, ct), tf.mul(i, g(maybeClip(gc, c)))) as tf.Tensor2D;
      const o = f(maybeClip(po ? tf.add(go, tf.mul(po, ct)) : go, c));
      ht = tf.mul(o, h(ct)) as tf.Tensor2D;
      steps[t] = ht;
    }
    ys.push(steps);
    lasts.push([ht, ct]);
  }
  return outputs(c, ys, lasts);
}

function gru(a: OpArgs): tf.Tensor[] {
  const c = common(a);
  const [W, R, B, , h0] = [need(a, 1), need(a, 2), a.inputs[3], a.inputs[4], a.inputs[5]];
  const acts = activations(a, ['Sigmoid', 'Tanh'], c.dirs);
  const beforeReset = int(a, 'linear_before_reset', 0) === 1;
  const H = c.hidden;
  const ys: tf.Tensor2D[][] = [];
  const lasts: tf.Tensor2D[][] = [];
  for (let d = 0; d < c.dirs; d++) {
    const [f, g] = acts[d];
    const b = B ? dir(B, d) : undefined;
    const xs = projectInputs(c, dir(W, d), b ? tf.slice(b, [0], [3 * H]) : undefined);
    const [rz, rr, rh] = tf.split(dir(R, d), 3) as tf.Tensor2D[];
    const [bz, br, bh] = b ? tf.split(tf.slice(b, [3 * H], [3 * H]), 3) : [tf.zeros([H]), tf.zeros([H]), tf.zeros([H])];
    let ht = initial(h0, c, d);
    const steps: tf.Tensor2D[] = new Array(c.seq);
    for (let k = 0; k < c.seq; k++) {
      const t = c.reverse[d] ? c.seq - 1 - k : k;
      const [xz, xr, xh] = tf.split(xs[t], 3, 1);
      const z = f(maybeClip(tf.add(tf.add(xz, tf.matMul(ht, rz, false, true)), bz), c));
      const r = f(maybeClip(tf.add(tf.add(xr, tf.matMul(ht, rr, false, true)), br), c));
      const recurrent = beforeReset
        ? tf.mul(r, tf.add(tf.matMul(ht, rh, false, true), bh))
        : tf.add(tf.matMul(tf.mul(r, ht) as tf.Tensor2D, rh, false, true), bh);
      const hh = g(maybeClip(tf.add(xh, recurrent), c));
      ht = tf.add(tf.mul(tf.sub(1, z), hh), tf.mul(z, ht)) as tf.Tensor2D;
      steps[t] = ht;
    }
    ys.push(steps);
    lasts.push([ht]);
  }
  return outputs(c, ys, lasts);
}

function rnn(a: OpArgs): tf.Tensor[] {
  const c = common(a);
  const [W, R, B, , h0] = [need(a, 1), need(a, 2), a.inputs[3], a.inputs[4], a.inputs[5]];
  const acts = activations(a, ['Tanh'], c.dirs);
  const H = c.hidden;
  const ys: tf.Tensor2D[][] = [];
  const lasts: tf.Tensor2D[][] = [];
  for (let d = 0; d < c.dirs; d++) {
    const [f] = acts[d];
    const b = B ? dir(B, d) : undefined;
    const xs = projectInputs(c, dir(W, d), b ? tf.add(tf.slice(b, [0], [H]), tf.slice(b, [H], [H])) : undefined);
    const r = dir(R, d) as tf.Tensor2D;
    let ht = initial(h0, c, d);
    const steps: tf.Tensor2D[] = new Array(c.seq);
    for (let k = 0; k < c.seq; k++) {
      const t = c.reverse[d] ? c.seq - 1 - k : k;
      ht = f(maybeClip(tf.add(xs[t], tf.matMul(ht, r, false, true)), c)) as tf.Tensor2D;
      steps[t] = ht;
    }
    ys.push(steps);
    lasts.push([ht]);
  }
  return outputs(c, ys, lasts);
}

/** Recurrent operators. */
export const recurrent: OpTable = {
  LSTM: lstm,
  GRU: gru,
  RNN: rnn,
};
