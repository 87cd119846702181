/**
 * `ndiff diff --calibrate TEXT` on two GGUF models: the calibration pass that weighs each changed
 * tensor by what its change does to the outputs, measured through llama.cpp (the runtime devices
 * run). For every changed tensor, a copy of the base with that tensor alone taken from the target
 * is run beside the target on the text, and the drop of mean KL(target || model) from the base's
 * is that tensor's gain. Its weight is the gain per unit of its squared dequantized change, so the
 * on-grid ranking (src/gguf-diff/ranking.ts) orders blocks across tensors by their estimated
 * effect on the outputs, and within a tensor by their change. A tensor whose change alone brings
 * the model no closer (a gain of zero or less: its effect shows only with others) keeps a small
 * weight, ranked after the others by its change.
 *
 * The tensors indexed by token are weighed row by row as well: a row of the output head moves
 * that token's logit, which matters in proportion to how likely the target makes the token on
 * the text; a row of the token embeddings matters as often as the token is read. Their rows are
 * weighed by the target's mean probability of the token and by the token's share of the input
 * (both for tied embeddings), a floor of 1% of a uniform share added, scaled so the tensor's
 * weighed change is its change.
 *
 * Cost: one model run per changed tensor on `maxTokens` tokens (default
 * {@link CALIBRATION_TOKENS}), beside one run of the target per batch of copies; the base is
 * copied once per copy measured at a time (at most {@link COPY_BYTES} of copies, one for a large
 * model), each copy taking one tensor from the target for a run and the base's bytes back after.
 * Deterministic (llama.cpp on one thread gives the same figures every run), so the payload is too.
 */
import { copyFile, mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DataError } from '../../core/errors.ts';
import { openGgufModel } from '../../io/gguf/files.ts';
import { ggufModelFiles } from '../../io/gguf/in-place.ts';
import type { GgufTensorInfo } from '../../io/gguf/header.ts';
import type { GgufModel } from '../../io/gguf/model.ts';
import { rowChange, type TensorWeight, type TensorWeights } from '../../gguf-diff/index.ts';
import { NO_PROGRESS, type Progress } from '../progress.ts';
import { measureGguf, type GgufTokenStats } from './gguf-runtime.ts';

/** Tokens of the calibration text each copy runs on by default. */
export const CALIBRATION_TOKENS = 1024;
/** Bytes of model copies made for one measuring run at most (at least one copy). */
const COPY_BYTES = 256 << 20;
/** Copies measured in one run at most (each is a model loaded at once). */
const COPIES_PER_RUN = 16;
/** Bytes copied from the target per read. */
const SLICE = 4 << 20;
/** A row of a tensor indexed by token weighs at least this share of a uniform row. */
const ROW_FLOOR = 0.01;
/** The output head and the token embeddings, as llama.cpp names them. */
const OUTPUT_HEAD = 'output.weight';
const TOKEN_EMBEDDINGS = 'token_embd.weight';
/** A tensor's gain counts as at least this share of the largest gain (a gain of zero or less included), spread over its change. */
const FLOOR_SHARE = 1e-3;

/** One tensor's row of {@link GgufCalibrationReport}. */
export interface GgufTensorCalibration {
  tensor: string;
  /** Its squared dequantized change (sum over its weights of (v2 - v1)^2). */
  squaredChange: number;
  /** Mean KL(target || base with this tensor alone taken from the target), nats. */
  meanKl: number;
  /** The base's mean KL minus `meanKl`: what carrying this tensor alone removes. */
  gain: number;
  /** The multiplier of its squared change in the ranking. */
  weight: number;
  /** For the tensors indexed by token: what its rows are weighed by. */
  rows?: 'target probability' | 'input frequency' | 'both';
}

/** What the calibration pass measured (`calibration` in `ndiff diff --json`). */
export interface GgufCalibrationReport {
  kind: 'gguf-llama-calibration';
  calibrate: string;
  positions: number;
  /** Mean KL(target || base) on the text, nats. */
  baseKl: number;
  /** Every changed tensor, largest gain first. */
  tensors: GgufTensorCalibration[];
  /** Measuring runs (each loads the target and a batch of copies). */
  runs: number;
  seconds: number;
}

