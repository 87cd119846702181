/**
 * The wasm convolution kernels (src/engine/kernels/conv2d.ts and the two gradients) check their
 * operands' shapes before any sum: called directly (tf.engine().runKernel, as a compiled plan or
 * another library may), a dy or filter of the wrong shape was read past its end on the
 * WebAssembly heap and gave a gradient of whatever lay there. Now a typed error says what was
 * expected, what was found, and what to do; right shapes keep their values.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { UsageError } from '../src/core/errors.ts';
import { nativeAddonStatus } from '../src/engine/kernels/native/index.ts';

const backends = nativeAddonStatus().available ? ['wasm', 'native'] : ['wasm'];

const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>) => tf.engine().runKernel(name, inputs, attrs as never) as tf.Tensor;
const VALID = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dimRoundingMode: undefined };

for (const backend of backends) test(`Conv2D, FusedConv2D, Conv2DBackpropFilter and Conv2DBackpropInput on ${backend} refuse operands whose shapes do not make one convolution, with a typed error, before reading them`, async () => {
  await initBackend(backend as 'wasm' | 'native');
  tf.tidy(() => {
    // Winograd's shape (a [1, 3] filter at stride 1) and a direct one ([3, 3] at stride 2).
    for (const [xShape, filterShape, strides] of [[[2, 1, 8, 16], [1, 3, 16, 16], [1, 1]], [[2, 7, 7, 16], [3, 3, 16, 16], [2, 2]]] as const) {
      const attrs = { ...VALID, strides: [...strides] };
      const x = tf.randomNormal([...xShape], 0, 1, 'float32', 1);
      const w = tf.randomNormal([...filterShape], 0, 1, 'float32', 2);
      const y = run('Conv2D', { x, filter: w }, { ...attrs, dilations: [1, 1] });
      const dy = tf.randomNormal(y.shape, 0, 1, 'float32', 3);
      // Right shapes: the values of tfjs' ops (which check the shapes themselves).
      const dw = run('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: [...filterShape] });
      const dx = run('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: [...xShape] });
      assert.deepEqual(dw.shape, [...filterShape]);
      assert.deepEqual(dx.shape, [...xShape]);
      const refused = (f: () => unknown, what: RegExp) => assert.throws(f, (e: unknown) => e instanceof UsageError && what.test(e.message) && /tf\.conv2d/.test(e.message), what.source);
      const shortDy = tf.ones([1, ...y.shape.slice(1)]);
      refused(() => run('Conv2DBackpropFilter', { x, dy: shortDy }, { ...attrs, filterShape: [...filterShape] }), /^Conv2DBackpropFilter: dy is \[1, .*\], where .* gives \[2, /);
      refused(() => run('Conv2DBackpropInput', { dy: shortDy, filter: w }, { ...attrs, inputShape: [...xShape] }), /^Conv2DBackpropInput: dy is \[1, .*\], where .* gives \[2, /);
      const thin = tf.ones([filterShape[0], filterShape[1], 4, 16]);
      // As many values as the right filter, laid out for 32 input channels: no length check can see it.
      const wide = tf.ones([filterShape[0], filterShape[1], 32, 8]);
      refused(() => run('Conv2D', { x, filter: wide }, { ...attrs, dilations: [1, 1] }), /^Conv2D: the filter \[.*, 32, 8\] takes 32 input channels, x \[.*, 16\] has 16/);
      refused(() => run('Conv2D', { x, filter: thin }, { ...attrs, dilations: [1, 1] }), /^Conv2D: the filter \[.*, 4, 16\] takes 4 input channels, x \[.*, 16\] has 16/);
      refused(() => run('FusedConv2D', { x, filter: thin }, { ...attrs, dilations: [1, 1], activation: 'relu' }), /^FusedConv2D: the filter/);
      refused(() => run('Conv2DBackpropInput', { dy, filter: thin }, { ...attrs, inputShape: [...xShape] }), /^Conv2DBackpropInput: the filter \[.*, 4, 16\] takes 4 input channels, x \[.*, 16\] has 16/);
      refused(() => run('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: [filterShape[0], filterShape[1], 4, 16] }), /^Conv2DBackpropFilter: the filter \[.*, 4, 16\] takes 4 input channels, x \[.*, 16\] has 16/);
      refused(() => run('Conv2DBackpropFilter', { x: tf.ones([16, 8]), dy }, { ...attrs, filterShape: [...filterShape] }), /^Conv2DBackpropFilter: x is \[16, 8\], where a 4-D \[batch, height, width, channels\] tensor/);
    }
  });
});
