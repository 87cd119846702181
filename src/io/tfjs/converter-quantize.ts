/**
 * Quantizing a folder's weights the way the TF.js converter does (uint8, uint16, float16).
 */
import { type PlannedGroup, writeModelAtomically } from './write.ts';
import { TfjsDirWeightStore } from './dir-store.ts';
import { loadModel } from './read.ts';
import { concatBytes, replaceTopLevelValue, type TfjsWeightEntry } from './manifest.ts';
import { toHalfBits } from '../../core/float16.ts';
import { LITTLE_ENDIAN_HOST } from '../../core/endian.ts';

/** What {@link quantizeModelDir} does to every float32 tensor. */
export type ConverterQuantization = 'uint8' | 'uint16' | 'float16';

/** numpy's `round`: the nearest integer, ties to even. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The affine quantization `tensorflowjs_converter --quantize_uint8/--quantize_uint16` gives a
 * tensor (tensorflowjs 4.x `quantize_weights`, written here from its description): per tensor,
 * scale = (max - min) / qmax in float64; when the range covers 0 it is nudged so that 0 is a grid
 * value (min = -round(-min / scale) x scale); values are clipped to the range and stored as
 * round((v - min) / scale), ties to even. A constant tensor is all zeros with scale 1.
 */
export function converterQuantize(values: Float32Array, dtype: 'uint8' | 'uint16'): { q: Uint8Array | Uint16Array; scale: number; min: number } {
  const qmax = dtype === 'uint8' ? 255 : 65535;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const q = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  if (!(hi > lo)) return { q, scale: 1, min: values.length ? lo : 0 };
  const scale = (hi - lo) / qmax;
  let min = lo;
  let max = hi;
  if (lo <= 0 && 0 <= hi) {
    min = -roundEven(-lo / scale) * scale;
    max = qmax * scale + min;
  }
  for (let i = 0; i < values.length; i++) {
    const c = values[i] < min ? min : values[i] > max ? max : values[i];
    q[i] = Math.min(qmax, Math.max(0, roundEven((c - min) / scale)));
  }
  return { q, scale, min };
}

/**
 * Write `dir`'s model to `outDir` with every float32 weight quantized as the TF.js converter
 * does (`uint8`/`uint16` affine per tensor, see {@link converterQuantize}; `float16` to the
 * nearest half), the rest of model.json unchanged: the model as a quantized app would ship it.
 * Returns the bytes of the weights before and after.
 */
export async function quantizeModelDir(dir: string, outDir: string, dtype: ConverterQuantization): Promise<{ bytesBefore: number; bytesAfter: number }> {
  const m = await loadModel(dir);
  const store = new TfjsDirWeightStore(m);
  let before = 0;
  let after = 0;
  const groups: PlannedGroup[] = m.modelJson.weightsManifest.map((group, g) => {
    const parts: Uint8Array[] = [];
    const weights = m.layouts[g].entries.map((l) => {
      const e = l.entry;
      before += l.byteLength;
      if (!l.isFloat) {
        parts.push(store.storedBytes(e.name));
        after += l.byteLength;
        return e;
      }
      const v = store.values(e.name);
      let bytes: Uint8Array;
      let quantization: TfjsWeightEntry['quantization'];
      if (dtype === 'float16') {
        bytes = new Uint8Array(2 * v.length);
        for (let i = 0; i < v.length; i++) {
          const h = toHalfBits(v[i]);
          bytes[2 * i] = h & 0xff;
          bytes[2 * i + 1] = h >>> 8;
        }
        quantization = { dtype: 'float16', original_dtype: 'float32' };
      } else {
        const { q, scale, min } = converterQuantize(v, dtype);
        bytes = new Uint8Array(q.buffer, q.byteOffset, q.byteLength);
        if (!LITTLE_ENDIAN_HOST && dtype === 'uint16') bytes = Uint8Array.from({ length: 2 * q.length }, (_, i) => (q[i >> 1] >> (8 * (i & 1))) & 0xff);
        quantization = { dtype, scale, min, original_dtype: 'float32' };
      }
      parts.push(bytes);
      after += bytes.length;
      const { quantization: _old, ...rest } = e;
      return { ...rest, quantization } as TfjsWeightEntry;
    });
    return { base: group as Record<string, unknown>, weights, data: concatBytes(parts) };
  });
  await writeModelAtomically({ dir: outDir, groups, render: (manifest) => replaceTopLevelValue(m.jsonText, 'weightsManifest', JSON.stringify(manifest)) });
  return { bytesBefore: before, bytesAfter: after };
}