/** What {@link calibrateGgufTensors} needs. */
export interface GgufCalibrationOptions {
  base: string;
  target: string;
  /** A UTF-8 text from where the model runs (`--calibrate`). */
  calibrate: string;
  /** Each changed tensor's squared dequantized change (the ranking's `tensorScore`). */
  tensorScore: ReadonlyMap<string, number>;
  maxTokens?: number;
  progress?: Progress;
  env?: NodeJS.ProcessEnv;
}

/** Where a tensor's bytes are: its part's file and the byte range in it. */
interface TensorPlace {
  name: string;
  part: number;
  from: number;
  bytes: number;
}

function placesOf(model: GgufModel, names: ReadonlySet<string>): TensorPlace[] {
  const places: TensorPlace[] = [];
  model.parts.forEach((p, part) => {
    for (const t of p.header.tensors as readonly GgufTensorInfo[]) if (names.has(t.name)) places.push({ name: t.name, part, from: p.header.dataStart + t.offset, bytes: t.bytes });
  });
  return places;
}

/** Overwrite `place`'s bytes of the copy whose parts are `copyParts` with those of `from` (the target to take it, the base to put it back). */
async function copyTensor(from: GgufModel, copyParts: string[], place: TensorPlace): Promise<void> {
  const fh = await open(copyParts[place.part], 'r+');
  try {
    const source = from.parts[place.part].source;
    for (let at = 0; at < place.bytes; at += SLICE) {
      const n = Math.min(SLICE, place.bytes - at);
      await fh.write(source.read(place.from + at, n), 0, n, place.from + at);
    }
  } finally {
    await fh.close();
  }
}

/**
 * The row multipliers of the changed tensors indexed by token (the module's comment): each row's
 * share (target probability, input frequency, or their mean for tied embeddings) plus the floor,
 * scaled so that the rows' weighed squared change sums to the tensor's squared change.
 */
function tokenRows(a: GgufModel, b: GgufModel, changed: ReadonlySet<string>, stats: GgufTokenStats): Map<string, { rows: Float64Array; by: GgufTensorCalibration['rows'] }> {
  const out = new Map<string, { rows: Float64Array; by: GgufTensorCalibration['rows'] }>();
  const names = new Set(a.parts.flatMap((p) => p.header.tensors.map((t) => t.name)));
  const inputs = stats.inputCounts.reduce((x, y) => x + y, 0);
  const frequency = stats.inputCounts.map((c) => c / Math.max(1, inputs));
  const shares: [string, Float64Array, GgufTensorCalibration['rows']][] = [];
  if (names.has(OUTPUT_HEAD)) shares.push([OUTPUT_HEAD, stats.targetMeanProbability, 'target probability'], [TOKEN_EMBEDDINGS, frequency, 'input frequency']);
  else shares.push([TOKEN_EMBEDDINGS, stats.targetMeanProbability.map((p, i) => (p + frequency[i]) / 2), 'both']);
  for (const [name, share, by] of shares) {
    if (!changed.has(name)) continue;
    const change = rowChange(a, b, name);
    if (change.length !== share.length) continue;
    const rows = share.map((x) => x + ROW_FLOOR / share.length);
    let weighed = 0;
    let total = 0;
    for (let r = 0; r < rows.length; r++) {
      weighed += rows[r] * change[r];
      total += change[r];
    }
    if (!(weighed > 0)) continue;
    for (let r = 0; r < rows.length; r++) rows[r] *= total / weighed;
    out.set(name, { rows, by });
  }
  return out;
}

/**
 * Weigh each changed tensor of `tensorScore` by its measured effect on the outputs (the module's
 * comment). Nothing of `base` or `target` is written; the copies live in a private temporary folder.
 * @throws MissingDependencyError node-llama-cpp is not installed; measureGguf's typed errors
 */
export async function calibrateGgufTensors(o: GgufCalibrationOptions): Promise<{ weights: TensorWeights; report: GgufCalibrationReport }> {
  const text = await stat(o.calibrate).catch(() => undefined);
  if (!text?.isFile()) throw new DataError(`calibrate (--calibrate) ${o.calibrate}: expected a UTF-8 text file from where the model runs (what the devices' users type or read), found ${text ? 'a folder' : 'nothing there'}`, { calibrate: o.calibrate });
  const a = openGgufModel(o.base);
  try {
    const b = openGgufModel(o.target);
    try {
      return await calibrate(o, a.model, b.model);
    } finally {
      b.close();
    }
  } finally {
    a.close();
  }
}

