/**
 * What the runners of `train()` (src/train/front-*.ts) share: where their lines and events go,
 * the kind of a TF.js model path, and the outputs written once a payload is made.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelFormatError, UsageError } from '../core/errors.ts';
import type { ModelFile } from '../core/model-files.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { checkOutputPath, resolveModelId } from '../io/model-paths.ts';
import { TfjsFilesStore, tfjsFileOrder } from '../io/tfjs/files-store.ts';
import { readTfjsModelFiles } from '../io/tfjs/folder-rebuild.ts';
import { fileSystemIO, locateTfjsModel, openTfjsModel, openTfjsModelDir } from '../io/tfjs/index.ts';
import { MODEL_KINDS } from '../io/tfjs/model-file.ts';
import { parseModelJson } from '../io/tfjs/manifest.ts';
import { artifactsOf } from './structural-teacher.ts';

/** One progress event of `train()`: `text` is the line `ndiff train` prints for it. */
export type TrainProgress =
  | { kind: 'message'; text: string }
  | { kind: 'warning'; text: string }
  | { kind: 'batch'; epoch: number; batch: number; batches: number; loss: number; text: string }
  | { kind: 'epoch'; epoch: number; epochs: number; loss: number; text: string };

/** Where a runner reports: progress lines, warnings, the result lines `ndiff train` prints, and the other progress events. */
export interface TrainReporter {
  progress(line: string): void;
  warn(line: string): void;
  out(line: string): void;
  event(e: TrainProgress): void;
}

/** What a runner returns: the `--json` document and the payload. */
export interface FrontResult {
  doc: Record<string, unknown>;
  payload: Uint8Array;
}

/** `format` of a TF.js model path's model JSON (a folder's model.json, or the `.json` named), or undefined when it has none. */
export async function tfjsModelFormat(p: string, flag: string): Promise<string | undefined> {
  const where = await locateTfjsModel(p).catch((e: unknown) => {
    if (e instanceof ModelFormatError) throw new ModelFormatError(`${flag}: ${e.message}`, e.details);
    throw new UsageError(`cannot read ${flag} ${p}: expected ${MODEL_KINDS}`);
  });
  const text = await readFile(path.join(where.dir, where.modelJsonFile), 'utf8').catch(() => {
    throw new UsageError(`no ${where.modelJsonFile} in ${where.dir}: ${flag} must be a TF.js model folder (model.json and its shards) or a model JSON file`);
  });
  try {
    const format = (JSON.parse(text) as { format?: unknown }).format;
    return typeof format === 'string' ? format : undefined;
  } catch {
    return undefined; // the store reports a malformed model JSON with the details
  }
}

/** A handler that loads the model at a TF.js model path (a folder, or a `.json` file beside its shards). */
export async function modelPathIO(p: string): Promise<ReturnType<typeof fileSystemIO>> {
  const where = await locateTfjsModel(p);
  return fileSystemIO(where.dir, where.isFile ? { modelJsonFile: where.modelJsonFile } : {});
}

/** The payload written to `out` when one was asked for. */
export async function writeOut(out: string | undefined, bytes: Uint8Array): Promise<void> {
  if (out !== undefined) await writeFile(out, bytes);
}

/** The first result line: where the payload went (or its size alone when only returned). */
export function wroteLine(out: string | undefined, bytes: number): string {
  return out !== undefined ? `wrote ${out}: ${bytes} bytes` : `payload: ${bytes} bytes`;
}

/** The metrics JSON `ndiff report` reads, when asked for. */
export async function writeMetrics(metricsOut: string | undefined, doc: Record<string, unknown>): Promise<void> {
  if (metricsOut !== undefined) await writeFile(metricsOut, JSON.stringify(doc, null, 2) + '\n');
}

/** An epoch's line, sent as an `epoch` event. */
export function epochEvent(io: TrainReporter, r: { epoch: number; epochs: number; loss: number }, text: string): void {
  io.event({ kind: 'epoch', epoch: r.epoch, epochs: r.epochs, loss: r.loss, text });
}

/**
 * The model id the payload carries: the one given, else the one the base's path recorded; a base
 * given as bytes records none, so it needs the id given.
 */
