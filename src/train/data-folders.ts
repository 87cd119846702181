/**
 * Data folders for graph programs (ONNX models, TF.js graph models), as `ndiff train` and
 * `ndiff diff --eval` read them: one `.npy` per model input, named after it (`input.npy`),
 * examples on the first axis; a 0-d array (`sr.npy` holding 16000) is fed as it is to every
 * example; `y.npy` (a class per example, as indices or one-hot rows) when known; for stateful models (`--state in:out`)
 * `sequence.npy`, the sequence of each frame, a sequence's frames consecutive and in order.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { DataError, ModelFormatError, UsageError } from '../core/errors.ts';
import { classLabels, loadNpy } from '../io/npy/files.ts';
import { readOnnxFileBytes } from '../io/onnx/files.ts';
import { openTfliteFile } from '../io/tflite/files.ts';
import { readTfliteGraph } from '../io/tflite/graph.ts';
import { readFile } from 'node:fs/promises';
import { decodeOnnxModel } from '../engine/onnx/model.ts';
import type { ProgramDataset } from '../engine/program/datasets.ts';
import type { ProgramInputValues, ProgramStatePair } from '../engine/program/training-model.ts';

/** `--state in:out` pairs. */
export function parseStatePairs(specs: readonly string[]): ProgramStatePair[] {
  return specs.map((s) => {
    const m = /^([^:]+):([^:]+)$/.exec(s);
    if (!m) throw new UsageError(`--state ${JSON.stringify(s)}: expected INPUT:OUTPUT, the state input and the output that carries it to the next frame (Silero VAD: --state state:stateN)`);
    return { input: m[1], output: m[2] };
  });
}

/** A model input and the file names its values may have in a data folder (the first found is read). */
export interface InputFile {
  name: string;
  files: string[];
}

/** One data folder: `<input>.npy` per fed input, `y.npy` and `sequence.npy` when present. */
export function loadFolder(dir: string, inputs: readonly (string | InputFile)[], what: string, stateful: boolean): { data: ProgramDataset; shared: Record<string, ProgramInputValues> } {
  const wanted = inputs.map((i) => (typeof i === 'string' ? { name: i, files: [`${i}.npy`] } : i));
  const expected = wanted.map((i) => i.files.join(' or ')).join(', ');
  if (!existsSync(dir)) throw new UsageError(`${what} ${dir} does not exist: expected a folder with one .npy per model input (${expected})`);
  const data: ProgramDataset = { inputs: {} };
  const shared: Record<string, ProgramInputValues> = {};
  for (const { name, files } of wanted) {
    const file = files.map((f) => path.join(dir, f)).find((f) => existsSync(f));
    if (!file) throw new DataError(`${what} ${dir} has no ${files.join(' or ')} for input ${JSON.stringify(name)}: give one .npy per model input, named after it (${expected})`, { input: name });
    const a = loadNpy(file);
    const isInt = a.data instanceof Int32Array || a.data instanceof Int16Array || a.data instanceof Int8Array || a.data instanceof Uint8Array || a.data instanceof Uint16Array || a.data instanceof Uint32Array;
    const values = isInt ? Int32Array.from(a.data as ArrayLike<number>) : Float32Array.from(a.data as ArrayLike<number>);
    if (a.shape.length === 0) shared[name] = { values, shape: [] };
    else data.inputs[name] = { values, shape: a.shape.slice(1) };
  }
  const y = path.join(dir, 'y.npy');
  // Class labels as loadXY reads them (indices or one-hot rows), one per example; a mask or map per example is refused, saying so.
  if (existsSync(y)) data.labels = classLabels(loadNpy(y), exampleCount(data), y, `one per example of ${dir}`).y;
  const seq = path.join(dir, 'sequence.npy');
  if (existsSync(seq)) data.sequence = Int32Array.from(loadNpy(seq).data as ArrayLike<number>);
  else if (stateful) throw new DataError(`${what} ${dir} has no sequence.npy: a stateful model (--state) trains on sequences; give the sequence id of every frame (a sequence's frames consecutive and in order)`);
  return { data, shared };
}

