/**
 * Registration of our wasm kernel fixes. See each kernel's file for what it fixes and why.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig } from '@tensorflow/tfjs';
import { activationGradKernelConfigs, clipByValueGradConfig, relu6GradConfig, reluGradConfig } from './activation-grad.ts';
import { adamStepKernelConfig } from './adam.ts';
import { batchMatMulConfig, fusedMatMulConfig } from './batch-mat-mul.ts';
import { batchNormGradConfig, batchNormGradKernelConfigs } from './batch-norm-grad.ts';
import { conv2dConfig } from './conv2d.ts';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter.ts';
import { conv2DBackpropInputConfig } from './conv2d-backprop-input.ts';
import { depthwiseConv2dNativeBackpropFilterConfig } from './depthwise-conv2d-backprop-filter.ts';
import { depthwiseConv2dNativeBackpropInputConfig } from './depthwise-conv2d-backprop-input.ts';
import { identityConfig } from './identity.ts';
import { maxPoolGradConfig } from './max-pool-grad.ts';
import { gatherGradConfig, gatherGradKernelConfig } from './gather-grad.ts';
import { gatherV2Config } from './gather.ts';
import { sliceConfig, splitVConfig } from './slice.ts';
import { softmaxGradConfig, softmaxGradKernelConfig } from './softmax-grad.ts';
import { sumConfig } from './sum.ts';
import { transformerKernelConfigs } from './transformer.ts';
import { transposeConfig } from './transpose.ts';
import { unsortedSegmentSumConfig } from './unsorted-segment-sum.ts';
import { stockWasmKernels, WASM } from './util.ts';

export { stockWasmKernels } from './util.ts';

/** Names of the kernels we register for `wasm`, replacing the stock ones where they exist. */
export const FIXED_WASM_KERNELS = [
  'BatchMatMul',
  '_FusedMatMul',
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'UnsortedSegmentSum',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'MaxPoolGrad',
  'Slice',
  'SplitV',
  'GatherV2',
  'Identity',
  'Sum',
  'Transpose',
  'NeuralDiffLayerNorm',
  'NeuralDiffLayerNormGrad',
  'NeuralDiffGelu',
  'NeuralDiffGeluGrad',
  'NeuralDiffReluGrad',
  'NeuralDiffRelu6Grad',
  'NeuralDiffClipByValueGrad',
  'NeuralDiffBatchNormInputGrad',
  'NeuralDiffBatchNormScaleGrad',
  'NeuralDiffAdamStep',
  'NeuralDiffSoftmaxGrad',
  'NeuralDiffGatherGrad',
] as const;

let registered = false;

/**
 * Register the fixed kernels for the `wasm` backend (idempotent), the batch-norm gradient
 * without Tile (src/engine/kernels/batch-norm-grad.ts, for every backend: its values are the stock
 * gradient's; its dx, dscale and doffset one kernel each on wasm and native), and Relu's, Relu6's and ClipByValue's gradients as one kernel each on wasm
 * (activation-grad.ts; on wasm and native, tfjs' formula elsewhere), Adam's step as one kernel (adam.ts),
 * and Softmax's and a first-axis Gather's gradients as one kernel each (softmax-grad.ts,
 * gather-grad.ts; on wasm and native, tfjs' own gradients elsewhere). The stock kernels are captured
 * first, since the fixes delegate to them. Kernels registered after the backend was initialized
 * get their setup only on the next `tf.setBackend('wasm')`, which the caller must do.
 */
export function registerWasmKernelFixes(): void {
  if (registered) return;
  stockWasmKernels();
  const configs: KernelConfig[] = [
    batchMatMulConfig(),
    fusedMatMulConfig(),
    conv2dConfig(false),
    conv2dConfig(true),
    conv2DBackpropFilterConfig(),
    conv2DBackpropInputConfig(),
    unsortedSegmentSumConfig(),
    depthwiseConv2dNativeBackpropFilterConfig(),
    depthwiseConv2dNativeBackpropInputConfig(),
    maxPoolGradConfig(),
    sliceConfig(),
    splitVConfig(),
    gatherV2Config(),
    identityConfig(),
    sumConfig(),
    transposeConfig(),
    ...transformerKernelConfigs(),
    ...activationGradKernelConfigs(),
    ...batchNormGradKernelConfigs(),
    adamStepKernelConfig(),
    softmaxGradKernelConfig(),
    gatherGradKernelConfig(),
  ];
  const present = new Set(tf.getKernelsForBackend(WASM).map((k) => k.kernelName));
  for (const config of configs) {
    if (present.has(config.kernelName)) tf.unregisterKernel(config.kernelName, WASM);
    tf.registerKernel(config);
  }
  tf.registerGradient(batchNormGradConfig());
  for (const grad of [reluGradConfig(), relu6GradConfig(), clipByValueGradConfig()]) tf.registerGradient(grad);
  // tfjs' own gradients, which ours run where our kernels do not.
  const stock = (name: string) => {
    const g = tf.getGradient(name);
    if (!g) throw new Error(`tfjs registers no gradient for ${name}`);
    return g;
  };
  tf.registerGradient(softmaxGradConfig(stock(tf.Softmax)));
  tf.registerGradient(gatherGradConfig(stock(tf.GatherV2)));
  registered = true;
}
