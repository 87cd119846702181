/**
 * A graph program (program.ts: an ONNX graph, or a TF.js graph model) presented as the
 * `tf.LayersModel` the trainers already use (trainDiff, the training loop, evaluate, the
 * teacher's outputs), so every diff method (sparse, hash, lora, topk-retrain, full and the
 * post-hoc ones) trains it through the same code: one pseudo-layer whose weights are the
 * program's variables under the weight store's names, an input of example ids, and an output of
 * class scores.
 *
 * **Examples.** A graph may take several inputs of several element types (Silero VAD:
 * `input` float32 audio, `sr` int64), so the trainer's `x` holds example *ids* (`[n, 1]`), and
 * the inputs live here ({@link ProgramExamples}), one array per model input with the examples on
 * its first axis; an input fed the same for every example is given once (`shared`).
 *
 * **Outputs.** One graph output, `[batch, classes]`. A single value per example is read as the
 * probability of class 1 (`probability`, default for one value: the two classes are 1 − p and
 * p, so a VAD's speech decision at 0.5 is its argmax) or as a logit (`logit`); several values
 * are logits unless the graph ends in a Softmax (`probabilities`), or are plain values
 * (`values`: no classes, compared by closeness) when the graph ends in a Sigmoid (a mask, a
 * heatmap, independent scores) or the output has more than one axis per example without a
 * Softmax (a map, as a segmentation or pose model gives it): a softmax over a map's pixels
 * would make its values compete as if exactly one were right.
 *
 * **Stateful sequence models** (`state`: pairs of a state input and the output that carries it
 * to the next step, as Silero's `state` -> `stateN`): examples are the frames of sequences
 * (`ProgramExamples.sequence`), each sequence starting from a zero state.
 * - Outside training (evaluation, the teacher's outputs, checkpoints) every frame is computed
 *   exactly as a streaming runtime computes it: the sequence from its first frame with the state
 *   carried, under the weights the model holds now (results are cached until a weight changes).
 *   That is what a runtime (onnxruntime-web, tfjs) computes on the patched file, frame for frame.
 * - In training, backpropagation is truncated to the last `bpttFrames` frames: the loss of
 *   frame j flows back through frames j − K + 1 .. j, which start from the state the model
 *   carried into frame j − K + 1 when its sequence was last run forward in full. Those entry
 *   states are recomputed with the weights of the moment about once per epoch (each sequence
 *   when as many training frames have passed since its last run as the sequences seen hold), so
 *   the state a frame trains from is never older than an epoch's updates.
 * - Augmented (a teacher's `--augment gain,noise,speed,pitch`), a whole sequence is augmented at once,
 *   as one waveform cut into frames again, and trains as a copy of its frames (ids after the
 *   examples'); the teacher scores the copy run from its start, anew each time it is redrawn
 *   (about once an epoch), and the entry states are computed on it ({@link augmentBatch}).
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../../core/errors.ts';
import type { Augmentation } from './augmentation.ts';
import type { OutputKind } from './output-kind.ts';
import type { ProgramVariable, TrainableProgram } from './program.ts';
import { cutFrames, frameOverlap, sequenceWave } from './sequence-waveform.ts';
import { checkAugmentedIds, idsOf, rowsOf, sequenceBounds, type ProgramExamples, type ProgramInputValues } from './example-ids.ts';
import { inputRowsOf, programPackage, type ProgramPackage } from './worker-copy.ts';

/** How the chosen output reads (module doc); the same as a measured closeness's `outputKind`. */
export type ProgramOutputKind = OutputKind;

/**
 * How an output reads by default, from what the graph says of it: one value is a probability of
 * class 1; several are probabilities after a Softmax, plain values after a Sigmoid or when an
 * example's output has more than one axis (a map), and class logits otherwise (a classifier
 * exported without its softmax, as PyTorch exports them).
 */
export function defaultOutputKind(width: number, lastOp: string | undefined, axes: number): ProgramOutputKind {
  if (width === 1) return 'probability';
  if (lastOp === 'Softmax') return 'probabilities';
  if (lastOp === 'Sigmoid' || axes > 1) return 'values';
  return 'logits';
}

/** One input's values for every example (defined beside the helpers that read its rows). */
export type { ProgramInputValues } from './example-ids.ts';

/** Examples per pass of {@link ProgramTrainingModel.rawOutputs}. */
export const RAW_OUTPUT_BATCH = 256;

/** The examples a program trains and is evaluated on (defined beside the helpers that read its rows). */
export type { ProgramExamples };

/** A state input and the output that carries it to the next frame. */
export interface ProgramStatePair {
  input: string;
  output: string;
}

/** Options of {@link ProgramTrainingModel}. */
export interface ProgramTrainingModelOptions {
  /** The output to train (default: the first graph output that is not a state). */
  output?: string;
  /** How that output reads (default: `probability` for one value per example, else `logits`, or `probabilities` when the graph ends in a Softmax). */
  outputKind?: ProgramOutputKind;
  /** Stateful models: the state inputs and outputs carried from frame to frame. */
  state?: readonly ProgramStatePair[];
  /** Frames the gradient flows back through in training (default 1: the frame itself, from its carried state). */
  bpttFrames?: number;
  /** A model that is read, never trained (a teacher): no gradient probe, every weight frozen. */
  frozen?: boolean;
}

