/**
 * The fused element-wise kernel (src/engine/kernels/elementwise.ts, .c; issue #63): every opcode and
 * random programs over many shapes (widths that fill no vector, blocks split inside a row of
 * channels), inputs of the output's size, scalars and per-channel vectors. The SIMD kernel and its
 * JavaScript twin give the same bits, and the bits tfjs' own wasm kernels give op by op (the
 * chain the plan replaces); the float64 reference bounds both; a malformed program or an input of
 * the wrong size is refused with what was expected.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { ARITY, OP, blockLength, programError, runElementwise, runElementwiseF64, runElementwiseJs, type ElementwiseProgram, type InputKind, type OpName } from '../src/engine/kernels/elementwise.ts';
import { simdKernelSwitch, trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm } from '../src/engine/kernels/util.ts';
import { randomValues } from './helpers/kernel-tests.ts';

before(async () => {
  await initBackend('wasm');
});

/** Output shapes: one value, tails of 1-3 past a vector, rows of channels that split a block of 512. */
const SHAPES = [[1], [3], [4], [5], [7], [2, 3], [6, 5], [33], [4, 130], [3, 7, 9], [2, 600], [1031], [5, 2, 2, 257], [2, 24, 20, 16]];

/** Values with the awkward ones mixed in: zeros of both signs, 6 (Relu6's bound), NaN, infinities. */
function values(n: number, seed: number, special: boolean): Float32Array {
  const v = Float32Array.from(randomValues(n, seed), (x) => 8 * x);
  if (special) {
    const odd = [0, -0, 6, NaN, Infinity, -Infinity, 1e-30, -7];
    for (let i = 0; i < n; i += 5) v[i] = odd[(i / 5 + seed) % odd.length];
  }
  return v;
}

function inputShape(kind: InputKind, shape: number[]): number[] {
  return kind === 'full' ? shape : kind === 'scalar' ? [] : [shape[shape.length - 1]];
}

/** Bits of a float32 value (every NaN one pattern: NaN payloads are not part of the contract). */
function bits(a: ArrayLike<number>): number[] {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return Array.from(a, (v) => {
    if (Number.isNaN(v)) return -1;
    f[0] = v;
    return u[0];
  });
}

function assertSameBits(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  const [x, y] = [bits(a), bits(b)];
  const i = x.findIndex((v, j) => v !== y[j]);
  assert.ok(x.length === y.length && i < 0, `${what}: element ${i} is ${a[i]}, expected ${b[i]}`);
}

/** The program run by the kernel on the wasm backend (SIMD, or the twin when the switch is off). */
function kernel(p: ElementwiseProgram, inputs: tf.Tensor[], shape: number[]): Float32Array {
  const backend = tf.backend();
  const info = runElementwise(backend, p, inputs.map((t) => ({ dataId: t.dataId, shape: t.shape, dtype: t.dtype })), shape);
  const out = tf.engine().makeTensorFromTensorInfo(info, backend);
  try {
    return Float32Array.from(out.dataSync() as Float32Array);
  } finally {
    out.dispose();
  }
}

/** tfjs' own op for one instruction (what the fused chain replaces). */
function tfOp(op: OpName, x: tf.Tensor, y?: tf.Tensor, imm: number[] = []): tf.Tensor {
  switch (op) {
    case 'add': return tf.add(x, y as tf.Tensor);
    case 'sub': return tf.sub(x, y as tf.Tensor);
    case 'mul': return tf.mul(x, y as tf.Tensor);
    case 'div': return tf.div(x, y as tf.Tensor);
    case 'max': return tf.maximum(x, y as tf.Tensor);
    case 'min': return tf.minimum(x, y as tf.Tensor);
    case 'sqdiff': return tf.squaredDifference(x, y as tf.Tensor);
    case 'neg': return tf.neg(x);
    case 'abs': return tf.abs(x);
    case 'square': return tf.square(x);
    case 'sqrt': return tf.sqrt(x);
    case 'rsqrt': return tf.rsqrt(x);
    case 'recip': return tf.reciprocal(x);
    case 'relu': return tf.relu(x);
    case 'relu6': return tf.relu6(x);
    case 'step': return tf.step(x, imm[0]);
    case 'clip': return tf.clipByValue(x, imm[0], imm[1]);
  }
}

