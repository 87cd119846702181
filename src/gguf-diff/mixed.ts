/**
 * The mixed target of an on-grid GGUF payload (docs/format/gguf.md §18.6): a GGUF model laid out
 * as the two versions are, whose bytes are the base's with the chosen units replaced by the
 * target's, and the header, the padding and the tensors without a dequantizer taken from the
 * target. A unit is chosen when its bin (`ranking.ts`) is at or above the threshold, a decision
 * made again from the unit's bytes at every read, so the model is read a range at a time in any
 * order and never held whole. Every unit of the result is the base's or the target's byte for
 * byte: no float arithmetic reaches the file.
 *
 * Pure code (no node, no tfjs).
 */
import type { GgufSource, GgufTensorInfo } from '../io/gguf/header.ts';
import type { GgufModel } from '../io/gguf/model.ts';
import { binOf, tensorsInOrder, unitBytes, UnitScorer, unitWeight, type TensorWeights } from './ranking.ts';

/** A span of a part: a tensor's data, or bytes outside every tensor (`tensor` undefined). */
interface Span {
  from: number;
  to: number;
  tensor?: GgufTensorInfo;
}

function spansOf(model: GgufModel, part: number): Span[] {
  const h = model.parts[part].header;
  const out: Span[] = [];
  let at = 0;
  for (const t of tensorsInOrder(model, part)) {
    const from = h.dataStart + t.offset;
    if (from > at) out.push({ from: at, to: from });
    if (t.bytes > 0) out.push({ from, to: from + t.bytes, tensor: t });
    at = from + t.bytes;
  }
  if (h.fileSize > at) out.push({ from: at, to: h.fileSize });
  return out;
}

/** One part's mixed bytes as a source. */
function mixedSource(base: GgufModel, target: GgufModel, part: number, threshold: number, weights: TensorWeights | undefined): GgufSource {
  const a = base.parts[part].source;
  const b = target.parts[part].source;
  const spans = spansOf(base, part);
  const scorer = new UnitScorer();
  return {
    name: `${b.name} (on-grid mix)`,
    size: b.size,
    read(offset, length) {
      const out = new Uint8Array(length);
      out.set(a.read(offset, length));
      const end = offset + length;
      for (const s of spans) {
        if (s.to <= offset || s.from >= end) continue;
        const t = s.tensor;
        if (!t || !t.type.dequantizable) {
          const from = Math.max(s.from, offset);
          out.set(b.read(from, Math.min(s.to, end) - from), from - offset);
          continue;
        }
        const unit = unitBytes(t);
        const u0 = s.from + Math.floor((Math.max(s.from, offset) - s.from) / unit) * unit;
        const u1 = Math.min(s.to, s.from + Math.ceil((Math.min(s.to, end) - s.from) / unit) * unit);
        const x = a.read(u0, u1 - u0);
        const y = b.read(u0, u1 - u0);
        for (let u = 0; u < u1 - u0; u += unit) {
          const n = Math.min(unit, u1 - u0 - u);
          const sc = scorer.score(t, x, y, u, n);
          if (!sc || binOf(sc.score * unitWeight(weights, t, u0 + u - s.from), sc.cost) < threshold) continue;
          const from = Math.max(u0 + u, offset);
          const to = Math.min(u0 + u + n, end);
          out.set(y.subarray(from - u0, to - u0), from - offset);
        }
      }
      return out;
    },
  };
}

/**
 * The mixed model: `base` with every changed unit whose bin is at or above `threshold` taken from
 * `target`, and every byte outside the scored units (header, padding, tensors of types without
 * a dequantizer) taken from `target`. The two models must have one layout (`ggufLayoutDifference`).
 * `weights`: the tensors' calibration weights the ranking binned with (the same, or the bins differ).
 */
export function mixedGgufModel(base: GgufModel, target: GgufModel, threshold: number, weights?: TensorWeights): GgufModel {
  return {
    parts: target.parts.map((p, i) => ({ header: p.header, source: mixedSource(base, target, i, threshold, weights) })),
    metadata: target.metadata,
    tensors: target.tensors,
  };
}
