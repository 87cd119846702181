/**
 * `.npy` files on disk: load a features/labels pair for training or evaluation, and save arrays.
 * The byte format lives in {@link ./npy.ts} (pure, no node imports); this file adds the file system.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DataError, ModelFormatError, UsageError } from '../../core/errors.ts';
import { parseNpy, writeNpy, type NpyArray, type NpyData, type NpyWritable } from './npy.ts';

/** A features/labels pair as loaded by {@link loadXY}. */
export interface XYData {
  /** Features, row-major, converted to float32 whatever the file's dtype. */
  x: Float32Array;
  /** Shape of `x`; `xShape[0]` is the number of examples. */
  xShape: number[];
  /** Class index per example. */
  y: Int32Array;
  /** Number of examples (`xShape[0] === y.length`). */
  n: number;
  /**
   * Number of classes: the width of a one-hot `y`, else `options.numClasses` when given,
   * else the largest label + 1.
   */
  numClasses: number;
  /** The form `y` had in the file. */
  yFormat: 'indices' | 'one-hot';
  /** The files that were read. */
  paths: { x: string; y: string };
}

/** Options for {@link loadXY}. */
export interface LoadXYOptions {
  /**
   * The size of the class index space (e.g. `manifest.numClasses`, which counts reserved slots
   * no example uses yet). Labels must be below it; a one-hot `y` must be exactly this wide.
   */
  numClasses?: number;
}

function readNpyFile(path: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DataError(
      `cannot read ${path}: ${(e as Error).message}; check the path (expected a .npy file written by numpy.save or saveNpy)`,
      { path },
    );
  }
  try {
    return parseNpy(bytes, { source: path });
  } catch (e) {
    // A data file, not a model file: the same message under the data error (its own exit code).
    if (e instanceof ModelFormatError) throw new DataError(e.message, e.details);
    throw e;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function resolvePair(pathOrDir: string | { x: string; y: string }): { x: string; y: string } {
  if (typeof pathOrDir === 'object') return { x: pathOrDir.x, y: pathOrDir.y };
  if (isDirectory(pathOrDir)) return { x: join(pathOrDir, 'x.npy'), y: join(pathOrDir, 'y.npy') };
  const name = basename(pathOrDir);
  // x.npy -> y.npy, train_x.npy -> train_y.npy, x_train.npy -> y_train.npy
  const m = /^(.*?)(x)((?:[_.-][^/]*)?\.npy)$/i.exec(name);
  if (m && (m[1] === '' || /[_.-]$/.test(m[1]))) {
    const yName = `${m[1]}${m[2] === 'X' ? 'Y' : 'y'}${m[3]}`;
    return { x: pathOrDir, y: join(dirname(pathOrDir), yName) };
  }
  throw new DataError(
    `${pathOrDir} ${existsSync(pathOrDir) ? 'is' : 'does not exist, so it is'} neither a folder holding x.npy and y.npy nor a features file named like x.npy / train_x.npy; pass a folder that holds both files, or the x file beside its y file`,
    { path: pathOrDir },
  );
}

function toFloat32(data: NpyData): Float32Array {
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}

/**
 * Loads a features/labels pair: `x.npy` (any numeric dtype, converted to float32, first axis =
 * examples) and `y.npy` holding class indices (shape `[n]` or `[n, 1]`, integer or integral
 * float) or one-hot rows (shape `[n, k]`, exactly one 1 per row).
 *
 * @param pathOrDir - a folder holding `x.npy` and `y.npy`; the path of the x file (the y file
 *   is its sibling with x replaced by y: `train_x.npy` -> `train_y.npy`); or explicit paths.
 * @param options - see {@link LoadXYOptions}.
 * @throws DataError when a file cannot be read, the path names no pair, a file is not valid `.npy`, the counts differ, or labels are
 *   not valid class indices / one-hot rows.
 */
export function loadXY(pathOrDir: string | { x: string; y: string }, options: LoadXYOptions = {}): XYData {
  const paths = resolvePair(pathOrDir);
  const xa = readNpyFile(paths.x);
  // Inputs alone where labels are needed: say so, and what takes inputs alone (ENOENT said only "check the path").
  if (!existsSync(paths.y)) {
    throw new DataError(
      `${paths.y}: no labels beside ${paths.x}: data that trains or is measured toward labels needs them (class indices, shape [n], or one-hot rows [n, classes]); save y.npy beside x.npy, or, with inputs alone, train toward the v2 you trained (ndiff train --teacher V2; train({ teacher }))`,
      { path: paths.y },
    );
  }
  const ya = readNpyFile(paths.y);
  if (xa.shape.length < 1) {
    throw new DataError(
      `${paths.x}: features must have at least one axis (examples first), found a scalar; save x with shape [n, ...]`,
      { path: paths.x },
    );
  }
  const n = xa.shape[0];
  const { numClasses: requested } = options;
  if (requested !== undefined && (!Number.isSafeInteger(requested) || requested < 1)) {
    throw new UsageError(`loadXY: numClasses must be a positive integer, found ${requested}`, { numClasses: requested });
  }
  const { y, numClasses, yFormat } = classLabels(ya, n, paths.y, `one per row of ${paths.x}, shape [${xa.shape.join(', ')}]`, requested);
  return { x: toFloat32(xa.data), xShape: xa.shape, y, n, numClasses, yFormat, paths };
}

/**
 * Class labels from a `.npy` array: `[n]` (or `[n, 1]`) non-negative integer class indices, or
 * `[n, classes]` one-hot rows. Anything else (a mask or map per example, regression values) is
 * refused with a {@link DataError} saying what the file holds and what to do.
 *
 * @param ya - the labels file's array.
 * @param n - the number of examples the labels must match.
 * @param yPath - the labels file, for messages.
 * @param examples - what the `n` examples are, for messages ("one per row of x.npy").
 * @param requested - the size of the class index space, when known.
 * @throws DataError for labels of another count, shape or value.
 */
export function classLabels(ya: NpyArray, n: number, yPath: string, examples: string, requested?: number): { y: Int32Array; numClasses: number; yFormat: XYData['yFormat'] } {
  let y: Int32Array;
  let numClasses: number;
  let yFormat: XYData['yFormat'];
  const yShape = ya.shape;
  const isIndexShape = yShape.length === 1 || (yShape.length === 2 && yShape[1] === 1);
  if (isIndexShape) {
    const count = yShape[0];
    if (count !== n) {
      throw new DataError(
        `${yPath}: expected ${n} labels (${examples}), found ${count}; regenerate the pair so both files hold the same examples`,
        { y: yPath, n, found: count },
      );
    }
    y = new Int32Array(n);
    let max = -1;
    for (let i = 0; i < n; i++) {
      const v = Number(ya.data[i]);
      if (!Number.isInteger(v) || v < 0) {
        throw new DataError(
          `${yPath}: label ${i} is ${v}, expected a non-negative integer class index (or one-hot rows); fix the labels`,
          { path: yPath, index: i, value: v },
        );
      }
      y[i] = v;
      if (v > max) max = v;
    }
    numClasses = requested ?? max + 1;
    if (max >= numClasses) {
      throw new DataError(
        `${yPath}: label ${max} is out of range for ${numClasses} classes (expected 0..${numClasses - 1}); the labels must index the model's outputs (ndiff train counts the classes from the width of the model's output; the library from numClasses): fix the labels or use a model with more outputs`,
        { path: yPath, max, numClasses },
      );
    }
    yFormat = 'indices';
  } else if (yShape.length === 2) {
    const [count, k] = yShape;
    if (count !== n) {
      throw new DataError(
        `${yPath}: expected ${n} one-hot rows (${examples}), found ${count}; regenerate the pair so both files hold the same examples`,
        { y: yPath, n, found: count },
      );
    }
    if (requested !== undefined && requested !== k) {
      throw new DataError(
        `${yPath}: one-hot rows are ${k} wide but numClasses is ${requested}; use a model with ${k} outputs (numClasses ${k}) or re-encode the labels`,
        { path: yPath, width: k, numClasses: requested },
      );
    }
    y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let hot = -1;
      for (let j = 0; j < k; j++) {
        const v = Number(ya.data[i * k + j]);
        if (v === 1 && hot === -1) hot = j;
        else if (v !== 0) {
          hot = -2;
          break;
        }
      }
      if (hot < 0) {
        const row = Array.from(ya.data.subarray(i * k, Math.min(i * k + k, i * k + 12)) as ArrayLike<number>);
        throw new DataError(
          `${yPath}: row ${i} is not one-hot (expected exactly one 1 and zeros elsewhere), found [${row.join(', ')}${k > 12 ? ', ...' : ''}]; save class indices or proper one-hot rows`,
          { path: yPath, row: i },
        );
      }
      y[i] = hot;
    }
    numClasses = k;
    yFormat = 'one-hot';
  } else {
    throw new DataError(
      `${yPath}: labels have shape [${yShape.join(', ')}], expected [${n}] class indices or [${n}, classes] one-hot rows; a target per example of another shape (a mask or map, regression values) is not a class label: train such an output toward the new version as a teacher (ndiff train --teacher V2, without y.npy), fine-tuning v2 itself in your own pipeline`,
      { path: yPath, shape: yShape },
    );
  }
  return { y, numClasses, yFormat };
}