/** The program through tfjs ops, one kernel per instruction. */
function eager(p: ElementwiseProgram, inputs: tf.Tensor[], shape: number[]): Float32Array {
  return tf.tidy(() => {
    const regs = new Map<number, tf.Tensor>();
    inputs.forEach((t, j) => regs.set(1 + j, t));
    const firstImm = 1 + inputs.length;
    for (const ins of p.code) {
      const imm = [ins.b, ins.c].filter((k): k is number => k !== undefined && k >= firstImm && k < firstImm + p.immediates.length).map((k) => p.immediates[k - firstImm]);
      const y = ARITY[ins.op] === 2 && ins.op !== 'step' ? regs.get(ins.b as number) : undefined;
      regs.set(ins.dst, tfOp(ins.op, regs.get(ins.a) as tf.Tensor, y, imm));
    }
    // A chain of scalars and channel vectors only computes fewer values, the same in every row.
    const out = regs.get(0) as tf.Tensor;
    return Float32Array.from((out.size === shape.reduce((a, d) => a * d, 1) ? tf.reshape(out, shape) : tf.broadcastTo(out, shape)).dataSync() as Float32Array);
  });
}

/** Check one program on one shape every way; returns the kernel's output. */
function check(p: ElementwiseProgram, shape: number[], seed: number, special: boolean, what: string): Float32Array {
  assert.equal(programError(p), undefined, what);
  const n = shape.reduce((a, d) => a * d, 1);
  const arrays = p.inputs.map((k, j) => values(k === 'full' ? n : k === 'scalar' ? 1 : shape[shape.length - 1], seed * 31 + j, special));
  const tensors = arrays.map((a, j) => tf.tensor(a, inputShape(p.inputs[j], shape)));
  try {
    const simd = kernel(p, tensors, shape);
    simdKernelSwitch.enabled = false;
    const twinThroughKernel = kernel(p, tensors, shape);
    simdKernelSwitch.enabled = true;
    const twin = new Float32Array(n);
    runElementwiseJs(p, arrays, twin);
    assertSameBits(simd, twin, `${what}: SIMD vs the JavaScript twin`);
    assertSameBits(twinThroughKernel, twin, `${what}: the kernel's own fallback vs the twin`);
    assertSameBits(simd, eager(p, tensors, shape), `${what}: vs tfjs' kernels op by op`);
    const ref = new Float64Array(n);
    runElementwiseF64(p, arrays, ref);
    let scale = 0;
    for (const v of ref) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(ref[i]) || !Number.isFinite(simd[i])) continue;
      assert.ok(Math.abs(simd[i] - ref[i]) <= 1e-5 * Math.max(scale, 1), `${what}: element ${i} is ${simd[i]}, float64 ${ref[i]}`);
    }
    return simd;
  } finally {
    simdKernelSwitch.enabled = true;
    tf.dispose(tensors);
  }
}