/** A weight of the pseudo-layer, shaped like tfjs' LayerVariable where the trainers read it. */
export class ProgramLayerWeight {
  constructor(
    readonly originalName: string,
    readonly shape: number[],
    private readonly variable: tf.Variable,
    public trainable: boolean,
  ) {}
  read(): tf.Variable {
    return this.variable;
  }
  get dtype(): 'float32' {
    return 'float32';
  }
}

/** The one layer the trainers see: every weight of the program. */
export class ProgramLayer {
  readonly name: string;
  trainable = true;
  readonly _trainableWeights: ProgramLayerWeight[];
  readonly _nonTrainableWeights: ProgramLayerWeight[] = [];
  constructor(name: string, weights: ProgramLayerWeight[], readonly outputShape: (number | null)[], private readonly activation: string, private readonly classScores = false, private readonly plainValues = false) {
    this.name = name;
    this._trainableWeights = weights;
  }
  /**
   * `classScores`: the output is a classifier's logits (class scores without a softmax), so a
   * teacher is matched as a classifier; `values`: plain values (a map, a sigmoid's scores), matched
   * by closeness.
   */
  /** The class name the trainers read (the native backend's thread choice): a program, no depthwise convolution or batch norm layer of tfjs. */
  getClassName(): string {
    return 'GraphProgram';
  }

  getConfig(): { activation: string; classScores: boolean; values: boolean } {
    return { activation: this.activation, classScores: this.classScores, values: this.plainValues };
  }
}

interface StateInfo extends ProgramStatePair {
  /** The state's shape with the batch axis set to 1. */
  unitShape: number[];
  batchAxis: number;
  /** Values per example. */
  size: number;
}

/**
 * A {@link TrainableProgram} as the trainers' model (module doc). Pass {@link asLayersModel} where a
 * `tf.LayersModel` is expected; the program's variables are the model's weights.
 */
export class ProgramTrainingModel {
  readonly program: TrainableProgram;
  readonly examples: ProgramExamples;
  readonly output: string;
  readonly outputKind: ProgramOutputKind;
  /** Classes the model's output has for the trainers (2 for a single probability or logit; for `values`, the values per example). */
  readonly classes: number;
  readonly bpttFrames: number;
  readonly layers: ProgramLayer[];
  readonly outputLayers: ProgramLayer[];
  readonly inputs: { shape: (number | null)[] }[];
  readonly outputs: { shape: (number | null)[] }[];
  /**
   * Weights no fed input reaches (an `If` branch the inputs never take), or whose gradient is not
   * finite on the first example or on silence (every float input zero: an STFT basis feeding
   * sqrt(re² + im²)): frozen.
   */
  readonly unreachable: string[];
  /**
   * Scalars (rank 0: exponents, epsilons, scales written into the graph as `Constant`s): frozen,
   * since they are the graph's arithmetic rather than learned weights (`Pow(x, 2)`'s 2 has the
   * gradient x² ln x, not finite at x = 0). A one-value tensor such as a bias of shape [1] trains.
   */
  readonly scalars: string[];
  private readonly weights: ProgramLayerWeight[];
  private readonly states: StateInfo[];
  /** Sequence bounds per example: [first id, end id) of its sequence (augmented copies included once made). */
  private seqStart?: Int32Array;
  private seqEnd?: Int32Array;
  /** Exact outputs (raw, per example) under the weights of {@link exactWeights}. */
  private exactOut?: Float32Array;
  private exactDone?: Uint8Array;
  private exactWeights?: Float32Array[];
  /** The examples' revision each exact output was computed on. */
  private exactRevision?: Uint32Array;
  /** Training entry states per state input, and when each sequence's were computed (training rows seen). */
  private entryStates: Float32Array[] = [];
  private readonly refreshedAt = new Map<number, number>();
  /** The revision of each sequence (by first id) its entry states were computed on. */
  private readonly refreshedRevision = new Map<number, number>();
  /** Augmented sequences (by first id of the copy): training rows seen when each was last drawn, and the frames of those drawn. */
  private readonly augmentedAt = new Map<number, number>();
  private augmentRowsSeen = 0;
  private augmentedFrames = 0;
  /** The random stream of the training loop the copies were drawn for: a new loop draws its own. */
  private augmentStream?: () => number;
  private trainRowsSeen = 0;
  private seenFrames = 0;
  /** Values of the raw output per example. */
  readonly rawWidth: number;