/**
 * Writes an array as a `.npy` file (see {@link writeNpy}), creating the parent folder. The file
 * is written under a temporary name and renamed, so a reader never sees half a file.
 *
 * @param path - destination file.
 * @param data - Float32Array, Int32Array, Uint8Array or BigInt64Array (int64).
 * @param shape - the array shape (product = `data.length`).
 * @throws UsageError for an unsupported array or a mismatched shape.
 */
export function saveNpy(path: string, data: NpyWritable, shape: readonly number[]): void {
  const bytes = writeNpy(data, shape);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/**
 * Reads one `.npy` file (see {@link parseNpy}).
 *
 * @throws DataError when the file cannot be read or is not valid `.npy`.
 */
export function loadNpy(path: string): NpyArray {
  return readNpyFile(path);
}

/** Inputs with or without labels, as loaded by {@link loadInputs}. */
export interface InputsData {
  x: Float32Array;
  xShape: number[];
  n: number;
  /** Class index per example, when the labels file exists. */
  y?: Int32Array;
  paths: { x: string; y?: string };
}

/**
 * Loads inputs whose labels are optional (teacher diffs, evaluation against a target model):
 * like {@link loadXY} when the labels file beside `x.npy` exists; the features alone when it
 * does not. A labels file that exists but is invalid is still an error.
 */
export function loadInputs(pathOrDir: string | { x: string; y: string }, options: LoadXYOptions = {}): InputsData {
  const paths = resolvePair(pathOrDir);
  if (existsSync(paths.y)) {
    const d = loadXY(paths, options);
    return { x: d.x, xShape: d.xShape, n: d.n, y: d.y, paths };
  }
  const xa = readNpyFile(paths.x);
  if (xa.shape.length < 1) {
    throw new DataError(`${paths.x}: features must have at least one axis (examples first), found a scalar; save x with shape [n, ...]`, { path: paths.x });
  }
  return { x: toFloat32(xa.data), xShape: xa.shape, n: xa.shape[0], paths: { x: paths.x } };
}
