/**
 * Recording one training step as the engine runs it (the capture half of src/engine/compiled/):
 * every registered kernel the engine runs at the top level (its name, inputs, attributes and
 * outputs), every tensor made from JavaScript values inside the step (an upload: its values are
 * kept), every variable assigned inside the step, and every value read back to JavaScript inside
 * the step that is not one of its constants (which no replay can repeat; a constant's values, a
 * shape a graph computes from its activations' static shapes, are the same at every step).
 * Custom-gradient ops are transparent: their inner kernels
 * are what is recorded. Kernels run from inside another kernel are the outer kernel's business and
 * are not recorded on their own.
 *
 * The hooks wrap the engine's own methods for the duration of one call and are removed after it,
 * whatever happens; nothing here changes what the step computes.
 */
import * as tf from '@tensorflow/tfjs';
import type { NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';

/** A kernel as the engine ran it. */
export interface RecordedKernel {
  kind: 'kernel';
  name: string;
  /** Input names in the order given (null: the kernel took an array of inputs). */
  keys: string[] | null;
  inputs: (tf.Tensor | null)[];
  /**
   * The inputs' data ids when the kernel ran: a variable the step assigns after reading it (the
   * optimizer's update) holds other data by the end of the step.
   */
  inputIds: (object | null)[];
  attrs: NamedAttrMap;
  outputs: tf.Tensor[];
  /**
   * The outputs' values, kept when every input is a constant of the step (made in it from
   * JavaScript values, or made before it and not a variable or a feed): the plan computes such a
   * kernel once, here.
   */
  constant?: (Float32Array | Int32Array | Uint8Array)[];
}

/** A tensor made from JavaScript values inside the step. */
export interface RecordedUpload {
  kind: 'upload';
  tensor: tf.Tensor;
  values: Float32Array | Int32Array | Uint8Array;
}

/** `variable.assign(value)` inside the step. */
export interface RecordedAssign {
  kind: 'assign';
  variable: tf.Variable;
  value: tf.Tensor;
}

/**
 * A copy the engine makes of a kernel's input or output to keep it for the backward pass: the
 * same values under another data id (nothing in a step writes a tensor in place), so a plan reads
 * the original instead.
 */
export interface RecordedAlias {
  kind: 'alias';
  from: tf.Tensor;
  /** `from`'s data id when the copy was made. */
  fromId: object;
  to: tf.Tensor;
}

export type RecordedEvent = RecordedKernel | RecordedUpload | RecordedAssign | RecordedAlias;

export interface Recording<T> {
  /** What the step returned. */
  result: T;
  events: RecordedEvent[];
  /** Data ids of every tensor made during the step (any other a kernel reads was made before it). */
  made: WeakSet<object>;
  /** Why this step cannot be replayed, when something in it cannot (first reason). */
  refusal?: string;
}

/** Kernels whose output is random by design: a replay would repeat the same draw. */
const RANDOM_KERNELS = new Set(['Multinomial', 'RandomUniform', 'RandomNormal', 'RandomStandardNormal', 'RandomUniformInt', 'RandomGamma', 'StatelessRandomUniformV2']);

type EngineInternals = {
  runKernelFunc: (params: { kernelName?: string; inputs: Record<string, tf.Tensor | null> | tf.Tensor[]; attrs?: NamedAttrMap }) => tf.Tensor | tf.Tensor[];
  makeTensor: (values: unknown, shape: number[], dtype?: string, backend?: unknown) => tf.Tensor;
  makeTensorFromTensorInfo: (info: TensorInfo, backend?: unknown) => tf.Tensor;
  saveTensorsForBackwardMode: (tensors: tf.Tensor[]) => tf.Tensor[];
  readSync: (dataId: object) => unknown;
  read: (dataId: object) => Promise<unknown>;
};

/** The engine with the internals the recorder wraps. */
export function engineInternals(): EngineInternals {
  return tf.engine() as unknown as EngineInternals;
}

function copyValues(values: unknown, dtype: string | undefined): Float32Array | Int32Array | Uint8Array | null {
  const d = dtype ?? 'float32';
  if (d === 'string' || d === 'complex64') return null;
  const flat = ArrayBuffer.isView(values) ? (values as unknown as ArrayLike<number>) : (values as unknown[]).flat(Infinity as 1) as unknown as ArrayLike<number>;
  if (d === 'int32') return Int32Array.from(flat);
  if (d === 'bool') return Uint8Array.from(flat);
  return Float32Array.from(flat);
}

/**
 * Run `step` once, eagerly, recording it. The step runs exactly as it would without the
 * recorder; the recording says what ran.
 */
export function record<T>(step: () => T, feeds: Record<string, tf.Tensor> = {}): Recording<T> {
  const engine = engineInternals();
  const events: RecordedEvent[] = [];
  let refusal: string | undefined;
  const refuse = (why: string) => (refusal ??= why);
  const lastKernel = () => {
    for (let i = events.length - 1; i >= 0; i--) if (events[i].kind === 'kernel') return `after kernel ${(events[i] as RecordedKernel).name}`;
    return 'before any kernel';
  };
  let depth = 0;
  const { runKernelFunc, makeTensor, makeTensorFromTensorInfo, readSync, read, saveTensorsForBackwardMode } = engine;
  // The engine's copies of tensors kept for the backward pass (made inside a kernel's run).
  engine.saveTensorsForBackwardMode = function (this: EngineInternals, tensors) {
    const saved = saveTensorsForBackwardMode.call(this, tensors);
    saved.forEach((to, i) => aliases.push({ kind: 'alias', from: tensors[i], fromId: tensors[i].dataId, to }));
    return saved;
  };
  /** Aliases of the kernel running now, recorded after it. */
  let aliases: RecordedAlias[] = [];
  const assign = tf.Variable.prototype.assign;
  const made = new WeakSet<object>();
  /** Data ids of the step's constants (uploads, and outputs of kernels reading only constants). */
  const constants = new WeakSet<object>();
  const feedIds = new Set(Object.values(feeds).map((t) => t.dataId));
  /** Data ids the variables hold as the step starts (a variable's later data is made in the step). */
  const variableIds = new Set(Object.values((tf.engine() as unknown as { registeredVariables: Record<string, tf.Variable> }).registeredVariables).map((v) => v.dataId));
  const isConstant = (t: tf.Tensor | null) => t === null || constants.has(t.dataId) || (!made.has(t.dataId) && !feedIds.has(t.dataId) && !variableIds.has(t.dataId) && !(t instanceof tf.Variable));
  engine.makeTensorFromTensorInfo = function (this: EngineInternals, info, backend) {
    made.add(info.dataId);
    return makeTensorFromTensorInfo.call(this, info, backend);
  };
  engine.runKernelFunc = function (this: EngineInternals, params) {
    if (params.kernelName == null || depth > 0) return runKernelFunc.call(this, params);
    const given = params.inputs;
    const inputIds = (Array.isArray(given) ? given : Object.values(given)).map((t) => t?.dataId ?? null);
    // A reshape on wasm gives its output its input's data id: data made before the step stays so.
    const before = inputIds.filter((id): id is object => id !== null && !made.has(id));
    depth++;
    let out: tf.Tensor | tf.Tensor[];
    const outer = aliases;
    aliases = [];
    let kept: RecordedAlias[];
    try {
      out = runKernelFunc.call(this, params);
    } finally {
      depth--;
      for (const id of before) made.delete(id);
      kept = aliases;
      aliases = outer;
    }
    if (RANDOM_KERNELS.has(params.kernelName)) refuse(`kernel ${params.kernelName} draws random values`);
    const keys = Array.isArray(given) ? null : Object.keys(given);
    const inputs = Array.isArray(given) ? given.slice() : (keys as string[]).map((k) => (given as Record<string, tf.Tensor | null>)[k] ?? null);
    const outputs = Array.isArray(out) ? out.slice() : [out];
    const event: RecordedKernel = { kind: 'kernel', name: params.kernelName, keys, inputs, inputIds, attrs: { ...(params.attrs ?? {}) }, outputs };
    if (inputs.some((t) => t !== null) && inputs.every(isConstant) && !RANDOM_KERNELS.has(params.kernelName)) {
      const backend = tf.engine().backend;
      event.constant = outputs.map((t) => copyValues(backend.readSync(t.dataId), t.dtype) ?? new Float32Array(0));
      for (const t of outputs) constants.add(t.dataId);
    }
    events.push(event, ...kept);
    return out;
  };
  engine.makeTensor = function (this: EngineInternals, values, shape, dtype, backend) {
    const t = makeTensor.call(this, values, shape, dtype, backend);
    if (depth === 0) {
      const copy = copyValues(values, dtype);
      if (!copy) refuse(`a ${dtype} tensor is made inside the step`);
      else {
        constants.add(t.dataId);
        events.push({ kind: 'upload', tensor: t, values: copy });
      }
    }
    return t;
  };
  // A read of a constant of the step (a shape, an axis, a pad made from the static shapes) gives
  // the same values at every step: what JavaScript makes of them lands in attributes, uploads or
  // the kernels run, which the two recordings are compared on. Any other read refuses the plan.
  const readsConstant = (dataId: object) => constants.has(dataId) || (!made.has(dataId) && !feedIds.has(dataId) && !variableIds.has(dataId));
  engine.readSync = function (this: EngineInternals, dataId) {
    if (depth === 0 && !readsConstant(dataId)) refuse(`the step reads a tensor's values into JavaScript (dataSync) ${lastKernel()}`);
    return readSync.call(this, dataId);
  };
  engine.read = function (this: EngineInternals, dataId) {
    if (depth === 0 && !readsConstant(dataId)) refuse(`the step reads a tensor's values into JavaScript (data) ${lastKernel()}`);
    return read.call(this, dataId);
  };
  tf.Variable.prototype.assign = function (this: tf.Variable, value: tf.Tensor) {
    assign.call(this, value);
    if (depth === 0) events.push({ kind: 'assign', variable: this, value });
  };
  try {
    const result = step();
    return { result, events, made, ...(refusal ? { refusal } : {}) };
  } finally {
    engine.runKernelFunc = runKernelFunc;
    engine.makeTensor = makeTensor;
    engine.makeTensorFromTensorInfo = makeTensorFromTensorInfo;
    engine.saveTensorsForBackwardMode = saveTensorsForBackwardMode;
    engine.readSync = readSync;
    engine.read = read;
    tf.Variable.prototype.assign = assign;
  }
}

/** TensorInfo of a tensor as a kernel takes it. */
export function infoOf(t: { dataId: object; shape: number[]; dtype: string }): TensorInfo {
  return { dataId: t.dataId, shape: t.shape, dtype: t.dtype as TensorInfo['dtype'] };
}