  /**
   * @throws UsageError when the output, a state or an input is not the model's, or a state's
   *   shape is not known apart from its batch axis; DataError when the examples do not fit.
   */
  constructor(program: TrainableProgram, examples: ProgramExamples, options: ProgramTrainingModelOptions = {}) {
    this.program = program;
    this.examples = examples;
    const stateOutputs = new Set((options.state ?? []).map((s) => s.output));
    const outputNames = program.outputs.map((o) => o.name);
    this.output = options.output ?? (outputNames.find((n) => !stateOutputs.has(n)) as string);
    const outInfo = program.outputs.find((o) => o.name === this.output);
    if (!outInfo) throw new UsageError(`${program.source} has no output ${JSON.stringify(options.output)}; its outputs are ${outputNames.join(', ')}`);
    this.bpttFrames = Math.max(1, Math.floor(options.bpttFrames ?? 1));
    this.states = (options.state ?? []).map((s) => this.stateInfo(s));
    if (this.states.length && !examples.sequence) throw new DataError(`${program.source}: a stateful model trains on sequences: give each example's sequence (ProgramExamples.sequence, sequence.npy)`);
    this.checkExamples();
    if (examples.sequence) [this.seqStart, this.seqEnd] = sequenceBounds(examples.sequence);
    for (const s of this.states) this.entryStates.push(new Float32Array(examples.count * s.size));

    // One probe example: the output's width, how it reads, which weights it reaches, and the
    // values every node computes (for the trainers' memory estimate).
    let probe = { width: 0, axes: 1, reached: new Set<string>(), activations: 0 };
    // A graph tfjs cannot differentiate is refused first, naming the operator and the node.
    if (program.checkDifferentiable && !options.frozen) tf.tidy(() => program.checkDifferentiable?.(this.feedsOf(Int32Array.of(0), this.zeroStates(1)), this.output));
    tf.tidy(() => {
      const before = tf.memory().numBytes;
      if (options.frozen) {
        const raw = this.runFrame(Int32Array.of(0), this.zeroStates(1)).output;
        probe = { width: raw.size, axes: this.outputAxes(Int32Array.of(0)), reached: new Set(program.variables.map((v) => v.variable.name)), activations: (tf.memory().numBytes - before) / 4 };
        return;
      }
      let width = 0;
      // What one more example adds to what the forward pass holds for the backward one (the
      // tape's saved tensors and the values computed), measured as the forward pass ends, at one
      // example and at two: the trainers size their batches by it. What a run holds whatever the
      // batch (weight-sized temporaries) does not count per example.
      const forwardBytes: number[] = [];
      const gradsOn = (ids: Int32Array, silent: boolean) => tf.variableGrads(() => {
        const start = tf.memory().numBytes;
        const raw = this.runFrame(ids, this.zeroStates(ids.length), silent).output;
        if (ids.length === 1) width = raw.size;
        forwardBytes.push(tf.memory().numBytes - start);
        return tf.sum(raw) as tf.Scalar;
      }, program.variables.map((v) => v.variable)).grads;
      const grads = gradsOn(Int32Array.of(0), false);
      // Silence too (every float input zero), on two examples: a gradient through a square root
      // or a logarithm of a magnitude is not finite there, as for an STFT basis feeding sqrt(re² + im²).
      const silent = gradsOn(Int32Array.of(0, 0), true);
      const perExample = forwardBytes[1] - forwardBytes[0];
      const activations = (perExample > 0 ? perExample : forwardBytes[0]) / 4;
      const finite = Object.keys(grads).filter((name) => [grads[name], silent[name]].every((g) => !g || tf.all(tf.isFinite(g)).dataSync()[0]));
      probe = { width, axes: this.outputAxes(Int32Array.of(0)), reached: new Set(finite), activations };
    });
    this.rawWidth = probe.width;
    this.outputKind = options.outputKind ?? defaultOutputKind(probe.width, program.outputOp(this.output), probe.axes);
    if ((this.outputKind === 'probability' || this.outputKind === 'logit') && probe.width !== 1) {
      throw new UsageError(`${program.source}: output ${this.output} has ${probe.width} values per example; --output-kind ${this.outputKind} reads one value (a probability or a logit of class 1)`);
    }
    this.classes = probe.width === 1 && this.outputKind !== 'values' ? 2 : probe.width;
    // Scalars are constants whether a gradient reaches them or not (a fused LayerNorm or GELU no
    // longer reads the exponent and epsilon its decomposed form held): only tensors count as
    // weights no input reaches.
    this.unreachable = program.variables.filter((v) => v.shape.length > 0 && !probe.reached.has(v.variable.name)).map((v) => v.name);
    this.scalars = program.variables.filter((v) => v.shape.length === 0).map((v) => v.name);
    const frozen = new Set([...this.unreachable, ...this.scalars]);
    this.weights = program.variables.map((v: ProgramVariable) => new ProgramLayerWeight(v.name, v.shape, v.variable, v.trainable && !options.frozen && !frozen.has(v.name)));
    const activation = this.outputKind === 'probability' || this.outputKind === 'probabilities' ? 'softmax' : 'linear';
    // The layer offers the trainers the weight tensors only: unreachable weights and scalar
    // constants (exponents, epsilons, scales) stay as the file has them even under
    // `trainable: 'all'` (an epsilon trained below zero made Sqrt(var + eps) NaN).
    const layer = new ProgramLayer(program.source, this.weights.filter((w) => !frozen.has(w.originalName)), [null, Math.max(1, Math.ceil(probe.activations * this.bpttFrames))], activation, this.outputKind === 'logits', this.outputKind === 'values');
    this.layers = [layer];
    this.outputLayers = [layer];
    this.inputs = [{ shape: [null, 1] }];
    this.outputs = [{ shape: [null, this.classes] }];
  }

  /** This adapter where the trainers take a `tf.LayersModel`. */
  asLayersModel(): tf.LayersModel {
    return this as unknown as tf.LayersModel;
  }

  /** Example ids `from .. from + count - 1` as the trainers' `x`. */
  ids(from: number, count: number): tf.Tensor2D {
    return tf.tensor2d(Float32Array.from({ length: count }, (_, i) => from + i), [count, 1]);
  }

  get trainableWeights(): ProgramLayerWeight[] {
    return this.weights.filter((w) => this.layers[0].trainable && w.trainable);
  }

