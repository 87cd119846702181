/**
 * Convolutions on wasm in our SIMD kernels (src/engine/kernels/conv2d.c and .ts): Conv2D,
 * FusedConv2D (bias, ReLU, ReLU6), Conv2DBackpropFilter and Conv2DBackpropInput give their scalar
 * twins' bits on many shapes (strides, dilations, 'same', 'valid' and explicit padding, odd sizes,
 * 1x1 filters, a filter wider than its input, output channels not a multiple of 4 or 8, batches
 * not a multiple of 4, positions in several blocks), and agree within float tolerance with the paths from before
 * (simdKernelSwitch.convInWasm off: XNNPACK and the column matrix), an independent implementation;
 * convolutions of 3 taps along the width at stride 1 give the bits of the Winograd F(2, 3) or
 * F(4, 3) twin (conv2d-winograd.ts), and with it off the direct twin's.
 * The keyword model's compiled step runs its convolutions' bias adds in these kernels' epilogue
 * (src/engine/compiled/epilogue.ts) and keeps the eager step's payload bytes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import {
  conv2dFilterGradReference,
  conv2dInputGradReference,
  conv2dReference,
  convInWasmCovers,
  convLimits,
  convShapeOf,
  type ConvActivation,
  type ConvShape,
} from '../src/engine/kernels/conv2d.ts';
import { conv2dFilterGradWinogradReference, conv2dInputGradWinogradReference, conv2dWinogradReference, winogradFits, winogradRowsReference, winogradSwitch } from '../src/engine/kernels/conv2d-winograd.ts';
import { simdKernelSwitch, trainKernelsUnavailable } from '../src/engine/kernels/train-kernels-simd.ts';
import { asWasm, kernelLimits } from '../src/engine/kernels/util.ts';
import { epilogueSwitch } from '../src/engine/compiled/epilogue.ts';
import { KEYWORD_EXAMPLES, keywordEagerAndCompiled } from './helpers/keyword-steps.ts';
import { randomValues, relError } from './helpers/kernel-tests.ts';

const { minColumns, stridedInputGradient } = convLimits;

before(async () => {
  await initBackend('wasm');
  // Every shape here in the kernels, the narrow outputs' column-at-a-time paths and the strided input gradients included.
  convLimits.minColumns = 1;
  convLimits.stridedInputGradient = true;
});

after(() => {
  simdKernelSwitch.convInWasm = true;
  convLimits.minColumns = minColumns;
  convLimits.stridedInputGradient = stridedInputGradient;
});

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
interface Case { x: [number, number, number, number]; f: [number, number, number, number]; strides: [number, number]; pad: Pad; dilations?: [number, number] }

const CASES: Case[] = [
  // The keyword model's temporal convolutions (batch 3 here): 5 taps at stride 2, then 3 taps.
  { x: [3, 1, 49, 40], f: [1, 5, 40, 96], strides: [1, 2], pad: 'same' },
  { x: [3, 1, 25, 96], f: [1, 3, 96, 128], strides: [1, 1], pad: 'same' },
  { x: [3, 7, 9, 5], f: [3, 3, 5, 7], strides: [1, 1], pad: 'same' },
  { x: [2, 8, 7, 3], f: [3, 3, 3, 4], strides: [2, 2], pad: 'valid' },
  { x: [5, 5, 5, 6], f: [1, 1, 6, 9], strides: [1, 1], pad: 'valid' },
  { x: [2, 6, 6, 4], f: [1, 1, 4, 8], strides: [2, 2], pad: 'valid' },
  { x: [1, 4, 5, 3], f: [5, 5, 3, 6], strides: [1, 1], pad: 'same' },
  { x: [2, 3, 2, 2], f: [4, 3, 2, 5], strides: [2, 1], pad: 'same' },
  { x: [1, 6, 7, 2], f: [2, 3, 2, 13], strides: [2, 3], pad: 'same' },
  { x: [2, 5, 6, 3], f: [3, 2, 3, 12], strides: [1, 2], pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { x: [5, 3, 3, 1], f: [3, 3, 1, 1], strides: [1, 1], pad: 'same' },
  // 1,600 positions of few channels: the filter gradient goes over them in two blocks (conv2d.c: FILTER_BLOCK_BYTES).
  { x: [4, 20, 20, 2], f: [3, 3, 2, 4], strides: [1, 1], pad: 'same' },
  // 3 taps along the width at stride 1 (Winograd's F(2, 3) too): odd output widths, no padding or
  // all of it on the left, two rows an item, 50 input channels (across batch-mat-mul.c's blocks of 48).
  { x: [2, 1, 7, 5], f: [1, 3, 5, 6], strides: [1, 1], pad: 'valid' },
  { x: [3, 2, 6, 50], f: [1, 3, 50, 9], strides: [1, 1], pad: 'same' },
  { x: [1, 1, 5, 4], f: [1, 3, 4, 8], strides: [1, 1], pad: [[0, 0], [0, 0], [2, 0], [0, 0]] },
  { x: [3, 9, 11, 3], f: [3, 3, 3, 5], strides: [1, 1], pad: 'same', dilations: [2, 2] },
  { x: [2, 10, 9, 4], f: [2, 3, 4, 6], strides: [1, 1], pad: 'valid', dilations: [3, 2] },
];

const name = (c: Case) => `x [${c.x}] filter [${c.f}] strides [${c.strides}] pad ${JSON.stringify(c.pad)}${c.dilations ? ` dilations [${c.dilations}]` : ''}`;

/** The bits of float32 values (tells -0 from 0). */
const bits = (v: Float32Array) => Array.from(new Uint32Array(Float32Array.from(v).buffer));