/** {@link calibrateGgufTensors} with both models open. */
async function calibrate(o: GgufCalibrationOptions, base: GgufModel, target: GgufModel): Promise<{ weights: TensorWeights; report: GgufCalibrationReport }> {
  const progress = o.progress ?? NO_PROGRESS;
  const t0 = performance.now();
  const names = [...o.tensorScore.keys()];
  const places = placesOf(base, new Set(names));
  const modelBytes = base.parts.reduce((n, p) => n + p.header.fileSize, 0);
  const perRun = Math.max(1, Math.min(COPIES_PER_RUN, Math.floor(COPY_BYTES / Math.max(1, modelBytes))));
  const parts = ggufModelFiles(o.base);
  const measured = new Map<string, number>();
  let baseKl = Number.NaN;
  let positions = 0;
  let runs = 0;
  let stats: GgufTokenStats | undefined;
  progress(`calibrating on ${o.calibrate}: ${places.length} changed tensor(s), each taken alone from the target and run through llama.cpp, ${perRun} at a time`);
  // perRun copies of the base, made once: each takes one tensor from the target for a run and
  // gets the base's bytes of it back after, so a large model is copied once, not once per tensor.
  const dir = await mkdtemp(path.join(tmpdir(), 'ndiff-gguf-calibrate-'));
  try {
    const copies: string[][] = [];
    for (let k = 0; k < Math.min(perRun, places.length); k++) {
      const sub = path.join(dir, String(k));
      await mkdir(sub);
      const copyParts = parts.map((p) => path.join(sub, path.basename(p)));
      for (const [j, p] of parts.entries()) await copyFile(p, copyParts[j]);
      copies.push(copyParts);
    }
    for (let i = 0; i < places.length; i += perRun) {
      const batch = places.slice(i, i + perRun);
      for (const [k, place] of batch.entries()) await copyTensor(target, copies[k], place);
      const r = await measureGguf({ target: o.target, ...(i === 0 ? { base: o.base } : {}), models: batch.map((_, k) => copies[k][0]), eval: o.calibrate, maxTokens: o.maxTokens ?? CALIBRATION_TOKENS, threads: 1, env: o.env, tokenStats: i === 0 });
      if (i === 0) {
        stats = r.tokenStats;
        baseKl = (r.models.find((m) => m.role === 'base') as { meanKl: number }).meanKl;
      }
      runs++;
      positions = r.positions;
      const rows = r.models.filter((m) => m.role === 'model');
      batch.forEach((place, k) => measured.set(place.name, rows[k].meanKl));
      for (const [k, place] of batch.entries()) await copyTensor(base, copies[k], place);
      progress(`  ${Math.min(i + perRun, places.length)}/${places.length} tensor(s) measured`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const gains = new Map(names.map((n) => [n, baseKl - (measured.get(n) ?? baseKl)]));
  const top = Math.max(0, ...gains.values());
  const floor = top > 0 ? FLOOR_SHARE * top : 1;
  const rowsOf = stats ? tokenRows(base, target, new Set(names), stats) : new Map<string, { rows: Float64Array; by: GgufTensorCalibration['rows'] }>();
  const weights = new Map<string, TensorWeight>();
  const tensors: GgufTensorCalibration[] = names.map((n) => {
    const squaredChange = o.tensorScore.get(n) as number;
    const gain = gains.get(n) as number;
    const weight = Math.max(gain, floor) / Math.max(squaredChange, Number.MIN_VALUE);
    const rows = rowsOf.get(n);
    weights.set(n, rows ? { scale: weight, rows: rows.rows } : { scale: weight });
    return { tensor: n, squaredChange, meanKl: measured.get(n) as number, gain, weight, ...(rows ? { rows: rows.by } : {}) };
  }).sort((x, y) => y.gain - x.gain || (x.tensor < y.tensor ? -1 : 1));
  const seconds = (performance.now() - t0) / 1000;
  progress(`calibrated in ${seconds.toFixed(1)} s on ${positions} positions: the base's KL ${baseKl.toFixed(4)}; the largest gains ${tensors.slice(0, 3).map((t) => `${t.tensor} ${t.gain.toFixed(4)}`).join(', ')}`);
  return { weights, report: { kind: 'gguf-llama-calibration', calibrate: o.calibrate, positions, baseKl, tensors, runs, seconds } };
}