  get nonTrainableWeights(): ProgramLayerWeight[] {
    return this.weights.filter((w) => !(this.layers[0].trainable && w.trainable));
  }

  countParams(): number {
    return this.weights.reduce((n, w) => n + w.shape.reduce((a, d) => a * d, 1), 0);
  }

  /**
   * The input augmentations (src/train/augment.ts) change: the one input each example gives as
   * float values (an image, audio, features). Inputs fed the same to every example (a sample rate)
   * and integer inputs (token ids) are passed through as they are.
   * `shape` is an example's as the augmentations see it: channels last, an ONNX model's
   * `[C, H, W]` as `[H, W, C]` (`transposed`), so a crop moves pixels and not channels.
   * A stateful model (`sequences`) is augmented a whole sequence at a time, as one waveform
   * ({@link augmentBatch}); `shape` is then one frame's.
   * @throws UsageError for examples that give no float input or several.
   */
  augmentedInput(): { name: string; shape: number[]; transposed: boolean; sequences: boolean } {
    const floats = Object.entries(this.examples.inputs).filter(([, v]) => v.values instanceof Float32Array);
    if (floats.length !== 1) {
      throw new UsageError(`augmentation changes a model's one float input per example; ${this.program.source}'s examples give ${floats.length ? `${floats.length} (${floats.map(([n]) => n).join(', ')})` : 'none'}: expected exactly one (an image, audio, features); use --augment none`, { inputs: floats.map(([n]) => n) });
    }
    const shape = floats[0][1].shape;
    const transposed = !this.states.length && !!this.program.channelsFirst && shape.length === 3;
    return { name: floats[0][0], shape: transposed ? [shape[1], shape[2], shape[0]] : shape, transposed, sequences: this.states.length > 0 };
  }

  /**
   * Batch `x` (example ids) with its float input augmented by `transform` (see
   * {@link augmentedInput}): the augmented rows are written after the examples, at ids
   * `count .. count + n − 1` (the same place every step), the other inputs' rows copied beside
   * them, and those ids returned. A teacher over the same examples (trainProgramDiff gives both
   * models one {@link ProgramExamples}) reads the same rows: it scores the input the model trains on.
   */
  augmentBatch(x: tf.Tensor, transform: Augmentation, random: () => number): tf.Tensor2D {
    const { name: augmented, shape: seen, transposed } = this.augmentedInput();
    if (this.states.length) return this.augmentSequences(idsOf(x), augmented, transform, random);
    const ids = idsOf(x);
    const n = ids.length;
    const count = this.examples.count;
    checkAugmentedIds(this.program.source, count, count + n - 1, 'rows');
    for (const [name, v] of Object.entries(this.examples.inputs)) {
      const per = v.shape.reduce((a, d) => a * d, 1);
      let values = v.values;
      if (values.length < (count + n) * per) {
        const grown = values instanceof Int32Array ? new Int32Array((count + n) * per) : new Float32Array((count + n) * per);
        grown.set(values.subarray(0, count * per) as never);
        values = grown;
        // The shared examples object: a teacher over the same examples sees the rows too.
        this.examples.inputs[name] = { values, shape: v.shape };
      }
      const rows = values instanceof Int32Array ? new Int32Array(n * per) : new Float32Array(n * per);
      ids.forEach((id, r) => rows.set(values.subarray(id * per, (id + 1) * per) as never, r * per));
      if (name !== augmented) values.set(rows as never, count * per);
      else if (!transposed) values.set(transform(rows as Float32Array, [n, ...seen], random), count * per);
      else values.set(channelsFirst(transform(channelsLast(rows as Float32Array, n, v.shape), [n, ...seen], random), n, v.shape), count * per);
    }
    return tf.tensor2d(Float32Array.from({ length: n }, (_, i) => count + i), [n, 1]);
  }

