/**
 * UnsortedSegmentSum for wasm (not registered in the stock package). It is the gradient of
 * gather, which the hashed-bucket trainer needs: W = W0 + sign * gather(B, bucketIdx) sends
 * dB = unsortedSegmentSum(sign * dW, bucketIdx, numBuckets).
 *
 * Like TensorFlow (and tfjs' cpu kernel), ids outside [0, numSegments) are dropped.
 */
import type { KernelConfig, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { asWasm, f32, i32, sizeOf, WASM } from './util.ts';

function unsortedSegmentSum(args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = asWasm(args.backend);
  const { x, segmentIds } = args.inputs;
  if (x === undefined || segmentIds === undefined) throw new Error('UnsortedSegmentSum: inputs x and segmentIds are required');
  const numSegments = Number(args.attrs?.numSegments);
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${String(args.attrs?.numSegments)}`);
  }
  if (segmentIds.dtype !== 'int32') throw new Error(`UnsortedSegmentSum: segmentIds must be int32, got ${segmentIds.dtype}`);
  if (x.dtype !== 'float32' && x.dtype !== 'int32') throw new Error(`UnsortedSegmentSum: unsupported dtype ${x.dtype}`);
  const idRank = segmentIds.shape.length;
  for (let i = 0; i < idRank; i++) {
    if (x.shape[i] !== segmentIds.shape[i]) {
      throw new Error(`UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] is not a prefix of x shape [${x.shape}]`);
    }
  }
  const inner = sizeOf(x.shape.slice(idRank));
  const out = backend.makeOutput([numSegments, ...x.shape.slice(idRank)], x.dtype);
  const ids = i32(backend, segmentIds);
  const src = x.dtype === 'float32' ? f32(backend, x) : i32(backend, x);
  // Sums run in float64 so that buckets receiving thousands of positions stay exact to float32.
  const acc = new Float64Array(numSegments * inner);
  if (inner === 1) {
    for (let i = 0; i < ids.length; i++) {
      const s = ids[i];
      if (s >= 0 && s < numSegments) acc[s] += src[i];
    }
  } else {
    for (let i = 0; i < ids.length; i++) {
      const s = ids[i];
      if (s < 0 || s >= numSegments) continue;
      const from = i * inner;
      const to = s * inner;
      for (let j = 0; j < inner; j++) acc[to + j] += src[from + j];
    }
  }
  (x.dtype === 'float32' ? f32(backend, out) : i32(backend, out)).set(acc);
  return out;
}

/** UnsortedSegmentSum for wasm: one pass over x in JS. */
export function unsortedSegmentSumConfig(): KernelConfig {
  return {
    kernelName: 'UnsortedSegmentSum',
    backendName: WASM,
    kernelFunc: (args) => unsortedSegmentSum(args as Parameters<typeof unsortedSegmentSum>[0]),
  };
}