function shapeOf(c: Case): ConvShape {
  return convShapeOf(tf.backend_util.computeConv2DInfo(c.x, c.f, c.strides, c.dilations ?? 1, c.pad as 'same'));
}

/** Run `fn` on wasm with the kernels on (or off), Winograd's F(2, 3) where it fits unless `direct`, and read its float32 output. */
function run(on: boolean, fn: () => tf.Tensor, direct = false): Float32Array {
  simdKernelSwitch.convInWasm = on;
  winogradSwitch.enabled = !direct;
  try {
    return tf.tidy(() => fn().dataSync() as Float32Array).slice();
  } finally {
    simdKernelSwitch.convInWasm = true;
    winogradSwitch.enabled = true;
  }
}

describe('wasm convolutions in SIMD against their scalar twins', () => {
  it('run here (WebAssembly SIMD and the backend memory are available)', () => {
    assert.equal(trainKernelsUnavailable(asWasm(tf.backend())), null);
  });

  let seed = 100;
  for (const c of CASES) {
    seed += 10;
    const s0 = seed;
    const xv = randomValues(c.x.reduce((a, b) => a * b), s0);
    const wv = randomValues(c.f.reduce((a, b) => a * b), s0 + 1);
    const s = shapeOf(c);
    const conv = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad, 'NHWC', c.dilations ?? 1);

    const ways = winogradFits(s, 'forward') ? [true, false] : [true];
    for (const direct of ways) {
      const how = ways.length > 1 ? (direct ? ' (direct)' : ' (Winograd)') : '';
      it(`Conv2D${how}, ${name(c)}`, () => {
        const want = direct || ways.length === 1 ? conv2dReference(xv, wv, null, 'linear', s) : conv2dWinogradReference(xv, wv, null, 'linear', s);
        const got = run(true, () => conv(tf.tensor(xv, c.x), tf.tensor(wv, c.f)), direct);
        assert.deepEqual(bits(got), bits(want));
        const before = run(false, () => conv(tf.tensor(xv, c.x), tf.tensor(wv, c.f)));
        assert.ok(relError(got, before, true) < 1e-5, 'differs from XNNPACK beyond float tolerance');
      });

      for (const act of ['linear', 'relu', 'relu6'] as ConvActivation[]) {
        it(`FusedConv2D${how} with a bias and ${act}, ${name(c)}`, () => {
          const bv = randomValues(c.f[3], s0 + 2).map((v) => v * 4);
          const want = direct || ways.length === 1 ? conv2dReference(xv, wv, bv, act, s) : conv2dWinogradReference(xv, wv, bv, act, s);
          const fused = () => tf.fused.conv2d({ x: tf.tensor(xv, c.x) as tf.Tensor4D, filter: tf.tensor(wv, c.f) as tf.Tensor4D, strides: c.strides, pad: c.pad, dilations: c.dilations ?? 1, bias: tf.tensor1d(bv), activation: act });
          const got = run(true, fused, direct);
          assert.deepEqual(bits(got), bits(want));
          assert.ok(relError(got, run(false, fused), true) < 1e-5, 'differs from XNNPACK beyond float tolerance');
        });
      }
    }

    if (c.dilations) continue; // tfjs' gradients take dilation 1 only
    const dyv = randomValues(s.batch * s.outHeight * s.outWidth * s.outChannels, s0 + 3);
    const dyShape = [s.batch, s.outHeight, s.outWidth, s.outChannels];

    const filterWays = winogradFits(s, 'filter') ? [true, false] : [true];
    for (const direct of filterWays) {
      const how = filterWays.length > 1 ? (direct ? ' (direct)' : ' (Winograd)') : '';
      it(`Conv2DBackpropFilter${how}, ${name(c)}`, () => {
        const want = direct || filterWays.length === 1 ? conv2dFilterGradReference(xv, dyv, s) : conv2dFilterGradWinogradReference(xv, dyv, s);
        const grad = () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(xv, c.x), dy: tf.tensor(dyv, dyShape) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f } as unknown as tf.NamedAttrMap) as tf.Tensor;
        const got = run(true, grad, direct);
        assert.deepEqual(bits(got), bits(want));
        assert.ok(relError(got, run(false, grad), true) < 1e-5, 'differs from the column-matrix path beyond float tolerance');
      });
    }

    const inputWays = winogradFits(s, 'input') ? [true, false] : [true];
    for (const direct of inputWays) {
      const how = inputWays.length > 1 ? (direct ? ' (direct)' : ' (Winograd)') : '';
      it(`Conv2DBackpropInput${how}, ${name(c)}`, () => {
        const want = direct || inputWays.length === 1 ? conv2dInputGradReference(dyv, wv, s) : conv2dInputGradWinogradReference(dyv, wv, s);
        const grad = () => tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(wv, c.f) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.x } as unknown as tf.NamedAttrMap) as tf.Tensor;
        const got = run(true, grad, direct);
        assert.deepEqual(bits(got), bits(want));
        assert.ok(relError(got, run(false, grad), true) < 1e-5, 'differs from the column-matrix path beyond float tolerance');
      });
    }
  }

  it('FusedConv2D with an activation the kernels lack (sigmoid) keeps the stock kernel, and its values', () => {
    const c = CASES[2];
    const xv = randomValues(c.x.reduce((a, b) => a * b), 5);
    const wv = randomValues(c.f.reduce((a, b) => a * b), 6);
    const bv = randomValues(c.f[3], 7);
    const fused = () => tf.fused.conv2d({ x: tf.tensor(xv, c.x) as tf.Tensor4D, filter: tf.tensor(wv, c.f) as tf.Tensor4D, strides: c.strides, pad: c.pad, bias: tf.tensor1d(bv), activation: 'sigmoid' });
    assert.deepEqual(bits(run(true, fused)), bits(run(false, fused)));
  });

  it('gives the same bits with the batch in chunks of one item (a table past convLimits.indirectionEntries)', () => {
    const entries = convLimits.indirectionEntries;
    for (const c of [CASES[0], CASES[3], CASES[8], CASES[11]]) {
      const xv = randomValues(c.x.reduce((a, b) => a * b), 21);
      const wv = randomValues(c.f.reduce((a, b) => a * b), 22);
      const s = shapeOf(c);
      const dyShape = [s.batch, s.outHeight, s.outWidth, s.outChannels];
      const dyv = randomValues(dyShape.reduce((a, b) => a * b), 23);
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
      convLimits.indirectionEntries = 1;
      try {
        const y = run(true, () => tf.conv2d(tf.tensor(xv, c.x) as tf.Tensor4D, tf.tensor(wv, c.f) as tf.Tensor4D, c.strides, c.pad));
        const dw = run(true, () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(xv, c.x), dy: tf.tensor(dyv, dyShape) }, { ...attrs, filterShape: c.f } as unknown as tf.NamedAttrMap) as tf.Tensor);
        const dx = run(true, () => tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(wv, c.f) }, { ...attrs, inputShape: c.x } as unknown as tf.NamedAttrMap) as tf.Tensor);
        assert.deepEqual(bits(y), bits(conv2dReference(xv, wv, null, 'linear', s)), name(c));
        assert.deepEqual(bits(dw), bits(conv2dFilterGradReference(xv, dyv, s)), name(c));
        assert.deepEqual(bits(dx), bits(conv2dInputGradReference(dyv, wv, s)), name(c));
      } finally {
        convLimits.indirectionEntries = entries;
      }
    }
  });

  for (const tile of [2, 4] as const) {
    it(`Winograd's F(${tile}, 3) on every shape it fits gives its twin's bits (forward, fused, both gradients)`, () => {
      winogradSwitch.tile = tile;
      try {
        let n = 0;
        for (const [i, c] of CASES.entries()) {
          const s = shapeOf(c);
          if (!winogradFits(s, 'forward')) continue;
          n++;
          const xv = randomValues(c.x.reduce((a, b) => a * b), 40 + i);
          const wv = randomValues(c.f.reduce((a, b) => a * b), 60 + i);
          const bv = randomValues(c.f[3], 80 + i);
          const dyShape = [s.batch, s.outHeight, s.outWidth, s.outChannels];
          const dyv = randomValues(dyShape.reduce((a, b) => a * b), 90 + i);
          const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
          const fused = run(true, () => tf.fused.conv2d({ x: tf.tensor(xv, c.x) as tf.Tensor4D, filter: tf.tensor(wv, c.f) as tf.Tensor4D, strides: c.strides, pad: c.pad, bias: tf.tensor1d(bv), activation: 'relu' }));
          assert.deepEqual(bits(fused), bits(winogradRowsReference(xv, wv, false, s.batch * s.inHeight, s.inWidth, s.inChannels, s.outWidth, s.outChannels, s.padLeft, bv, 'relu', tile)), name(c));
          const dw = run(true, () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(xv, c.x), dy: tf.tensor(dyv, dyShape) }, { ...attrs, filterShape: c.f } as unknown as tf.NamedAttrMap) as tf.Tensor);
          assert.deepEqual(bits(dw), bits(conv2dFilterGradWinogradReference(xv, dyv, s, tile)), name(c));
          assert.ok(relError(dw, conv2dFilterGradReference(xv, dyv, s), true) < 1e-5, `${name(c)}: the filter gradient differs from the direct sums beyond float tolerance`);
          if (winogradFits(s, 'input')) {
            const dx = run(true, () => tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(wv, c.f) }, { ...attrs, inputShape: c.x } as unknown as tf.NamedAttrMap) as tf.Tensor);
            assert.ok(relError(dx, conv2dInputGradReference(dyv, wv, s), true) < 1e-5, `${name(c)}: the input gradient differs from the direct sums beyond float tolerance`);
          }
        }
        assert.ok(n >= 4, `${n} shapes fit`);
      } finally {
        winogradSwitch.tile = 'auto';
      }
    });
  }

  it('Winograd\'s F(m, 3) gives the same bits with its rows in chunks (transforms past kernelLimits.columnFloats)', () => {
    const budget = kernelLimits.columnFloats;
    const c = CASES.find((x) => x.x[2] === 6 && x.f[2] === 50) as Case;
    const s = shapeOf(c);
    assert.ok(winogradFits(s, 'forward') && winogradFits(s, 'input'));
    const xv = randomValues(c.x.reduce((a, b) => a * b), 31);
    const wv = randomValues(c.f.reduce((a, b) => a * b), 32);
    const dyShape = [s.batch, s.outHeight, s.outWidth, s.outChannels];
    const dyv = randomValues(dyShape.reduce((a, b) => a * b), 33);
    kernelLimits.columnFloats = 1;
    try {
      const y = run(true, () => tf.conv2d(tf.tensor(xv, c.x) as tf.Tensor4D, tf.tensor(wv, c.f) as tf.Tensor4D, c.strides, c.pad));
      const dx = run(true, () => tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(wv, c.f) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.x } as unknown as tf.NamedAttrMap) as tf.Tensor);
      assert.deepEqual(bits(y), bits(conv2dWinogradReference(xv, wv, null, 'linear', s)));
      assert.deepEqual(bits(dx), bits(conv2dInputGradWinogradReference(dyv, wv, s)));
      const dw = run(true, () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(xv, c.x), dy: tf.tensor(dyv, dyShape) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f } as unknown as tf.NamedAttrMap) as tf.Tensor);
      assert.deepEqual(bits(dw), bits(conv2dFilterGradWinogradReference(xv, dyv, s)));
    } finally {
      kernelLimits.columnFloats = budget;
    }
  });

  it('an infinity or NaN in an input or filter of a Winograd-shaped convolution gives the direct sums\' values (the transforms\' Inf - Inf would make NaN, and spread it to outputs that do not read it)', () => {
    const c: Case = { x: [2, 1, 16, 8], f: [1, 3, 8, 8], strides: [1, 1], pad: 'same' };
    const s = shapeOf(c);
    assert.ok(winogradFits(s, 'forward') && winogradFits(s, 'input') && winogradFits(s, 'filter'));
    const dyShape = [s.batch, s.outHeight, s.outWidth, s.outChannels];
    const clean = { x: randomValues(c.x.reduce((a, b) => a * b), 41), w: randomValues(c.f.reduce((a, b) => a * b), 42), dy: randomValues(dyShape.reduce((a, b) => a * b), 43) };
    const spoilt = (v: Float32Array, at: number, value: number) => {
      const out = Float32Array.from(v);
      out[at] = value;
      return out;
    };
    const calls = (xv: Float32Array, wv: Float32Array, dyv: Float32Array): Record<string, () => tf.Tensor> => ({
      forward: () => tf.conv2d(tf.tensor(xv, c.x) as tf.Tensor4D, tf.tensor(wv, c.f) as tf.Tensor4D, c.strides, c.pad),
      input: () => tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dyv, dyShape), filter: tf.tensor(wv, c.f) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: c.x } as unknown as tf.NamedAttrMap) as tf.Tensor,
      filter: () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(xv, c.x), dy: tf.tensor(dyv, dyShape) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f } as unknown as tf.NamedAttrMap) as tf.Tensor,
    });
    // Each case with the kernels that read what it spoils.
    const cases: [string, Record<string, () => tf.Tensor>, string[]][] = [
      ['x holds +Infinity', calls(spoilt(clean.x, 6 * 8 + 2, Infinity), clean.w, clean.dy), ['forward', 'filter']],
      ['x holds -Infinity', calls(spoilt(clean.x, 16 * 8 + 9 * 8 + 5, -Infinity), clean.w, clean.dy), ['forward', 'filter']],
      ['x holds NaN', calls(spoilt(clean.x, 3 * 8, NaN), clean.w, clean.dy), ['forward', 'filter']],
      ['dy holds +Infinity', calls(clean.x, clean.w, spoilt(clean.dy, 5 * 8 + 1, Infinity)), ['input', 'filter']],
      ['the filter holds +Infinity', calls(clean.x, spoilt(clean.w, 8 * 8 + 3, Infinity), clean.dy), ['forward', 'input']],
    ];
    for (const tile of [2, 4] as const) {
      winogradSwitch.tile = tile;
      try {
        for (const [what, call, kinds] of cases) {
          for (const kind of kinds) {
            const fn = call[kind];
            const direct = run(true, fn, true);
            const got = run(true, fn);
            assert.ok(direct.some((v) => !Number.isFinite(v)), `${what}, ${kind}: the direct sums carry it`);
            const kindOf = (v: number) => (Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? 'finite' : String(v));
            assert.deepEqual(Array.from(got, kindOf), Array.from(direct, kindOf), `${what}, ${kind}, F(${tile}, 3): NaN and infinities where the direct sums have them`);
            got.forEach((v, i) => Number.isFinite(v) && assert.ok(Math.abs(v - direct[i]) <= 1e-5 * Math.max(1, Math.abs(direct[i])), `${what}, ${kind}: output ${i}`));
          }
        }
      } finally {
        winogradSwitch.tile = 'auto';
      }
    }
  });

  it('leaves outputs of fewer than convLimits.minColumns columns and strided input gradients to the paths from before', () => {
    convLimits.minColumns = minColumns;
    convLimits.stridedInputGradient = stridedInputGradient;
    try {
      // The keyword model's first layer: 5 taps at stride 2.
      const conv1 = shapeOf(CASES[0]);
      assert.equal(convInWasmCovers(conv1, 'forward'), true);
      assert.equal(convInWasmCovers(conv1, 'filter'), true);
      assert.equal(convInWasmCovers(conv1, 'input'), false);
      assert.equal(convInWasmCovers(shapeOf(CASES[1]), 'input'), true);
      // MobileNetV2's stem: 3 input channels, 32 output channels.
      const stem = shapeOf({ x: [1, 16, 16, 3], f: [3, 3, 3, 32], strides: [2, 2], pad: 'same' });
      assert.equal(convInWasmCovers(stem, 'forward'), true);
      assert.equal(convInWasmCovers(stem, 'filter'), true);
      assert.equal(convInWasmCovers(stem, 'input'), false);
      const c = CASES[2]; // 7 output channels
      const xv = randomValues(c.x.reduce((a, b) => a * b), 11);
      const wv = randomValues(c.f.reduce((a, b) => a * b), 12);
      const conv = () => tf.conv2d(tf.tensor(xv, c.x) as tf.Tensor4D, tf.tensor(wv, c.f) as tf.Tensor4D, c.strides, c.pad);
      assert.deepEqual(bits(run(true, conv)), bits(run(false, conv)));
    } finally {
      convLimits.minColumns = 1;
      convLimits.stridedInputGradient = true;
    }
  });

  it('gives the same bits on every call (fixed summation order)', () => {
    const c = CASES[1];
    const xv = randomValues(c.x.reduce((a, b) => a * b), 8);
    const wv = randomValues(c.f.reduce((a, b) => a * b), 9);
    const grads = () => {
      const x = tf.tensor(xv, c.x) as tf.Tensor4D;
      const w = tf.tensor(wv, c.f) as tf.Tensor4D;
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.relu(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad)).square().sum())([x, w]);
      return tf.concat([dx.flatten(), dw.flatten()]);
    };
    assert.deepEqual(bits(run(true, grads)), bits(run(true, grads)));
  });
});