  /**
   * A stateful model's batch augmented (module doc of sequence-waveform.ts): every example has
   * an augmented copy at id `count + id`, in a copy of the whole id space made on the first call;
   * a sequence's copy is its waveform (rebuilt from the frames, their overlap found) augmented
   * by `transform` as one example (one gain, one noise level, one speed for the whole sequence)
   * and cut into frames again, so the state runs over continuous audio. A copy is drawn anew
   * when its sequence comes up after as many training rows as the sequences drawn hold (about
   * once an epoch; a new `random`, another training loop, draws every copy anew); its
   * `revision` then moves on, so the teacher runs the new copy from its start and the entry
   * states are recomputed on it. The copies' ids are returned.
   */
  private augmentSequences(ids: Int32Array, name: string, transform: Augmentation, random: () => number): tf.Tensor2D {
    const e = this.examples;
    const count = e.count;
    checkAugmentedIds(this.program.source, count, 2 * count - 1, 'sequences');
    if (!e.revision) {
      // The copy of every input and sequence id; sequence ids of the copy after the originals'.
      for (const [input, v] of Object.entries(e.inputs)) {
        const grown = v.values instanceof Int32Array ? new Int32Array(2 * v.values.length) : new Float32Array(2 * v.values.length);
        grown.set(v.values as never);
        grown.set(v.values as never, v.values.length);
        e.inputs[input] = { values: grown, shape: v.shape };
      }
      const sequence = e.sequence as Int32Array;
      let [low, high] = [Infinity, -Infinity];
      for (const id of sequence) [low, high] = [Math.min(low, id), Math.max(high, id)];
      const both = new Int32Array(2 * count);
      both.set(sequence);
      for (let i = 0; i < count; i++) both[count + i] = sequence[i] - low + high + 1;
      e.sequence = both;
      e.revision = new Uint32Array(2 * count);
    }
    this.syncBounds();
    if (random !== this.augmentStream) {
      // Another training loop (another run, phase or candidate): its copies are drawn from its own seed.
      this.augmentStream = random;
      this.augmentedAt.clear();
      this.augmentRowsSeen = 0;
      this.augmentedFrames = 0;
    }
    const seqStart = this.seqStart as Int32Array;
    const seqEnd = this.seqEnd as Int32Array;
    const v = e.inputs[name];
    const width = v.shape.reduce((a, d) => a * d, 1);
    const values = v.values as Float32Array;
    for (const s of new Set(Array.from(ids, (i) => seqStart[i]))) {
      const at = this.augmentedAt.get(s);
      if (at === undefined) this.augmentedFrames += seqEnd[s] - s;
      if (at !== undefined && this.augmentRowsSeen - at < this.augmentedFrames) continue;
      const end = seqEnd[s];
      const overlap = frameOverlap(values, width, s, end);
      const wave = sequenceWave(values, width, s, end, overlap);
      cutFrames(transform(wave, [1, wave.length], random), width, overlap, values.subarray(s * width, (s + 1) * width), values, count + s);
      for (let i = count + s; i < count + end; i++) e.revision[i]++;
      this.augmentedAt.set(s, this.augmentRowsSeen);
    }
    this.augmentRowsSeen += ids.length;
    return tf.tensor2d(Float32Array.from(ids, (id) => count + id), [ids.length, 1]);
  }

  /** Sequence bounds of every example, the augmented copies' too once they exist. */
  private syncBounds(): void {
    const sequence = this.examples.sequence;
    if (!sequence || this.seqStart?.length === sequence.length) return;
    [this.seqStart, this.seqEnd] = sequenceBounds(sequence);
    this.entryStates = this.states.map((st, k) => {
      const grown = new Float32Array(sequence.length * st.size);
      grown.set(this.entryStates[k] ?? []);
      return grown;
    });
  }

  /** The batch's inputs made ahead of a training step (src/train/loop.ts StepInputs), while it runs. */
  private given?: { x: tf.Tensor; feeds: Record<string, tf.Tensor> };

  /** The inputs of batch `x` as tensors, made before the step so a compiled step takes them as feeds (stateless graphs). */
  stepInputs(x: tf.Tensor): Record<string, tf.Tensor> | null {
    if (this.states.length) return null;
    const feeds = this.inputRows(idsOf(x));
    this.given = { x, feeds };
    return feeds;
  }

  /**
   * The inputs of examples `x` (ids) as tensors and the frozen pass over them (what {@link predict}
   * computes; `raw`: the raw output flattened, what {@link rawOutputs} gives), so a compiled forward
   * pass (src/engine/compiled/forward.ts) takes them as feeds; a model carrying state runs its
   * sequences from their start, eagerly.
   */
  forwardInputs(x: tf.Tensor | Int32Array, raw = false): { feeds: Record<string, tf.Tensor>; outputs: (feeds: Record<string, tf.Tensor>) => tf.Tensor } | { eager: string } {
    if (this.states.length) return { eager: `${this.program.source} carries state from frame to frame: each sequence runs from its start` };
    const ids = x instanceof Int32Array ? x : idsOf(x);
    return {
      feeds: this.inputRows(ids),
      outputs: (f) => {
        const out = tf.reshape(this.program.run({ ...f, ...this.sharedInputs() })[this.output], [ids.length, -1]);
        return raw ? tf.reshape(out, [-1]) : this.classScores(out);
      },
    };
  }

  endStep(): void {
    this.given = undefined;
  }

  /** @internal A training worker's copy of this model (src/train/parallel/; worker-copy.ts). @throws TrainingWorkerError for a stateful model */
  workerPackage(): ProgramPackage {
    return programPackage(this, this.states.map((s) => s.input));
  }

  /** The rows of every input of the examples `ids` names: a pooled step's shard carries them to its thread. */
  shardInputs(ids: ArrayLike<number>): Record<string, ProgramInputValues> {
    return inputRowsOf(this.examples, ids);
  }

  /** A shard's rows (`feeds`, by input name) as the inputs of batch `x` in this step's forward pass, until {@link endStep}. */
  useStepInputs(x: tf.Tensor, feeds: Record<string, tf.Tensor>): void {
    this.given = { x, feeds };
  }

  /** Class scores of examples `x` (ids); differentiable inside a gradient function (training path, module doc). */
  apply(x: tf.Tensor, _kwargs?: unknown): tf.Tensor {
    if (this.given?.x === x && tapeIsOn()) {
      return this.classScores(tf.reshape(this.program.run({ ...this.given.feeds, ...this.sharedInputs() })[this.output], [x.shape[0] as number, -1]));
    }
    const ids = idsOf(x);
    if (tapeIsOn()) return this.classScores(this.states.length ? this.trainingOutputs(ids) : this.runFrame(ids, []).output);
    return this.predict(x);
  }

