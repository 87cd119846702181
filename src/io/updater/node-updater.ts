/**
 * The device updater set up for Node and Electron (the app's main process): the model is a TF.js
 * folder or a model file (`.onnx`, `.tflite`, `.safetensors`, `.gguf`), the updater's state and partial downloads live beside it in
 * `<model>.ndiff-updater/` (outside the model, so a full install that replaces the folder keeps
 * them), fetches go through the global `fetch`, and one update runs at a time per model.
 *
 * ```ts
 * import { updateModel } from 'neural-diff/node';
 * const result = await updateModel({ model: 'models/kws', modelId: 'kws', urls: ['https://cdn.example.com/kws/'], trustedKeys: [publicKeyPem] });
 * ```
 */
import * as path from 'node:path';
import { Updater, type UpdateResult, type UpdaterOptions } from '../../updater/updater.ts';
import type { ModelTarget } from '../../updater/target.ts';
import { FileDownloadStore, FileUpdaterState } from './state-files.ts';
import { onnxFileTarget, safetensorsFileTarget, tfjsFolderTarget, tfjsModelFileTarget, tfliteFileTarget } from './targets.ts';
import { ggufFileTarget } from './gguf-target.ts';
import { lockModelDir } from '../durable/lock.ts';
import { makeDirs } from '../durable/durable.ts';

/** Options of {@link updateModel}. */
export interface NodeUpdateOptions extends Omit<UpdaterOptions, 'target' | 'state' | 'downloads' | 'healthCheck'> {
  /** The model: a TF.js folder, a TF.js model JSON file in a shared folder (payloads only), a `.onnx`, `.tflite` or `.safetensors` file, or a `.gguf` model (payloads only, in place). */
  model: string;
  /** The folder of the updater's state and downloads (default `<model>.ndiff-updater`). */
  stateDir?: string;
  /** Runs once an update is in place (load `model` and run one inference); false or a throw rolls back. */
  healthCheck?: (info: { path: string; kind: 'payload' | 'full'; version: number; fingerprint: string }) => boolean | void | Promise<boolean | void>;
}

/** The folder of the updater's state for `model` (see {@link NodeUpdateOptions.stateDir}). */
export function defaultStateDir(model: string): string {
  return path.resolve(model).replace(/[\\/]+$/, '') + '.ndiff-updater';
}

/** The updater target of a model path: a TF.js folder (or its model.json), a model JSON file sharing its folder, an `.onnx`, `.tflite`, `.safetensors` or `.gguf` file. */
export function modelTargetOf(model: string): ModelTarget {
  return /\.gguf$/i.test(model) ? ggufFileTarget(model) : /\.onnx$/i.test(model) ? onnxFileTarget(model) : /\.tflite$/i.test(model) ? tfliteFileTarget(model) : /\.safetensors$/i.test(model) ? safetensorsFileTarget(model) : path.basename(model) === 'model.json' ? tfjsFolderTarget(path.dirname(model)) : /\.json$/i.test(model) ? tfjsModelFileTarget(model) : tfjsFolderTarget(model);
}

/**
 * Whether an earlier apply or update of `model` left an update unfinished beside it (killed, or
 * its health check never finished): the model may run a version that is not confirmed, and the
 * next apply or update finishes it or rolls it back first (with a health check, when it awaited one).
 */
export async function hasUnfinishedUpdate(model: string): Promise<boolean> {
  return (await modelTargetOf(model).hasPending?.()) === true;
}

/** An {@link Updater} over the files of a Node or Electron app. */
export function nodeUpdater(options: NodeUpdateOptions): Updater {
  const stateDir = options.stateDir ?? defaultStateDir(options.model);
  const { model, stateDir: _s, healthCheck, ...rest } = options;
  return new Updater({
    ...rest,
    target: modelTargetOf(model),
    state: new FileUpdaterState(path.join(stateDir, 'state.json')),
    downloads: new FileDownloadStore(path.join(stateDir, 'downloads')),
    ...(healthCheck ? { healthCheck: (info) => healthCheck({ path: model, ...info }) } : {}),
  });
}

/**
 * The folder whose lock keeps one update per model, whatever its state folder: the model's
 * default state folder (a TF.js folder's, also when named by its `model.json`).
 */
function modelUpdateLockDir(model: string): string {
  return defaultStateDir(path.basename(model) === 'model.json' ? path.dirname(model) : model);
}

/**
 * Run one update of `options.model`, one at a time per model: under a lock on its state folder,
 * and on the model's default state folder too when `stateDir` is another, so two updaters with
 * different state folders on one model (whose records and downloads are apart) never run at once
 * (one would finish or undo the other's install while it runs).
 *
 * @throws ModelFormatError when another update of the model, or with the state folder, runs
 */
export async function updateModel(options: NodeUpdateOptions): Promise<UpdateResult> {
  const stateDir = options.stateDir ?? defaultStateDir(options.model);
  const modelLock = modelUpdateLockDir(options.model);
  const dirs = path.resolve(stateDir) === path.resolve(modelLock) ? [stateDir] : [modelLock, stateDir];
  const unlocks: (() => Promise<void>)[] = [];
  try {
    for (const dir of dirs) {
      await makeDirs(dir);
      unlocks.unshift(await lockModelDir(dir));
    }
    return await nodeUpdater({ ...options, stateDir }).update();
  } finally {
    for (const unlock of unlocks) await unlock();
  }
}
