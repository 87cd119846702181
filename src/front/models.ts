/** Model and payload files: which format a path names, opening it, the model id it records, writing the updated model. */
import { access, constants, cp, readFile, stat, writeFile } from 'node:fs/promises';
import { makeDirs } from '../io/durable/durable.ts';
import * as path from 'node:path';
import { dirname } from 'node:path';
import { applyPayload } from '../apply/index.ts';
import { getHasher } from '../core/hasher.ts';
import { isModelJsonPath, locateTfjsModel, openTfjsModel, openTfjsModelDir } from '../io/tfjs/index.ts';
import { manifestPaths, parseModelJson } from '../io/tfjs/manifest.ts';
import { openOnnxFile, saveOnnxFileAs } from '../io/onnx/files.ts';
import { openTfliteFile, saveTfliteFileAs } from '../io/tflite/files.ts';
import { openSafetensorsFile } from '../io/safetensors/files.ts';
import type { OnnxTensorEntry } from '../io/onnx/store.ts';
import { FOLDER_FILE, readFolderModelId, recordFolderModelId } from '../io/tfjs/folder-update.ts';
import { MODEL_ID_SUFFIX, readModelIdRecord } from '../io/durable/model-id-file.ts';
import { decodePayload } from '../core/format.ts';
import { UsageError } from '../core/errors.ts';
import { readPayloadFile as readPayloadFileWithin } from '../io/durable/payload-file.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { storedModelBytes } from '../diff/build.ts';
import { openModelAt } from '../release/package.ts';

/** True for a path the CLI treats as an ONNX model file (by its extension). */
export function isOnnxPath(p: string): boolean {
  return /\.onnx$/i.test(p);
}

/** True for a path the CLI treats as a LiteRT model file (by its extension). */
export function isTflitePath(p: string): boolean {
  return /\.tflite$/i.test(p);
}

/** True for a single-file model (`.onnx` or `.tflite`): its model id and state are recorded beside the file, and it is patched as a file. */
export function isModelFilePath(p: string): boolean {
  return isOnnxPath(p) || isTflitePath(p);
}

/** True for a path taken as a safetensors file (by its extension): its weights are diffed and patched like a TF.js folder's, in the file's bytes. */
export function isSafetensorsPath(p: string): boolean {
  return /\.safetensors$/i.test(p);
}

/** What kind of model a path names, for messages: `.onnx file`, `.tflite file`, `.safetensors file`, `TF.js folder`. */
export function modelKindText(p: string): string {
  return isOnnxPath(p) ? 'an .onnx file' : isTflitePath(p) ? 'a .tflite file' : isSafetensorsPath(p) ? 'a .safetensors file' : 'a TF.js folder';
}

/** An opened model: a TF.js folder, an ONNX, LiteRT or safetensors file. */
export interface OpenedModel {
  kind: 'folder' | 'onnx' | 'tflite' | 'safetensors';
  store: WeightStore;
  /** Bytes of the patchable weights as stored (storedModelBytes), what `1%` budgets are a percentage of. */
  weightBytes: number;
  /** Close the files the store holds open (an ONNX model's external data files). */
  close(): Promise<void>;
}

/**
 * Open a model by its path: a `.onnx` file (and its external data), a `.tflite` file or a TF.js model folder.
 * `lazy` reads a folder's shards when first used.
 */
export async function openModel(p: string, options: { lazy?: boolean } = {}): Promise<OpenedModel> {
  // A single-file model: its weights as stored (float32 4 bytes, halves 2, int8/uint8 1), what a payload may change.
  if (isModelFilePath(p)) return { kind: isOnnxPath(p) ? 'onnx' : 'tflite', ...(await openModelAt(p)) };
  if (isSafetensorsPath(p)) {
    // Read whole into memory (the file is not held open); F32, F16 and BF16 tensors are its weights.
    const store = (await openSafetensorsFile(p)).contents;
    return { kind: 'safetensors', store, weightBytes: storedModelBytes(store), close: async () => {} };
  }
  // A folder (its model.json), or a model JSON file with its shards beside it (read-only).
  const store = await openTfjsModel(p, options.lazy ? { lazy: true } : {});
  return { kind: 'folder', store, weightBytes: storedModelBytes(store), close: async () => {} };
}

/** The dtype column of `fingerprint --tensors` (ONNX tensors carry one). */
export function dtypeOf(entry: { name: string }): string {
  return (entry as Partial<OnnxTensorEntry>).dtype ?? 'float32';
}

/**
 * Read a payload file: refused from its size when over `maxPayloadBytes` (never read whole),
 * and refused when it is not a regular file (see src/io/durable/payload-file.ts).
 */
export async function readPayloadFile(path: string, maxPayloadBytes?: number): Promise<Uint8Array> {
  return readPayloadFileWithin(path, maxPayloadBytes === undefined ? {} : { maxPayloadBytes });
}

/** `--expires` as seconds since the epoch: an ISO date or a duration from now (`30d`, `12h`, `90m`). */
export function parseExpiry(s: string, now = Date.now()): number {
  const d = /^(\d+)\s*([dhm])$/.exec(s.trim());
  if (d) return Math.floor(now / 1000) + Number(d[1]) * { d: 86400, h: 3600, m: 60 }[d[2] as 'd' | 'h' | 'm'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`--expires ${JSON.stringify(s)} is not understood: use an ISO date (2027-01-31T00:00:00Z) or a duration from now (30d, 12h, 90m)`);
  return Math.floor(t / 1000);
}

