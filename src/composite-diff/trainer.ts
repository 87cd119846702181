/**
 * Composite diffs: a low-rank part and a sparse part of the same weights, trained jointly and
 * shipped as the composite patch kind (format v5, docs/FORMAT.md §5.2), after RoSA (Nikdan et
 * al., ICML 2024):
 *
 * 1. a low-rank warm-up ({@link FisherWarmup}): LoRA adapters train for a short while, and the
 *    squared gradients of every trained weight are summed on the way (a diagonal Fisher
 *    estimate: which weights the loss is most sensitive to, once the low-rank part has taken
 *    what it can);
 * 2. the sparse mask: the weights of largest accumulated squared gradient over all tensors, as
 *    many as the budget holds beside the adapters ({@link FisherRanking});
 * 3. both parts trained jointly from a restart ({@link SparseLowRank}): fresh adapters and a
 *    sparse delta that starts at zero on the mask.
 *
 * The budget's split between the parts is chosen by the caller (src/train/train-diff.ts tries
 * a few on validation). Quantization-aware as the other trainers: the forward pass sees both
 * parts as the device will decode them.
 */
import * as tf from '@tensorflow/tfjs';
import type { ValueCodec } from '../core/values.ts';
import type { PatchSpec } from '../diff/build.ts';
import { LowRankAdapters } from '../lowrank-diff/trainer.ts';
import { trainingVariableName, type Parameterization } from '../method/contract.ts';

interface Tensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

/**
 * The warm-up: trains the adapters of `adapters` and sums dL/dW ⊙ dL/dW for every tensor in
 * `tensors` (adapted or not: the sparse part may go where no adapter is).
 */
export class FisherWarmup implements Parameterization {
  readonly names: string[];
  private readonly fisher = new Map<string, tf.Variable>();
  private readonly adapted: Set<string>;

  constructor(tensors: readonly Tensor[], private readonly adapters: LowRankAdapters) {
    this.names = tensors.map((t) => t.name);
    this.adapted = new Set(adapters.names);
    for (const t of tensors) this.fisher.set(t.name, tf.variable(tf.zeros(t.shape), false, trainingVariableName(`nd_fisher/${t.name}`)));
  }

  effective(name: string): tf.Tensor | null {
    return this.adapted.has(name) ? this.adapters.effective(name) : null;
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const acc = this.fisher.get(name) as tf.Variable;
    acc.assign(tf.add(acc, tf.square(dW)));
    return this.adapted.has(name) ? this.adapters.gradients(name, dW) : {};
  }

  /** The accumulated squared gradients per tensor. */
  scores(): Map<string, Float32Array> {
    return new Map([...this.fisher].map(([name, v]) => [name, v.dataSync() as Float32Array] as [string, Float32Array]));
  }

  status(): Record<string, string | number> {
    return { phase: 'warm-up', ...this.adapters.status() };
  }

  dispose(): void {
    for (const v of this.fisher.values()) v.dispose();
  }
}

/**
 * Positions from squared-gradient scores, ranked once over every tensor: `at(k)` gives the `k`
 * highest (ties: earlier tensor, lower position), sorted per tensor for the payload. One ranking
 * over all tensors, not the same density in each: on the digits task (test/train-composite.test.ts,
 * seeds 5, 6, 7, 1%, quick tuning) equal density validated at 85.0, 84.3 and 77.1% (seed 7 with
 * shares 0.5, 0.75, 0.9 tried), one ranking at 85.7, 82.1 and 85.7% (the learned sparse mask
 * alone: 84.3, 85.7, 83.6%; LoRA alone: 75.7, 58.6, 72.9%).
 */
export class FisherRanking {
  private readonly ranked: { tensor: number; position: number }[] = [];
  private readonly names: string[];
  readonly total: number;

  constructor(scores: ReadonlyMap<string, Float32Array>) {
    this.names = [...scores.keys()];
    const all: { tensor: number; position: number; score: number }[] = [];
    this.names.forEach((name, tensor) => {
      const s = scores.get(name) as Float32Array;
      for (let position = 0; position < s.length; position++) all.push({ tensor, position, score: s[position] });
    });
    all.sort((a, b) => b.score - a.score || a.tensor - b.tensor || a.position - b.position);
    this.ranked = all.map(({ tensor, position }) => ({ tensor, position }));
    this.total = all.length;
  }

  at(k: number): Map<string, Uint32Array> {
    const by = new Map<number, number[]>();
    for (const e of this.ranked.slice(0, k)) {
      let list = by.get(e.tensor);
      if (!list) by.set(e.tensor, (list = []));
      list.push(e.position);
    }
    return new Map([...by].sort((a, b) => a[0] - b[0]).map(([t, p]) => [this.names[t], Uint32Array.from(p).sort()] as [string, Uint32Array]));
  }
}

/**
 * Patch specs for adapters of `ranks` and sparse values at `positions`: a composite patch where a
 * tensor has both, a low-rank or a sparse one where it has one. `factors` and `values` default
 * to placeholders of non-integer value (for sizing: the largest encoding an i8 scale takes).
 */