  /** Class scores of examples `x` (ids), computed as a runtime computes them (module doc). */
  predict(x: tf.Tensor): tf.Tensor {
    const ids = idsOf(x);
    if (!this.states.length) return tf.tidy(() => this.classScores(this.runFrame(ids, []).output));
    const raw = this.exactOutputs(ids);
    return tf.tidy(() => this.classScores(tf.tensor2d(raw, [ids.length, this.rawWidth])));
  }

  /**
   * The raw output (before the class mapping) of examples `from .. from + count - 1`, computed
   * as a runtime computes it (stateful: each sequence from its start, the state carried), in
   * batches of `RAW_OUTPUT_BATCH` (256); through `forward` when given, compiled forward plans
   * (src/engine/compiled/forward.ts) that give the eager passes' bits.
   */
  rawOutputs(from: number, count: number, forward?: { run(feeds: Record<string, tf.Tensor>, pass: (feeds: Record<string, tf.Tensor>) => tf.Tensor, name: string): tf.Tensor }): Float32Array {
    const ids = Int32Array.from({ length: count }, (_, i) => from + i);
    if (this.states.length) return this.exactOutputs(ids);
    const out = new Float32Array(count * this.rawWidth);
    for (let s = 0; s < count; s += RAW_OUTPUT_BATCH) {
      const part = ids.subarray(s, Math.min(count, s + RAW_OUTPUT_BATCH));
      const t = tf.tidy(() => {
        const pass = forward && this.forwardInputs(part, true);
        return forward && pass && 'feeds' in pass ? forward.run(pass.feeds, pass.outputs, 'raw') : this.runFrame(part, []).output.reshape([-1]);
      });
      out.set(t.dataSync() as Float32Array, s * this.rawWidth);
      t.dispose();
    }
    return out;
  }

  /** Free the program's variables and constants. */
  dispose(): void {
    this.program.dispose();
  }

  // -------------------------------------------------------------------------------------------

  private stateInfo(s: ProgramStatePair): StateInfo {
    const input = this.program.inputs.find((i) => i.name === s.input);
    if (!input) throw new UsageError(`${this.program.source} has no input ${JSON.stringify(s.input)} to carry state into; its inputs are ${this.program.inputs.map((i) => i.name).join(', ')}`);
    if (!this.program.outputs.some((o) => o.name === s.output)) throw new UsageError(`${this.program.source} has no output ${JSON.stringify(s.output)} to carry state from; its outputs are ${this.program.outputs.map((o) => o.name).join(', ')}`);
    const dims = input.shape ?? [];
    // The batch axis is the one dimension the file leaves free.
    const free = dims.map((d, i) => (typeof d === 'number' && d > 0 ? -1 : i)).filter((i) => i >= 0);
    if (free.length !== 1) {
      throw new UsageError(`${this.program.source}: state input ${s.input} is declared [${dims.join(', ')}]; expected exactly one free (batch) dimension and the others fixed, to start sequences from a zero state`);
    }
    const unitShape = dims.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
    return { ...s, unitShape, batchAxis: free[0], size: unitShape.reduce((a, d) => a * d, 1) };
  }

  private checkExamples(): void {
    const e = this.examples;
    const stateInputs = new Set(this.states.map((s) => s.input));
    for (const i of this.program.inputs) {
      if (stateInputs.has(i.name)) continue;
      const given = e.inputs[i.name] ?? e.shared?.[i.name];
      if (!given) throw new DataError(`${this.program.source}: no values for input ${JSON.stringify(i.name)}; give one array per model input (${this.program.inputs.filter((x) => !stateInputs.has(x.name)).map((x) => `${x.name}.npy`).join(', ')})`, { input: i.name });
    }
    for (const [name, v] of Object.entries(e.inputs)) {
      const per = v.shape.reduce((a, d) => a * d, 1);
      if (v.values.length !== per * e.count) throw new DataError(`${this.program.source}: input ${name} holds ${v.values.length} values, expected ${e.count} examples of [${v.shape.join(', ')}]`);
    }
    if (e.sequence && e.sequence.length !== e.count) throw new DataError(`${this.program.source}: ${e.sequence.length} sequence ids for ${e.count} examples`);
  }

  private zeroStates(batch: number): tf.Tensor[] {
    return this.states.map((s) => tf.zeros(s.unitShape.map((d, i) => (i === s.batchAxis ? batch : d))));
  }

  /** The feeds of examples `ids` with the given states (silent: every float input zero). */
  private feedsOf(ids: Int32Array, states: tf.Tensor[], silent = false): Record<string, tf.Tensor> {
    const feeds: Record<string, tf.Tensor> = {};
    for (const [name, v] of Object.entries(this.examples.inputs)) feeds[name] = silent && v.values instanceof Float32Array ? tf.zeros([ids.length, ...v.shape]) : rowsOf(v, ids);
    Object.assign(feeds, this.sharedInputs());
    this.states.forEach((s, k) => (feeds[s.input] = states[k]));
    return feeds;
  }

  /** Rows `ids` of every per-example input, as tensors. */
  private inputRows(ids: Int32Array): Record<string, tf.Tensor> {
    return Object.fromEntries(Object.entries(this.examples.inputs).map(([name, v]) => [name, rowsOf(v, ids)]));
  }

  /** The inputs fed the same to every example, as tensors. */
  private sharedInputs(): Record<string, tf.Tensor> {
    return Object.fromEntries(Object.entries(this.examples.shared ?? {}).map(([name, v]) => [name, tf.tensor(v.values, v.shape, v.values instanceof Int32Array ? 'int32' : 'float32')]));
  }