/**
 * `--model-out`: copy the base folder (or a model JSON file and its shards, as model.json) to
 * `outDir` and apply the payload to it, giving the model
 * exactly as a device holds it after this update (the base of the next diff in a chain: base +
 * payload can differ from the target in the last bit of a weight). Returns its fingerprint.
 */
export async function writeUpdatedModel(baseDir: string, outDir: string, payload: Uint8Array): Promise<string> {
  if (isOnnxPath(baseDir)) {
    // An ONNX file: patch it in memory (external data a tensor at a time), write the new files beside outDir.
    const disk = await openOnnxFile(baseDir);
    try {
      const res = await applyPayload(disk.contents, payload, { hasher: await getHasher() });
      await saveOnnxFileAs(disk, res.changedTensors, outDir);
      return res.targetFingerprint;
    } finally {
      await disk.close();
    }
  }
  if (isTflitePath(baseDir)) {
    const disk = await openTfliteFile(baseDir);
    try {
      const res = await applyPayload(disk.contents, payload, { hasher: await getHasher() });
      await saveTfliteFileAs(disk, res.changedTensors, outDir);
      return res.targetFingerprint;
    } finally {
      await disk.close();
    }
  }
  if (isSafetensorsPath(baseDir)) {
    // A safetensors file: a copy patched in place (written back atomically by its store's commit).
    await makeDirs(dirname(outDir));
    await cp(baseDir, outDir);
    const fingerprint = (await applyPayload(await openSafetensorsFile(outDir), payload, { hasher: await getHasher() })).targetFingerprint;
    return fingerprint;
  }
  await makeDirs(outDir);
  const where = await locateTfjsModel(baseDir);
  if (where.isFile) {
    // A model JSON file among others: the model alone, in a folder of its own, as model.json.
    const json = await readFile(path.join(where.dir, where.modelJsonFile));
    await writeFile(path.join(outDir, 'model.json'), json);
    for (const p of manifestPaths(parseModelJson(new TextDecoder().decode(json), baseDir))) await cp(path.join(where.dir, p), path.join(outDir, p));
  } else await cp(baseDir, outDir, { recursive: true });
  const fingerprint = (await applyPayload(await openTfjsModelDir(outDir), payload, { hasher: await getHasher() })).targetFingerprint;
  // The folder holds this payload's model: the next diff against it defaults to the same id.
  await recordFolderModelId(outDir, decodePayload(payload).header.modelId);
  return fingerprint;
}

/**
 * The model id a diff of `baseDir` carries: `--model-id` when given, else the id the base
 * recorded (an apply, or `--model-out`, writes it in `.ndiff-folder.json`; beside a model file,
 * `<file>.ndiff-model.json`). Never the folder's or file's name: the next update, made from
 * `models/v2`, would carry another id and every device would refuse it. One id along a chain of
 * updates is what the device's rollback protection and its model-id check key on.
 */
export async function resolveModelId(baseDir: string, given: string | undefined): Promise<string> {
  if (given !== undefined) {
    if (given.length === 0) throw new UsageError('--model-id is empty: give the id devices know this model by, e.g. --model-id kws-en');
    return given;
  }
  // A <name>.json model's id is recorded beside it, as an .onnx file's is.
  const recorded = isModelFilePath(baseDir) || isSafetensorsPath(baseDir) ? await readModelIdRecord(baseDir) : await readFolderModelId(baseDir);
  if (recorded !== undefined) return recorded;
  const where = isModelFilePath(baseDir) || isSafetensorsPath(baseDir) || isModelJsonPath(baseDir) ? `${baseDir} records no model id (no ${baseDir + MODEL_ID_SUFFIX})` : `${baseDir} records no model id (no ${FOLDER_FILE})`;
  throw new UsageError(
    `which model is this an update of? ${where}: pass --model-id ID, the id devices know this model by (e.g. --model-id kws-en), and keep it for every later update of it. It is not taken from the ${isModelFilePath(baseDir) || isSafetensorsPath(baseDir) ? 'file' : 'folder'} name: the next update, made from another folder, would carry another id and devices would refuse it.${isModelFilePath(baseDir) || isSafetensorsPath(baseDir) ? '' : ' --model-out records the id in the updated folder, so a diff from that folder reads it'}`,
    { base: baseDir },
  );
}

/**
 * Check, before any long work, that `path` can be written as the output of `flag`: its folder is
 * created if missing and must be writable, and `path` must not be a folder. Training for an hour
 * and then failing to write the payload is the failure this prevents.
 */
export async function checkOutputPath(path: string, flag: string, kind: 'file' | 'folder' = 'file'): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (existing && kind === 'file' && existing.isDirectory()) {
    throw new UsageError(`${flag} ${path} is a folder: name a file to write`, { path });
  }
  const parent = kind === 'folder' && !existing ? dirname(path) : kind === 'folder' ? path : dirname(path);
  try {
    await makeDirs(parent);
    await access(parent, constants.W_OK);
    if (existing && kind === 'file') await access(path, constants.W_OK);
  } catch (e) {
    throw new UsageError(`cannot write ${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} on ${existing && kind === 'file' ? path : parent}; choose a writable location`, { path });
  }
}