describe('the keyword model\'s step on wasm with the convolutions in SIMD', () => {
  it('compiled: the convolutions\' bias adds in their epilogue, the eager step\'s losses and payload bytes', async () => {
    const { eager, compiled, said } = await keywordEagerAndCompiled(Float32Array.from(randomValues(KEYWORD_EXAMPLES * 49 * 40, 11)));
    // Four convolutions, each with its bias (the dense layers' matmuls stay unfused on wasm).
    assert.ok(said.some((m) => /^step: compiled plan .*, 4 bias adds in their GEMM/.test(m)), said.filter((m) => m.startsWith('step')).join(' | '));
    assert.deepEqual(compiled.epochs.map((e) => e.loss), eager.epochs.map((e) => e.loss));
    assert.deepEqual(Buffer.from(compiled.bytes), Buffer.from(eager.bytes));
  });

  it('with the kernels off, no bias add moves into XNNPACK\'s convolution (it would round otherwise)', async () => {
    simdKernelSwitch.convInWasm = false;
    try {
      const { said } = await keywordEagerAndCompiled(Float32Array.from(randomValues(KEYWORD_EXAMPLES * 49 * 40, 12)));
      const steps = said.filter((m) => m.startsWith('step: compiled plan'));
      assert.ok(steps.length > 0 && steps.every((m) => !/bias adds in their GEMM/.test(m)), steps.join(' | '));
    } finally {
      simdKernelSwitch.convInWasm = true;
      epilogueSwitch.fuseBias = true;
    }
  });
});
