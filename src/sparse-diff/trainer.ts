/**
 * Sparse-mask diffs: a diff D (zeros at start) beside each frozen base tensor W0, and a mask
 * score s per entry. The layers compute with W = W0 + m ⊙ D where m = alive ⊙ σ(β s):
 *
 * - soft phase: β (the mask's sharpness, "temperature turned up") grows geometrically from
 *   `betaStart` to `betaEnd`, so the relaxed mask hardens into 0/1; meanwhile, at evenly spread
 *   steps, the entries with the smallest effective change |m ⊙ D| across the whole model are
 *   pruned (alive = 0), down a geometric schedule to the count the byte budget allows. Tensors
 *   holding more non-zeros than their share lose them first, so each tensor's share of the
 *   budget is learned, not fixed by hand; biases and normalization parameters compete too.
 * - hard phase: the mask is fixed to exactly the entries that fit the budget (sized with the real
 *   encoder), and D is fine-tuned under it with quantization-aware rounding (straight-through),
 *   so the values the device adds are the ones the model was trained with.
 */
import * as tf from '@tensorflow/tfjs';
import { trainingVariableName, type Parameterization } from '../method/contract.ts';
import type { ValueCodec } from '../core/values.ts';
import type { PatchSpec } from '../diff/build.ts';

export interface SparseMaskOptions {
  /** Initial mask score (σ(betaStart · s0) is the starting mask). */
  s0: number;
  betaStart: number;
  betaEnd: number;
  /** Fraction of the soft phase by which pruning reaches its final count. */
  pruneBy: number;
  /** Pruning events in the soft phase. */
  pruneEvents: number;
  /** Weight of the mask-density penalty λ · mean(m). */
  lambda: number;
}

export const DEFAULT_SPARSE_MASK: SparseMaskOptions = { s0: 1, betaStart: 1, betaEnd: 100, pruneBy: 0.75, pruneEvents: 20, lambda: 1e-4 };

interface TensorState {
  name: string;
  shape: number[];
  size: number;
  w0: tf.Tensor;
  d: tf.Variable;
  s: tf.Variable;
  /** 1 where the entry is alive (a variable: pruning sets it, so a compiled step reads its value of the moment). */
  alive: tf.Variable;
}

/**
 * The sparse-mask parameterization. `softFraction` of the run is the soft phase; the rest is
 * the hard phase, entered by {@link SparseMask.harden} with the exact kept positions.
 */
export class SparseMask implements Parameterization {
  readonly names: string[];
  private readonly tensors = new Map<string, TensorState>();
  private readonly byVariable = new Map<string, TensorState>();
  private beta: number;
  /**
   * β as the steps read it: a scalar variable set after each step (the same float32 the number
   * would become), so a compiled step (src/engine/compiled/) reads its value of the moment.
   */
  private readonly betaT: tf.Variable;
  private phase: 'soft' | 'hard' = 'soft';
  private nextPrune = 1;
  private aliveCount: number;
  readonly total: number;
  private codec: ValueCodec = 'f32';
  /** The hard mask's positions per tensor (set by {@link harden}). */
  private kept: ReadonlyMap<string, Uint32Array> | null = null;

  constructor(
    base: { name: string; shape: number[]; values: Float32Array }[],
    private readonly targetCount: number,
    private readonly softSteps: number,
    private readonly opts: SparseMaskOptions = DEFAULT_SPARSE_MASK,
    /** Starting diff per tensor (default zeros), e.g. a teacher's change (teacher − base). */
    initial?: ReadonlyMap<string, Float32Array>,
  ) {
    this.names = base.map((b) => b.name);
    this.beta = opts.betaStart;
    this.betaT = tf.variable(tf.scalar(this.beta), false);
    let total = 0;
    for (const b of base) {
      const size = b.values.length;
      total += size;
      const st: TensorState = {
        name: b.name,
        shape: b.shape,
        size,
        w0: tf.tensor(b.values, b.shape, 'float32'),
        d: tf.variable(initial?.has(b.name) ? tf.tensor(initial.get(b.name) as Float32Array, b.shape, 'float32') : tf.zeros(b.shape), true, trainingVariableName(`nd_sparse_d/${b.name}`)),
        s: tf.variable(tf.fill(b.shape, opts.s0), true, trainingVariableName(`nd_sparse_s/${b.name}`)),
        alive: tf.variable(tf.ones(b.shape), false),
      };
      this.tensors.set(b.name, st);
      this.byVariable.set(st.d.name, st);
      this.byVariable.set(st.s.name, st);
    }
    this.total = total;
    this.aliveCount = total;
  }