/**
 * `--distill-inputs` folders, laid out as `--train` is (one `.npy` per model input; `y.npy` and
 * `sequence.npy` are not read): the inputs alone. An input fed the same to every example
 * (`sr.npy`) may be left out; where given it must hold the training folder's value.
 */
export function loadDistillFolders(dirs: readonly string[], inputs: readonly (string | InputFile)[], shared: Readonly<Record<string, ProgramInputValues>>): ProgramDataset[] {
  const wanted = inputs.map((i) => (typeof i === 'string' ? { name: i, files: [`${i}.npy`] } : i));
  return dirs.map((dir) => {
    // A shared input the folder does not give is the training folder's.
    const given = wanted.filter((i) => !shared[i.name] || i.files.some((f) => existsSync(path.join(dir, f))));
    const { data, shared: own } = loadFolder(dir, given, 'distillInputs (--distill-inputs)', false);
    for (const [name, v] of Object.entries(own)) {
      const t = shared[name];
      if (!t || t.values.length !== v.values.length || t.values.some((x, k) => x !== v.values[k])) {
        throw new DataError(`--distill-inputs ${dir}: input ${JSON.stringify(name)} is fed the same to every example, ${t ? `as ${Array.from(t.values).join(', ')} in --train, here as ${Array.from(v.values).join(', ')}` : 'here, but per example in --train'}: expected the training folder's value; leave ${name}'s file out of this folder or give the same value`, { input: name });
      }
    }
    return { inputs: data.inputs };
  });
}

/** An .onnx file's bytes and its external data files' bytes (by location), as the ONNX executor takes them, read with the store's checks (regular files inside the model's folder; never a FIFO or a device). */
export async function readOnnxModel(file: string, flag: string): Promise<{ bytes: Uint8Array; external: Map<string, Uint8Array> }> {
  try {
    return await readOnnxFileBytes(file);
  } catch (e) {
    if (e instanceof ModelFormatError) throw new ModelFormatError(`${flag}: ${e.message}`, e.details);
    throw e;
  }
}

/** A `.tflite` file's bytes, read through the store's checks (a regular file, at most 2 GiB); `flag` names it in errors. */
export async function readTfliteModel(file: string, flag: string): Promise<Uint8Array> {
  const disk = await openTfliteFile(file).catch((e: unknown) => {
    if (e instanceof ModelFormatError) throw new ModelFormatError(`${flag}: ${e.message}`, e.details);
    throw e;
  });
  try {
    return new Uint8Array(await readFile(disk.file));
  } finally {
    await disk.close();
  }
}

/** The data files of a `.tflite` model's inputs: the input's name with `/` and `:` as `_`, and `x.npy` for a model of one input. */
export function tfliteInputFiles(bytes: Uint8Array, source: string): InputFile[] {
  const g = readTfliteGraph(bytes, source);
  const names = g.inputs.map((i) => g.tensors[i].name);
  return names.map((n) => ({ name: n, files: [`${n.replace(/[/:\\]/g, '_')}.npy`, ...(names.length === 1 ? ['x.npy'] : [])] }));
}

/** The inputs a data folder must give for the ONNX model `bytes` (with its external data files): the graph's inputs that are neither initializers nor carried states. */
export function fedInputs(bytes: Uint8Array, source: string, state: readonly ProgramStatePair[], external?: ReadonlyMap<string, Uint8Array>): string[] {
  const graph = decodeOnnxModel(bytes, { source, ...(external ? { external } : {}) }).graph;
  const fed = new Set(graph.initializers.map((t) => t.name));
  const stateInputs = new Set(state.map((s) => s.input));
  return graph.inputs.map((i) => i.name).filter((n) => !fed.has(n) && !stateInputs.has(n));
}

/** Examples in a data folder (the first input's count). */
export function exampleCount(d: ProgramDataset): number {
  const first = Object.values(d.inputs)[0];
  return first ? first.values.length / Math.max(1, first.shape.reduce((x, n) => x * n, 1)) : 0;
}