export function compositeSpecs(
  shapes: ReadonlyMap<string, readonly number[]>,
  ranks: ReadonlyMap<string, number>,
  positions: ReadonlyMap<string, Uint32Array>,
  codec: ValueCodec,
  factors?: ReadonlyMap<string, { rank: number; u: Float32Array; v: Float32Array }>,
  values?: ReadonlyMap<string, Float32Array>,
): PatchSpec[] {
  const names = [...new Set([...ranks.keys(), ...positions.keys()])].sort();
  return names.flatMap((name): PatchSpec[] => {
    const shape = shapes.get(name) as readonly number[];
    const cols = shape[shape.length - 1];
    const rows = shape.reduce((a, b) => a * b, 1) / cols;
    const rank = ranks.get(name);
    const f = rank ? factors?.get(name) ?? { rank, u: new Float32Array(rows * rank).fill(1e-3), v: new Float32Array(rank * cols).fill(1e-3) } : undefined;
    const pos = positions.get(name);
    const vals = pos ? values?.get(name) ?? new Float32Array(pos.length).fill(1e-3) : undefined;
    if (f && pos && pos.length) return [{ kind: 'composite', name, rank: f.rank, u: f.u, v: f.v, positions: pos, values: vals as Float32Array, codec, sparseCodec: codec }];
    if (f) return [{ kind: 'lowrank', name, rank: f.rank, u: f.u, v: f.v, codec }];
    if (pos && pos.length) return [{ kind: 'sparse', name, positions: pos, values: vals as Float32Array, codec }];
    return [];
  });
}

interface SparsePart {
  name: string;
  shape: number[];
  positions: Uint32Array;
  w0: tf.Tensor;
  d: tf.Variable;
  alive: tf.Tensor;
}

/**
 * The joint phase: W = W0 + U·V (where an adapter is) + S (zero off the mask), both parts as
 * the device decodes them: the factors through {@link LowRankAdapters}, S quantized with its
 * own i8 scale when the codec is i8 (straight-through gradients).
 */
export class SparseLowRank implements Parameterization {
  readonly names: string[];
  private readonly adapters: LowRankAdapters;
  private readonly adapted: Set<string>;
  private readonly sparse = new Map<string, SparsePart>();

  constructor(tensors: readonly Tensor[], ranks: ReadonlyMap<string, number>, positions: ReadonlyMap<string, Uint32Array>, seed: number, private readonly codec: ValueCodec) {
    this.adapters = new LowRankAdapters(tensors.filter((t) => ranks.has(t.name)), ranks, seed, codec);
    this.adapted = new Set(this.adapters.names);
    for (const t of tensors) {
      const pos = positions.get(t.name);
      if (!pos || !pos.length) continue;
      const mask = new Float32Array(t.values.length);
      for (const p of pos) mask[p] = 1;
      this.sparse.set(t.name, {
        name: t.name, shape: t.shape, positions: pos,
        w0: tf.tensor(t.values, t.shape, 'float32'),
        d: tf.variable(tf.zeros(t.shape), true, trainingVariableName(`nd_composite_s/${t.name}`)),
        alive: tf.tensor(mask, t.shape, 'float32'),
      });
    }
    this.names = tensors.map((t) => t.name).filter((n) => this.adapted.has(n) || this.sparse.has(n));
  }

  private quantized(sp: SparsePart): tf.Tensor {
    const d = tf.mul(sp.d, sp.alive);
    if (this.codec !== 'i8') return d;
    const scale = tf.maximum(tf.div(tf.max(tf.abs(d)), 127), 1e-12);
    return tf.mul(tf.round(tf.div(d, scale)), scale);
  }

  effective(name: string): tf.Tensor {
    const sp = this.sparse.get(name);
    const w = this.adapted.has(name) ? this.adapters.effective(name) : (sp as SparsePart).w0;
    return sp ? tf.add(w, this.quantized(sp)) : w;
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const out: tf.NamedTensorMap = this.adapted.has(name) ? this.adapters.gradients(name, dW) : {};
    const sp = this.sparse.get(name);
    if (sp) out[sp.d.name] = tf.mul(dW, sp.alive);
    return out;
  }

  /** The patch specs of the current state (values unquantized: the encoder quantizes them). */
  specs(shapes: ReadonlyMap<string, readonly number[]>): PatchSpec[] {
    const factors = this.adapters.factorsFor();
    const ranks = new Map([...factors].map(([n, f]) => [n, f.rank] as [string, number]));
    const positions = new Map<string, Uint32Array>();
    const values = new Map<string, Float32Array>();
    for (const sp of this.sparse.values()) {
      const d = sp.d.dataSync() as Float32Array;
      positions.set(sp.name, sp.positions);
      values.set(sp.name, Float32Array.from(sp.positions, (p) => d[p]));
    }
    return compositeSpecs(shapes, ranks, positions, this.codec, factors, values);
  }

  status(): Record<string, string | number> {
    let nonzeros = 0;
    for (const sp of this.sparse.values()) nonzeros += sp.positions.length;
    return { ...this.adapters.status(), sparseValues: nonzeros };
  }

  dispose(): void {
    this.adapters.dispose();
    for (const sp of this.sparse.values()) {
      sp.w0.dispose();
      sp.d.dispose();
      sp.alive.dispose();
    }
  }
}