describe('the fused element-wise kernel', () => {
  it('runs SIMD here', () => {
    assert.equal(trainKernelsUnavailable(asWasm(tf.backend())), null);
  });

  it('each opcode, on every shape, with each way an input lines up with the output: the bits of tfjs\' kernel', () => {
    const ops = Object.keys(OP) as OpName[];
    for (const op of ops) {
      for (const [s, shape] of SHAPES.entries()) {
        const kinds: InputKind[][] = ARITY[op] === 2 && op !== 'step' ? [['full', 'full'], ['full', 'scalar'], ['scalar', 'full'], ['full', 'channel'], ['channel', 'full']] : [['full']];
        for (const inputs of kinds) {
          const immediates = op === 'step' ? [0.25] : op === 'clip' ? [-0.5, 2] : [];
          const firstImm = 1 + inputs.length;
          const b = op === 'step' || op === 'clip' ? firstImm : inputs.length > 1 ? 2 : undefined;
          const p: ElementwiseProgram = { inputs, immediates, registers: 0, channels: shape[shape.length - 1], code: [{ op, dst: 0, a: 1, ...(b !== undefined ? { b } : {}), ...(op === 'clip' ? { c: firstImm + 1 } : {}) }] };
          // Square roots and divisions of awkward values are checked too: NaN where tfjs gives NaN.
          check(p, shape, 100 * ops.indexOf(op) + s, s % 2 === 0, `${op} [${inputs}] on [${shape}]`);
        }
      }
    }
  });

  it('random chains (trees over several inputs, scalars and channel vectors, registers read once or twice): the bits of tfjs\' kernels op by op', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)];
    const ops = (Object.keys(OP) as OpName[]).filter((o) => o !== 'clip');
    for (let t = 0; t < 60; t++) {
      const shape = pick(SHAPES);
      const inputs: InputKind[] = Array.from({ length: 1 + Math.floor(rnd() * 3) }, (_, j) => (j === 0 ? 'full' : pick(['full', 'scalar', 'channel'] as const)));
      const length = 2 + Math.floor(rnd() * 5);
      const firstImm = 1 + inputs.length;
      const immediates = [0.5];
      const firstReg = firstImm + immediates.length;
      const code: ElementwiseProgram['code'] = [];
      // Values available so far: inputs, then each instruction's register.
      const avail = inputs.map((_, j) => 1 + j);
      for (let k = 0; k < length; k++) {
        const op = pick(ops);
        const dst = k === length - 1 ? 0 : firstReg + k;
        const a = k > 0 && rnd() < 0.7 ? firstReg + k - 1 : pick(avail);
        const b = op === 'step' ? firstImm : ARITY[op] === 2 ? pick(avail) : undefined;
        code.push({ op, dst, a, ...(b !== undefined ? { b } : {}) });
        avail.push(dst);
      }
      const p: ElementwiseProgram = { inputs, immediates, registers: length - 1, channels: shape[shape.length - 1], code };
      check(p, shape, t, t % 3 === 0, `program ${t} (${code.map((c) => c.op).join(' ')}) over [${inputs}] on [${shape}]`);
    }
  });

  it('blocks: whole rows of channels, at least 4 values', () => {
    const p = (inputs: InputKind[], channels: number): ElementwiseProgram => ({ inputs, immediates: [], registers: 0, channels, code: [{ op: 'add', dst: 0, a: 1, b: inputs.length > 1 ? 2 : 1 }] });
    assert.equal(blockLength(p(['full'], 7), 3), 4);
    assert.equal(blockLength(p(['full'], 7), 10_000), 512);
    assert.equal(blockLength(p(['full', 'channel'], 7), 10_000) % 7, 0);
    assert.equal(blockLength(p(['full', 'channel'], 1000), 10_000), 1000);
  });

  it('a malformed program or an input of the wrong size is refused, saying what was expected', () => {
    const ok: ElementwiseProgram = { inputs: ['full', 'channel'], immediates: [], registers: 1, channels: 4, code: [{ op: 'mul', dst: 3, a: 1, b: 2 }, { op: 'relu', dst: 0, a: 3 }] };
    assert.equal(programError(ok), undefined);
    assert.match(programError({ ...ok, code: [] }) ?? '', /no instructions/);
    assert.match(programError({ ...ok, code: [{ op: 'mul', dst: 0, a: 1, b: 9 }] }) ?? '', /reads operands 1, 9 of 1\.\.3/);
    assert.match(programError({ ...ok, code: [{ op: 'relu', dst: 3, a: 1 }] }) ?? '', /the last writes the output/);
    assert.match(programError({ ...ok, code: [{ op: 'exp' as OpName, dst: 0, a: 1 }] }) ?? '', /unknown op exp/);
    const x = tf.zeros([2, 4]);
    const c = tf.zeros([3]);
    try {
      assert.throws(() => kernel(ok, [x, c], [2, 4]), /input 1 \(channel\) should hold 4 float32 values, it is \[3\] float32: rebuild the plan/);
      assert.throws(() => kernel(ok, [x], [2, 4]), /takes 2 inputs, got 1/);
    } finally {
      tf.dispose([x, c]);
    }
  });
});