  /** Axes of one example's output other than those of size 1 (a map has two or more). */
  private outputAxes(ids: Int32Array): number {
    const out = this.program.run(this.feedsOf(ids, this.zeroStates(ids.length)))[this.output];
    return out.shape.slice(1).filter((d) => d > 1).length;
  }

  /** One step of the graph on examples `ids` with the given states; raw output `[n, width]` and the states out. */
  private runFrame(ids: Int32Array, states: tf.Tensor[], silent = false): { output: tf.Tensor; states: tf.Tensor[] } {
    const out = this.program.run(this.feedsOf(ids, states, silent));
    return { output: tf.reshape(out[this.output], [ids.length, -1]), states: this.states.map((s) => out[s.output]) };
  }

  private classScores(raw: tf.Tensor): tf.Tensor {
    if (this.outputKind === 'probability') return tf.concat([tf.sub(1, raw), raw], 1);
    if (this.outputKind === 'logit') return tf.concat([tf.zerosLike(raw), raw], 1);
    return raw;
  }

  /** Whether the weights changed since the exact outputs were computed (then they are dropped). */
  private syncExact(): void {
    const now = this.program.variables.map((v) => v.variable.dataSync() as Float32Array);
    const same = this.exactWeights !== undefined && now.every((a, k) => {
      const b = (this.exactWeights as Float32Array[])[k];
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
      return true;
    });
    const rows = this.examples.sequence?.length ?? this.examples.count;
    if (same && this.exactOut && this.exactOut.length === rows * this.rawWidth) return;
    this.exactWeights = now.map((a) => Float32Array.from(a));
    this.exactOut = new Float32Array(rows * this.rawWidth);
    this.exactDone = new Uint8Array(rows);
    this.exactRevision = new Uint32Array(rows);
  }

  private exactOutputs(ids: Int32Array): Float32Array {
    this.syncBounds();
    this.syncExact();
    const done = this.exactDone as Uint8Array;
    const out = this.exactOut as Float32Array;
    const revision = this.examples.revision;
    const computed = this.exactRevision as Uint32Array;
    // An augmented copy drawn anew since its outputs were computed is run again, from its start.
    const todo = [...new Set(Array.from(ids).filter((i) => !done[i] || (revision !== undefined && computed[i] !== revision[i])).map((i) => (this.seqStart as Int32Array)[i]))];
    if (todo.length) {
      this.runSequences(todo, (id, raw) => {
        out.set(raw, id * this.rawWidth);
        done[id] = 1;
        if (revision) computed[id] = revision[id];
      });
    }
    const rows = new Float32Array(ids.length * this.rawWidth);
    ids.forEach((id, k) => rows.set(out.subarray(id * this.rawWidth, (id + 1) * this.rawWidth), k * this.rawWidth));
    return rows;
  }

  /**
   * Run whole sequences (given by their first example id) forward from a zero state, all at
   * once (one batch row per sequence, the shorter ones leaving the batch as they end); `onFrame`
   * gets each frame's raw output, `onEntry` the state each frame starts from (batch-first rows).
   */
  private runSequences(starts: number[], onFrame?: (id: number, raw: Float32Array) => void, onEntry?: (id: number, k: number, state: Float32Array) => void): void {
    const seqEnd = this.seqEnd as Int32Array;
    const order = starts.slice().sort((a, b) => seqEnd[b] - b - (seqEnd[a] - a) || a - b);
    const longest = seqEnd[order[0]] - order[0];
    let states = this.zeroStates(order.length);
    for (let t = 0; t < longest; t++) {
      const active = order.filter((s) => seqEnd[s] - s > t);
      const ids = Int32Array.from(active, (s) => s + t);
      // Sequences leave the batch as they end: the longest come first, so the rest is a prefix.
      const live = states.map((st, k) => (active.length < (st.shape[this.states[k].batchAxis] as number) ? sliceBatch(st, this.states[k].batchAxis, active.length) : st));
      states.forEach((st, k) => live[k] !== st && st.dispose());
      if (onEntry) {
        live.forEach((st, k) => {
          const rows = batchRows(st, this.states[k].batchAxis);
          ids.forEach((id, r) => onEntry(id, k, rows.subarray(r * this.states[k].size, (r + 1) * this.states[k].size)));
        });
      }
      const step = tf.tidy(() => {
        const r = this.runFrame(ids, live);
        return { output: r.output, states: r.states.map((s) => s.clone()) };
      });
      const raw = step.output.dataSync() as Float32Array;
      if (onFrame) ids.forEach((id, r) => onFrame(id, raw.subarray(r * this.rawWidth, (r + 1) * this.rawWidth)));
      step.output.dispose();
      live.forEach((st) => st.dispose());
      states = step.states;
    }
    states.forEach((st) => st.dispose());
  }

  /** Entry states of the training frames' sequences, recomputed when stale (module doc); the gradient tape is off meanwhile. */
  private refreshEntryStates(ids: Int32Array): void {
    this.syncBounds();
    const seqStart = this.seqStart as Int32Array;
    const seqEnd = this.seqEnd as Int32Array;
    const revision = this.examples.revision;
    const stale: number[] = [];
    for (const s of new Set(Array.from(ids, (i) => seqStart[i]))) {
      const at = this.refreshedAt.get(s);
      if (at === undefined) this.seenFrames += seqEnd[s] - s;
      if (at === undefined || this.trainRowsSeen - at >= this.seenFrames || (revision !== undefined && this.refreshedRevision.get(s) !== revision[s])) stale.push(s);
    }
    if (!stale.length) return;
    withoutTape(() => this.runSequences(stale, undefined, (id, k, state) => this.entryStates[k].set(state, id * this.states[k].size)));
    for (const s of stale) {
      this.refreshedAt.set(s, this.trainRowsSeen);
      if (revision) this.refreshedRevision.set(s, revision[s]);
    }
  }

