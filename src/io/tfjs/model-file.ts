/**
 * A TF.js model named by its path: a folder holding `model.json` and its shards, or a model JSON
 * file of any name with its shards beside it (as `@vladmandic/human` ships `<name>.json` +
 * `<name>.bin`, several models to a folder; tfjs loads any `.json` URL). Both are read (diff,
 * fingerprint, verify) and updated in place; a model file keeps its name, and the applier's files
 * beside it are named after it, so the models of one folder are updated independently
 * ({@link locateModelFiles}, src/io/durable/control-files.ts).
 *
 * A weights manifest without a model (face-api's `*-weights_manifest.json`: a bare list of
 * `{paths, weights}` groups, the network being built by the app's code) is refused, saying what
 * to pass: with no topology, the fingerprint could not tell two graphs apart (docs/FORMAT.md §14).
 */
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError, UsageError } from '../../core/errors.ts';
import { FOLDER_MODEL_FILES, MODEL_JSON, modelFileNameProblem, modelFilesOf, type ModelFiles } from '../durable/control-files.ts';
import type { OpenOptions } from './options.ts';
import { openTfjsModelDir, type TfjsDirWeightStore } from './dir-store.ts';

/** Where a model path's model JSON is: its folder and the file's name in it. */
export interface TfjsModelLocation {
  dir: string;
  /** `model.json` for a folder, else the file's own name. */
  modelJsonFile: string;
  /** True when the path named a file rather than a folder. */
  isFile: boolean;
}

/** True for a path that names a model JSON file (by its extension), not a folder. */
export function isModelJsonPath(p: string): boolean {
  return /\.json$/i.test(p);
}

/** The model paths commands take, for messages. */
export const MODEL_KINDS = 'a TF.js model folder (model.json and its shards), a model JSON file (<name>.json with its shards beside it), an .onnx or a .tflite file';

/**
 * Resolve a model path. A folder: its `model.json`. A `.json` file: that file, its shards beside
 * it (read-only). A weights manifest file is refused (ModelFormatError) with what to pass instead.
 * @throws ModelFormatError for a weights manifest or a path where nothing is; the file system's other errors
 */
export async function locateTfjsModel(p: string): Promise<TfjsModelLocation> {
  const info = await stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw err;
    throw new ModelFormatError(`no model at ${p}: expected ${MODEL_KINDS}, found nothing at that path; check the path`, { path: p, code: err.code });
  });
  if (info.isDirectory()) return { dir: p, modelJsonFile: MODEL_JSON, isFile: false };
  if (!isModelJsonPath(p)) {
    throw new UsageError(`${p} is a file but not a model JSON file: expected ${MODEL_KINDS}`, { path: p });
  }
  await refuseWeightsManifest(p);
  return { dir: path.dirname(p), modelJsonFile: path.basename(p), isFile: true };
}

/** Refuse a file that is a bare weights manifest (a JSON array), saying what to pass. */
async function refuseWeightsManifest(p: string): Promise<void> {
  // Only the start of the file is needed to tell an array from an object.
  const head = new TextDecoder().decode((await readFile(p)).subarray(0, 64)).replace(/^\uFEFF/, '').trimStart();
  if (!head.startsWith('[')) return;
  throw new ModelFormatError(
    `${p} is a weights manifest (a list of {paths, weights} groups) without a model: the network it feeds is built by the app's code (face-api does so), so its graph is not in the file and a fingerprint could not tell two graphs apart (docs/FORMAT.md, section 14). To diff its weights anyway, pass a folder with a model.json that wraps it and names the code that builds the graph: {"format": "weights-manifest", "modelTopology": {"builtBy": "<package>@<version>"}, "weightsManifest": <this file's list>}, with the shards beside it; a new version of the code then changes the fingerprint`,
    { path: p, weightsManifestOnly: true },
  );
}

/** Open a model path for reading: a folder (its model.json) or a model JSON file with its shards. */
export async function openTfjsModel(p: string, options: OpenOptions = {}): Promise<TfjsDirWeightStore> {
  const where = await locateTfjsModel(p);
  return openTfjsModelDir(where.dir, where.isFile ? { ...options, modelJsonFile: where.modelJsonFile } : options);
}

/** Where a model's files are for an update: its folder and the names of its files there. */
export interface ModelPlace {
  dir: string;
  files: ModelFiles;
}

/**
 * Resolve a model path for an update (or a recovery): a folder is the folder layout
 * (`model.json`, `.ndiff-*`); a model JSON file is updated under its own name, the applier's files
 * named after it (`<file>.ndiff-*`) and the shards an update writes after its stem; `model.json`
 * named as a file is its folder. A path that does not exist is taken by its name (a missing model
 * is reported when it is opened, a missing folder has nothing to recover).
 * @throws ModelFormatError for a weights manifest; UsageError for a file that is not a model JSON
 *   file or is one of the applier's (`<file>.ndiff-journal.json`, a kept `<file>.ndiff-prev`)
 */
export async function locateModelFiles(p: string): Promise<ModelPlace> {
  const info = await stat(p).catch(() => undefined);
  if (info?.isDirectory() || (!info && !isModelJsonPath(p))) return { dir: p, files: FOLDER_MODEL_FILES };
  const name = path.basename(p);
  if (name === MODEL_JSON) return { dir: path.dirname(p), files: FOLDER_MODEL_FILES };
  const problem = modelFileNameProblem(name);
  if (problem) {
    throw new UsageError(`${p} is ${problem}: expected a TF.js model folder (model.json and its shards) or a model JSON file (<name>.json with its shards beside it)`, { path: p });
  }
  if (info) await refuseWeightsManifest(p);
  return { dir: path.dirname(p), files: modelFilesOf(name) };
}
