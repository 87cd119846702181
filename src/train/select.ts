/**
 * What a training run may change, and how much of it fits in memory at once.
 *
 * Weights of a layers model fall in three groups:
 * - **trainable**: weights of layers the model's config leaves trainable (kernels, biases,
 *   BatchNorm gamma and beta);
 * - **frozen**: the same kinds of weights in layers the config freezes (`trainable: false`, as
 *   transfer-learning models often ship); trained only when asked (`trainable: 'all'` or a
 *   pattern that names them);
 * - **statistics**: BatchNorm moving mean and variance. Never trained: the trainers run layers
 *   in inference mode (BatchNorm normalizes with these statistics, dropout is off), which is the
 *   usual practice for fine-tuning a pretrained model and means the model a device gets is
 *   exactly the one evaluated. They are never patched.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.ts';

/** A weight of the model and its group. */
export interface WeightRole {
  /** Manifest name (`originalName`). */
  name: string;
  role: 'trainable' | 'frozen' | 'statistic';
  /** The layer that owns it. */
  layer: string;
}

/** Which weights to train: the model's config, every non-statistic weight, or a name pattern. */
export type TrainableSpec = 'config' | 'all' | RegExp;

interface LayerInternals {
  trainable: boolean;
  name: string;
  _trainableWeights?: tf.LayerVariable[];
  _nonTrainableWeights?: tf.LayerVariable[];
  layers?: LayerInternals[];
}

/** Every layer, nested models included (their own layers, not the container). */
function allLayers(model: tf.LayersModel): LayerInternals[] {
  const out: LayerInternals[] = [];
  const walk = (layers: LayerInternals[]) => {
    for (const l of layers) {
      if (Array.isArray(l.layers) && l.layers.length) walk(l.layers);
      else out.push(l);
    }
  };
  walk(model.layers as unknown as LayerInternals[]);
  return out;
}

/** The weights of `model` by group (see the module doc). */
export function weightRoles(model: tf.LayersModel): WeightRole[] {
  const out: WeightRole[] = [];
  for (const l of allLayers(model)) {
    // tfjs-layers keeps weights a layer can train apart from its statistics (BatchNorm moving
    // mean and variance); a frozen layer's weights are the first kind with trainable = false.
    for (const w of l._trainableWeights ?? []) out.push({ name: w.originalName, role: l.trainable && w.trainable ? 'trainable' : 'frozen', layer: l.name });
    for (const w of l._nonTrainableWeights ?? []) out.push({ name: w.originalName, role: 'statistic', layer: l.name });
  }
  return out;
}

/** Parse the `--trainable` flag: `config`, `all`, or a regular expression over weight names. */
export function parseTrainable(text: string): TrainableSpec {
  if (text === 'config' || text === 'all') return text;
  try {
    return new RegExp(text);
  } catch (e) {
    throw new UsageError(`--trainable ${JSON.stringify(text)} is not "config", "all" or a valid regular expression (${(e as Error).message})`);
  }
}

/**
 * Make exactly the chosen weights trainable (statistics never); returns what was chosen and a
 * function that puts every flag back as the model had it.
 */
export function selectTrainable(model: tf.LayersModel, spec: TrainableSpec): { chosen: string[]; frozenByConfig: string[]; statistics: number; restore: () => void } {
  const roles = weightRoles(model);
  const frozenByConfig = roles.filter((r) => r.role === 'frozen').map((r) => r.name);
  const statistics = roles.filter((r) => r.role === 'statistic').length;
  const wanted = (r: WeightRole) => r.role !== 'statistic' && (spec === 'all' || (spec === 'config' ? r.role === 'trainable' : spec.test(r.name)));
  const chosen = roles.filter(wanted).map((r) => r.name);
  if (chosen.length === 0) {
    throw new UsageError(
      spec instanceof RegExp
        ? `--trainable ${spec.source} matches none of the model's ${roles.length - statistics} trainable-kind weights (e.g. ${roles.filter((r) => r.role !== 'statistic').slice(0, 3).map((r) => r.name).join(', ')}): check the pattern`
        : `the model has no weights to train (${frozenByConfig.length} are frozen by its config): pass --trainable all to train them`,
    );
  }
  if (spec === 'config') return { chosen, frozenByConfig, statistics, restore: () => {} };
  const set = new Set(chosen);
  const saved: (() => void)[] = [];
  for (const l of allLayers(model)) {
    const ws = l._trainableWeights ?? [];
    if (!ws.some((w) => set.has(w.originalName))) continue;
    const was = { layer: l.trainable, weights: ws.map((w) => w.trainable) };
    saved.push(() => {
      l.trainable = was.layer; // the setter also sets every weight: put those back after
      ws.forEach((w, i) => (w.trainable = was.weights[i]));
    });
    l.trainable = true;
    for (const w of ws) w.trainable = set.has(w.originalName);
  }
  // Layers none of whose weights are chosen keep their weights out of training.
  for (const l of allLayers(model)) {
    const ws = l._trainableWeights ?? [];
    if (ws.some((w) => set.has(w.originalName)) || !l.trainable) continue;
    const was = ws.map((w) => w.trainable);
    saved.push(() => ws.forEach((w, i) => (w.trainable = was[i])));
    for (const w of ws) w.trainable = false;
  }
  return { chosen, frozenByConfig, statistics, restore: () => saved.reverse().forEach((f) => f()) };
}

