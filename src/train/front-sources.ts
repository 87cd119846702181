/**
 * What the runners of `train()` (src/train/front-*.ts) share: where their lines and events go,
 * the kind of a TF.js model path, and the outputs written once a payload is made.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { resolveModelId } from '../io/model-paths.ts';
import { fileSystemIO, locateTfjsModel } from '../io/tfjs/index.ts';

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
  const where = await locateTfjsModel(p).catch(() => {
    throw new UsageError(`cannot read ${flag} ${p}: expected a TF.js model folder (model.json and its shards), a model JSON file (<name>.json with its shards beside it) or an .onnx file`);
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
