/**
 * Reading a tensor's values where the backend keeps them, and writing a variable with one copy.
 * The wasm and native backends keep every tensor in one WebAssembly memory: a step's weights and
 * gradients can be read from there without the copy `dataSync` makes, and a new tensor is copied
 * into it at once. Other backends take the plain path.
 */
import * as tf from '@tensorflow/tfjs';
import { asWasm, f32 } from '../../engine/kernels/util.ts';

/** Backends whose tensors live in one WebAssembly memory (src/engine/backend.ts). */
const IN_HEAP = new Set(['wasm', 'native']);

/**
 * `t`'s float32 values in the backend's memory, read in place: valid until the backend's next
 * allocation (which may grow the memory), so copy them at once. Null on other backends.
 */
export function valuesInPlace(t: tf.Tensor): Float32Array | null {
  if (t.dtype !== 'float32' || !IN_HEAP.has(tf.getBackend())) return null;
  return f32(asWasm(tf.backend()), t);
}

/** A copy of `t`'s float32 values (one copy on the wasm and native backends). */
export function copyOfValues(t: tf.Tensor): Float32Array {
  const v = valuesInPlace(t);
  return v ? v.slice() : (t.dataSync() as Float32Array).slice();
}

/**
 * Put `values` into variable `v` as a new tensor: the wasm and native backends copy them into
 * their memory at once (no copy of ours first); other backends may keep the array itself, so
 * they get a copy (the caller's buffer is rewritten every step).
 *
 * Not written over the variable's own memory: XNNPACK keeps a convolution's or matmul's weights
 * packed by tensor, so the next step would run on the old ones.
 */
export function writeVariable(v: tf.Variable, values: Float32Array): void {
  if (values.length !== v.size) throw new Error(`variable ${v.name} has ${v.size} values, ${values.length} given`);
  const own = IN_HEAP.has(tf.getBackend()) ? values : values.slice();
  tf.tidy(() => v.assign(tf.tensor(own, v.shape, 'float32')));
}