// ---------------------------------------------------------------------------------------------
// Memory

/** Whether `e` is the error tfjs-backend-wasm gives when its 4 GiB memory is exhausted. */
export function isOutOfMemory(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e);
  return /memory access out of bounds|Aborted\(OOM\)|Cannot enlarge memory|Array buffer allocation failed|out of memory/i.test(m.slice(0, 2000));
}

/**
 * Bytes one training step needs per example: every layer's output is kept for the backward pass
 * along with its gradient, and a layer whose weights train also needs their gradient's scratch
 * buffers (im2col for convolutions). Fitted on the pretrained MobileNetV2 at 224x224 on the wasm
 * backend, measured from the WebAssembly heap after one step: about 9 bytes per output value
 * with its last layers trained (batch 16 takes 3.0 GiB) and 15 with every layer trained (batch 8
 * takes 2.7 GiB); the constants below add a margin.
 */
export const BYTES_PER_OUTPUT = 10;
/** Extra bytes per output value of a layer whose weights are trained. */
export const BYTES_PER_TRAINED_OUTPUT = 8;

/** Values every layer outputs per example (the sum over layers of their output sizes without the batch). */
export function activationsPerExample(model: tf.LayersModel): number {
  return layerOutputs(model).reduce((n, l) => n + l.values, 0);
}

function layerOutputs(model: tf.LayersModel): { values: number; trains: boolean }[] {
  const out: { values: number; trains: boolean }[] = [];
  for (const l of allLayers(model)) {
    let shapes: (number | null)[][];
    try {
      const s = (l as unknown as tf.layers.Layer).outputShape as (number | null)[] | (number | null)[][];
      shapes = Array.isArray(s[0]) ? (s as (number | null)[][]) : [s as (number | null)[]];
    } catch {
      continue; // a layer used at several places has no single output shape
    }
    const trains = l.trainable && (l._trainableWeights ?? []).some((w) => w.trainable);
    for (const shape of shapes) out.push({ values: shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1), trains });
  }
  return out;
}

/** Estimated bytes of one training step per example with the model's current trainable flags. */
export function trainingBytesPerExample(model: tf.LayersModel): number {
  return layerOutputs(model).reduce((n, l) => n + l.values * (BYTES_PER_OUTPUT + (l.trains ? BYTES_PER_TRAINED_OUTPUT : 0)), 0);
}

/** How large a batch the backend can take, or Infinity where memory is the machine's (cpu, tensorflow). */
export function maxBatchSize(model: tf.LayersModel, backend: string, heldBytes: number, perExample = trainingBytesPerExample(model)): number {
  // tfjs-backend-wasm (and native, which keeps its tensors there too) runs in a 32-bit WebAssembly
  // memory: 4 GiB at most, for everything.
  if (backend !== 'wasm' && backend !== 'native') return Infinity;
  const limit = 4 * 1024 ** 3;
  const modelBytes = model.countParams() * 4;
  // The model, its optimizer state (Adam: two moments) and gradients, the data, and 256 MiB spare.
  const free = limit - heldBytes - 6 * modelBytes - 256 * 1024 ** 2;
  return Math.max(0, Math.floor(free / perExample));
}

/**
 * The batch size to train with: `requested`, or when undefined the largest of 32 and below that
 * fits. Throws a {@link UsageError} naming `--batch-size` when the request cannot fit.
 */
export function chooseBatchSize(model: tf.LayersModel, backend: string, heldBytes: number, requested: number | undefined, examples: number): number {
  const max = maxBatchSize(model, backend, heldBytes);
  if (max < 1) {
    throw new UsageError(`one training example of this model needs about ${fmtGiB(trainingBytesPerExample(model))} and the data ${fmtGiB(heldBytes)}, more than the wasm backend's 4 GiB: train on fewer examples at once, or use --backend cpu (slow) or --backend tensorflow`);
  }
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1) throw new UsageError(`--batch-size must be a positive integer, found ${requested}`);
    if (requested > max) {
      throw new UsageError(
        `--batch-size ${requested} needs about ${fmtGiB(requested * trainingBytesPerExample(model))} per training step, more than the ${backend} backend has left (4 GiB in all, ${fmtGiB(heldBytes)} of it data): use --batch-size ${max} or less`,
        { requested, max },
      );
    }
    return requested;
  }
  return Math.max(1, Math.min(32, max, examples));
}

function fmtGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
