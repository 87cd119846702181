/**
 * Model and payload paths on a build server, as `ndiff` and the library calls that mirror it
 * (`train()` in `neural-diff/train`) take them: which kind of model a path names, the model id a
 * diff of it carries, outputs checked writable before long work, the updated model written as a
 * device gets it. Node only (file system); the device applier never imports this.
 */
import { access, constants, cp, readFile, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { dirname } from 'node:path';
import { applyPayload } from '../apply/index.ts';
import { UsageError } from '../core/errors.ts';
import { decodePayload } from '../core/format.ts';
import { getHasher } from '../core/hasher.ts';
import { makeDirs } from './durable/durable.ts';
import { MODEL_ID_SUFFIX, readModelIdRecord } from './durable/model-id-file.ts';
import { readPayloadFile as readPayloadFileWithin } from './durable/payload-file.ts';
import { ONNX_FILE, openOnnxFile, saveOnnxFileAs } from './onnx/files.ts';
import { openTfliteFile, saveTfliteFileAs, TFLITE_FILE } from './tflite/files.ts';
import { openSafetensorsFile, SAFETENSORS_FILE } from './safetensors/files.ts';
import type { WeightsFileFormat } from './durable/weights-file.ts';
import { isModelFilePath, isOnnxPath, isSafetensorsPath, isTflitePath } from './path-kinds.ts';
import { FOLDER_FILE, readFolderModelId, recordFolderModelId } from './tfjs/folder-update.ts';
import { isModelJsonPath, locateTfjsModel, openTfjsModelDir } from './tfjs/index.ts';
import { manifestPaths, parseModelJson } from './tfjs/manifest.ts';

export { isGgufPath, isModelFilePath, isOnnxPath, isSafetensorsPath, isTflitePath } from './path-kinds.ts';

/** The crash-safe file format of a single-file model path ({@link isModelFilePath}), by its extension; undefined for a TF.js model. */
export function weightsFileFormatOf(p: string): WeightsFileFormat | undefined {
  return isOnnxPath(p) ? ONNX_FILE : isTflitePath(p) ? TFLITE_FILE : isSafetensorsPath(p) ? SAFETENSORS_FILE : undefined;
}

/**
 * Read a payload file: refused from its size when over `maxPayloadBytes` (never read whole),
 * and refused when it is not a regular file (see src/io/durable/payload-file.ts).
 */
export async function readPayloadFile(path: string, maxPayloadBytes?: number): Promise<Uint8Array> {
  return readPayloadFileWithin(path, maxPayloadBytes === undefined ? {} : { maxPayloadBytes });
}

export { parseExpiry } from '../core/expiry.ts';

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
    if (given.length === 0) throw new UsageError('modelId (--model-id) is empty: give the id devices know this model by, e.g. kws-en (--model-id kws-en)');
    return given;
  }
  // A <name>.json model's id is recorded beside it, as an .onnx file's is.
  const recorded = isModelFilePath(baseDir) ? await readModelIdRecord(baseDir) : await readFolderModelId(baseDir);
  if (recorded !== undefined) return recorded;
  const where = isModelFilePath(baseDir) || isModelJsonPath(baseDir) ? `${baseDir} records no model id (no ${baseDir + MODEL_ID_SUFFIX})` : `${baseDir} records no model id (no ${FOLDER_FILE})`;
  throw new UsageError(
    `which model is this an update of? ${where}: pass modelId (--model-id ID), the id devices know this model by (e.g. kws-en), and keep it for every later update of it. It is not taken from the ${isModelFilePath(baseDir) ? 'file' : 'folder'} name: the next update, made from another folder, would carry another id and devices would refuse it.${isModelFilePath(baseDir) ? '' : ' modelOut (--model-out) records the id in the updated folder, so a diff from that folder reads it'}`,
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