  /** Is this variable a mask score (gets its own learning rate)? */
  isScore(variableName: string): boolean {
    return variableName.startsWith('nd_sparse_s/');
  }

  private mask(st: TensorState): tf.Tensor {
    return tf.mul(st.alive, tf.sigmoid(tf.mul(st.s, this.beta)));
  }

  /**
   * Quantize-dequantize D like the codec will. Used in the forward pass only: the hard phase's
   * gradient of D is dL/dW ⊙ mask (straight-through), see {@link gradients}.
   */
  private quantized(st: TensorState): tf.Tensor {
    const d = tf.mul(st.d, st.alive);
    if (this.codec !== 'i8') return d;
    const scale = tf.maximum(tf.div(tf.max(tf.abs(d)), 127), 1e-12);
    return tf.mul(tf.round(tf.div(d, scale)), scale);
  }

  /** σ(β s) and m of the current step, computed once in effective() and reused by gradients() (same tf.tidy). */
  private readonly stepCache = new Map<string, { sig: tf.Tensor; m: tf.Tensor }>();

  effective(name: string): tf.Tensor {
    const st = this.tensors.get(name) as TensorState;
    if (this.phase === 'hard') return tf.add(st.w0, this.quantized(st));
    const sig = tf.sigmoid(tf.mul(st.s, this.betaT));
    const m = tf.mul(st.alive, sig);
    this.stepCache.set(name, { sig, m });
    return tf.add(st.w0, tf.mul(m, st.d));
  }

  gradients(name: string, dW: tf.Tensor): tf.NamedTensorMap {
    const st = this.tensors.get(name) as TensorState;
    if (this.phase === 'hard') return { [st.d.name]: tf.mul(dW, st.alive) };
    const cached = this.stepCache.get(name);
    this.stepCache.delete(name);
    const sig = cached?.sig ?? tf.sigmoid(tf.mul(st.s, this.betaT));
    const m = cached?.m ?? tf.mul(st.alive, sig);
    // dL/ds = dL/dW ⊙ D ⊙ β σ(1-σ) ⊙ alive (+ the density penalty's gradient); m(1-σ) = alive σ(1-σ)
    const penalty = (this.opts.lambda / Math.max(1, this.total)) * st.size;
    const gs = tf.mul(tf.mul(m, tf.sub(1, sig)), tf.mul(tf.add(tf.mul(dW, st.d), penalty), this.betaT));
    return { [st.d.name]: tf.mul(dW, m), [st.s.name]: gs };
  }

  /** Compiled steps (src/train/loop.ts): a plan per phase (β and the alive entries are read from their variables). */
  planKey(): string {
    return this.phase === 'hard' ? `sparse hard ${this.codec}` : 'sparse soft';
  }

  afterStep(step: number, _progress: number): void {
    if (this.phase !== 'soft') return;
    const p = Math.min(1, step / this.softSteps);
    this.beta = this.opts.betaStart * Math.pow(this.opts.betaEnd / this.opts.betaStart, p);
    tf.tidy(() => this.betaT.assign(tf.scalar(this.beta)));
    const event = Math.floor(p * this.opts.pruneEvents);
    if (event >= this.nextPrune) {
      this.nextPrune = event + 1;
      const q = Math.min(1, p / this.opts.pruneBy);
      const keep = Math.max(this.targetCount, Math.round(this.total * Math.pow(this.targetCount / this.total, q)));
      if (keep < this.aliveCount) this.prune(keep);
    }
  }