  /** Training path of a stateful model: the last `bpttFrames` frames of each example, from their carried entry state. */
  private trainingOutputs(ids: Int32Array): tf.Tensor {
    this.refreshEntryStates(ids);
    this.trainRowsSeen += ids.length;
    const seqStart = this.seqStart as Int32Array;
    const K = this.bpttFrames;
    const n = ids.length;
    // Frame of row r at step t: ids[r] - (K - 1) + t, not before its sequence's first frame.
    const firstOf = Int32Array.from(ids, (id) => Math.max(seqStart[id], id - (K - 1)));
    let states = this.states.map((s, k) => {
      const rows = new Float32Array(n * s.size);
      firstOf.forEach((f, r) => rows.set(this.entryStates[k].subarray(f * s.size, (f + 1) * s.size), r * s.size));
      return fromBatchRows(rows, s, n);
    });
    let output: tf.Tensor | undefined;
    for (let t = 0; t < K; t++) {
      const frames = Int32Array.from(ids, (id, r) => Math.max(firstOf[r], id - (K - 1) + t));
      const started = Array.from(ids, (id) => id - (K - 1) + t >= seqStart[id]);
      const step = this.runFrame(frames, states);
      const allStarted = started.every(Boolean);
      // A row whose window starts later (near its sequence's start) keeps its state until it does.
      states = allStarted || t === K - 1 ? step.states : step.states.map((next, k) => tf.where(maskAlong(started, this.states[k], next.shape), next, states[k]));
      output = step.output;
    }
    return output as tf.Tensor;
  }
}

/** Examples of `[C, H, W]` (`shape`) as `[H, W, C]`. */
function channelsLast(x: Float32Array, n: number, [c, h, w]: readonly number[]): Float32Array {
  const out = new Float32Array(x.length);
  const size = c * h * w;
  for (let e = 0; e < n; e++) for (let k = 0; k < c; k++) for (let p = 0; p < h * w; p++) out[e * size + p * c + k] = x[e * size + k * h * w + p];
  return out;
}

/** Examples of `[H, W, C]` back as `[C, H, W]` (`shape`). */
function channelsFirst(x: Float32Array, n: number, [c, h, w]: readonly number[]): Float32Array {
  const out = new Float32Array(x.length);
  const size = c * h * w;
  for (let e = 0; e < n; e++) for (let k = 0; k < c; k++) for (let p = 0; p < h * w; p++) out[e * size + k * h * w + p] = x[e * size + p * c + k];
  return out;
}

/** Whether tfjs is recording a gradient tape now (inside tf.grads / variableGrads). */
function tapeIsOn(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/**
 * Run `f` with the gradient tape paused: forward computations inside a training step (the entry
 * states of a sequence) that no gradient flows through and that must not be kept for the backward
 * pass. tfjs records a kernel only while its gradient depth is above zero.
 */
function withoutTape<T>(f: () => T): T {
  const state = (tf.engine() as unknown as { state: { gradientDepth: number } }).state;
  const depth = state.gradientDepth;
  state.gradientDepth = 0;
  try {
    return f();
  } finally {
    state.gradientDepth = depth;
  }
}

/** The first `n` entries of a state along its batch axis. */
function sliceBatch(t: tf.Tensor, axis: number, n: number): tf.Tensor {
  const begin = t.shape.map(() => 0);
  const size = t.shape.map((d, i) => (i === axis ? n : d));
  return tf.slice(t, begin, size);
}

/** A state's values batch-first: one row of `size` values per batch entry. */
function batchRows(t: tf.Tensor, axis: number): Float32Array {
  const perm = [axis, ...t.shape.map((_, i) => i).filter((i) => i !== axis)];
  const moved = tf.transpose(t, perm);
  const out = moved.dataSync() as Float32Array;
  moved.dispose();
  return out;
}

/** Batch-first rows back into a state of the model's layout. */
function fromBatchRows(rows: Float32Array, s: StateInfo, n: number): tf.Tensor {
  const rest = s.unitShape.filter((_, i) => i !== s.batchAxis);
  const t = tf.tensor(rows, [n, ...rest]);
  const perm = new Array<number>(s.unitShape.length);
  // Axis 0 of t goes back to the batch axis; the others keep their order.
  let k = 1;
  for (let i = 0; i < perm.length; i++) perm[i] = i === s.batchAxis ? 0 : k++;
  return tf.transpose(t, perm);
}

/** A boolean mask shaped to broadcast a per-row choice along a state's batch axis. */
function maskAlong(rows: boolean[], s: StateInfo, shape: number[]): tf.Tensor {
  const m = tf.tensor1d(rows.map((b) => (b ? 1 : 0)), 'bool');
  const dims = shape.map((_, i) => (i === s.batchAxis ? rows.length : 1));
  return tf.broadcastTo(tf.reshape(m, dims), shape);
}