export async function trainModelId(base: string, given: string | undefined, bytes: boolean): Promise<string> {
  if (bytes && given === undefined) throw new UsageError('which model is this an update of? The base was given as bytes, which record no model id: pass modelId, the id devices know this model by (e.g. modelId: \'kws-en\'), and keep it for every later update of it');
  return resolveModelId(base, given);
}

/**
 * Before any work on a single-file base (`.onnx`, `.tflite`): the outputs asked for can be
 * written, and the model id the payload carries ({@link trainModelId}), in the order the
 * command reports them.
 */
export async function fileTrainOutputs(a: { base: string; modelId?: string; baseBytes?: Uint8Array; out?: string; metricsOut?: string; modelOut?: string }): Promise<string> {
  if (a.out) await checkOutputPath(a.out, 'out (--out)');
  const modelId = await trainModelId(a.base, a.modelId, !!a.baseBytes);
  if (a.metricsOut) await checkOutputPath(a.metricsOut, 'metricsOut (--metrics-out)');
  if (a.modelOut) await checkOutputPath(a.modelOut, 'modelOut (--model-out)');
  return modelId;
}

/**
 * A TF.js model (layers or graph) given by its path (a folder, or a model JSON file beside its
 * shards) or as its files in memory: the model JSON first, then its shards under the paths its
 * manifest names. `label` names it in messages.
 */
export class TfjsSource {
  private readonly given?: ModelFile[];

  constructor(readonly label: string, files?: readonly ModelFile[]) {
    if (files) {
      if (files.length === 0 || !files.every((f) => f && typeof f.path === 'string' && f.bytes instanceof Uint8Array)) {
        throw new UsageError(`${label}: expected a TF.js model's files as { path, bytes } (its model JSON first, then its shards), found ${files.length === 0 ? 'none' : 'another kind of list'}`);
      }
      // The shards in the manifest's order, as a folder is read; a missing or extra one the store refuses by name.
      const order = tfjsFileOrder(parseModelJson(new TextDecoder().decode(files[0].bytes), files[0].path));
      const rest = files.slice(1);
      const ordered = order.map((p) => rest.find((f) => f.path === p)).filter((f): f is ModelFile => f !== undefined);
      this.given = [files[0], ...(ordered.length === rest.length ? ordered : rest)];
    }
  }

  /** Whether the model was given as files (no path: nothing beside it to read or write). */
  get inMemory(): boolean {
    return this.given !== undefined;
  }

  /** The model JSON's `format` (`graph-model`, `layers-model`), or undefined when it names none. */
  async format(flag: string): Promise<string | undefined> {
    if (!this.given) return tfjsModelFormat(this.label, flag);
    try {
      const format = (JSON.parse(new TextDecoder().decode(this.given[0].bytes)) as { format?: unknown }).format;
      return typeof format === 'string' ? format : undefined;
    } catch {
      return undefined; // the store reports a malformed model JSON with the details
    }
  }

  /** The model JSON's text. */
  async modelJsonText(): Promise<string> {
    if (this.given) return new TextDecoder().decode(this.given[0].bytes);
    const where = await locateTfjsModel(this.label);
    return readFile(path.join(where.dir, where.modelJsonFile), 'utf8');
  }

  /** The model's files, the model JSON first and the shards in manifest order. */
  async files(): Promise<ModelFile[]> {
    if (this.given) return this.given;
    const where = await locateTfjsModel(this.label);
    return readTfjsModelFiles(where.dir, where.modelJsonFile);
  }

  /** Its weights as a store; `folderOnly` reads a path as a model folder (a layers-model base). */
  async store(folderOnly = false): Promise<WeightStore> {
    if (this.given) return new TfjsFilesStore(this.given);
    return folderOnly ? openTfjsModelDir(this.label) : openTfjsModel(this.label);
  }

  /** A tfjs handler that loads it. */
  async handler(tf: typeof import('@tensorflow/tfjs')): Promise<import('@tensorflow/tfjs').io.IOHandler> {
    if (this.given) return tf.io.fromMemory(artifactsOf(this.given) as import('@tensorflow/tfjs').io.ModelArtifacts);
    return modelPathIO(this.label);
  }
}