  /** Effective change m ⊙ D of every tensor (after {@link harden}: the masked D). */
  effectiveDeltas(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const st of this.tensors.values()) {
      const t = tf.tidy(() => (this.phase === 'hard' ? tf.mul(st.d, st.alive) : tf.mul(this.mask(st), st.d)));
      out.set(st.name, t.dataSync() as Float32Array);
      t.dispose();
    }
    return out;
  }

  /** Keep the `keep` alive entries of largest |m ⊙ D| (ties: earlier tensor, lower position). */
  prune(keep: number): void {
    const deltas = this.effectiveDeltas();
    const alive = new Map<string, Float32Array>();
    for (const st of this.tensors.values()) alive.set(st.name, st.alive.dataSync() as Float32Array);
    let count = 0;
    for (const a of alive.values()) for (let i = 0; i < a.length; i++) count += a[i];
    const mags = new Float32Array(count);
    let k = 0;
    for (const [name, d] of deltas) {
      const a = alive.get(name) as Float32Array;
      for (let i = 0; i < d.length; i++) if (a[i]) mags[k++] = Math.abs(d[i]);
    }
    if (keep >= count) return;
    const sorted = mags.slice().sort();
    const threshold = sorted[count - keep];
    let above = 0;
    for (let i = 0; i < count; i++) if (mags[i] > threshold) above++;
    let ties = keep - above;
    for (const st of this.tensors.values()) {
      const d = deltas.get(st.name) as Float32Array;
      const a = alive.get(st.name) as Float32Array;
      const next = new Float32Array(a.length);
      for (let i = 0; i < a.length; i++) {
        if (!a[i]) continue;
        const m = Math.abs(d[i]);
        if (m > threshold || (m === threshold && ties-- > 0)) next[i] = 1;
      }
      this.setAlive(st, next);
    }
    this.aliveCount = keep;
  }

  private setAlive(st: TensorState, next: Float32Array): void {
    tf.tidy(() => st.alive.assign(tf.tensor(next, st.shape, 'float32')));
    tf.tidy(() => st.d.assign(tf.mul(st.d, st.alive)));
  }

  /**
   * Enter the hard phase with exactly these positions per tensor: D becomes the current
   * effective change there (so nothing learned is lost), zero elsewhere.
   */
  harden(positions: ReadonlyMap<string, Uint32Array>, codec: ValueCodec): void {
    const deltas = this.effectiveDeltas();
    let kept = 0;
    for (const st of this.tensors.values()) {
      const mask = new Float32Array(st.size);
      const pos = positions.get(st.name);
      if (pos) for (const p of pos) mask[p] = 1;
      kept += pos?.length ?? 0;
      const d = deltas.get(st.name) as Float32Array;
      const masked = new Float32Array(st.size);
      for (let i = 0; i < st.size; i++) masked[i] = mask[i] ? d[i] : 0;
      tf.tidy(() => st.alive.assign(tf.tensor(mask, st.shape, 'float32')));
      tf.tidy(() => st.d.assign(tf.tensor(masked, st.shape, 'float32')));
    }
    this.aliveCount = kept;
    this.phase = 'hard';
    this.codec = codec;
    this.kept = positions;
  }

  /** What ships: the hard mask's values now, as sparse patches in the codec given to {@link harden}. */
  specs(): PatchSpec[] {
    if (!this.kept) throw new Error('SparseMask.specs(): the mask is not hard yet (call harden first)');
    const deltas = this.effectiveDeltas();
    return [...this.kept].filter(([, pos]) => pos.length).map(([name, pos]) => {
      const d = deltas.get(name) as Float32Array;
      return { kind: 'sparse', name, positions: pos, values: Float32Array.from(pos, (p) => d[p]), codec: this.codec };
    });
  }

  status(): Record<string, string | number> {
    return { phase: this.phase, nonzeros: this.aliveCount, target: this.targetCount, beta: Number(this.beta.toFixed(2)) };
  }

  dispose(): void {
    this.betaT.dispose();
    for (const st of this.tensors.values()) {
      st.w0.dispose();
      st.d.dispose();
      st.s.dispose();
      st.alive.dispose();
    }
  }
}
