/**
 * Identity for wasm without a copy. tfjs-backend-wasm 4.22's Identity copies its input into new
 * memory, and tfjs runs Identity wherever it clones a tensor: every input an op saves for its
 * gradient, each step (67 copies a keyword-model training step, 6% of its kernel time). The cpu
 * and WebGL backends share the input's data instead, counting the reference, as wasm's own Reshape
 * does; this kernel does the same. Tensors are immutable in tfjs and no kernel of ours writes into
 * its inputs (Adam's moments, updated in place, are never cloned), so sharing is safe; strings
 * keep the stock kernel.
 */
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { stockKernel, WASM } from './util.ts';

/** The part of BackendWasm this kernel uses. */
interface CountsReferences {
  incRef(dataId: object): void;
}

const identity: KernelFunc = ({ inputs, attrs, backend }) => {
  const x = inputs.x as TensorInfo;
  if (x.dtype === 'string') return stockKernel('Identity').kernelFunc({ inputs, attrs, backend });
  (backend as unknown as CountsReferences).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
};

/** Identity for wasm: the input's data, one more reference to it. */
export function identityConfig(): KernelConfig {
  return { kernelName: 'Identity', backendName: WASM, kernelFunc: identity };
}
