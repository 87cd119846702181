/**
 * Full model packages: a version's files stored as blobs (a TF.js folder: model.json and the
 * shards it names; an ONNX model: the .onnx file), and a version opened again as a weight store
 * on the build server (its blobs copied into a temporary folder), or a state a lossy payload
 * reached (the version's weights with that payload applied).
 */
import { lstat, mkdtemp, readFile, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { applyPayload } from '../apply/apply.ts';
import { ModelFormatError, UsageError } from '../core/errors.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import { getHasher } from '../core/hasher.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { gridBytesPerValue } from '../core/grid.ts';
import { storedModelBytes } from '../diff/build.ts';
import { openOnnxFile } from '../io/onnx/files.ts';
import { openTfliteFile } from '../io/tflite/files.ts';
import { SAFETENSORS_FILE } from '../io/safetensors/files.ts';
import { openWeightsFile } from '../io/durable/weights-file.ts';
import { onnxExternalLocations } from '../io/onnx/store.ts';
import { openTfjsModelDir, referencedFiles } from '../io/tfjs/index.ts';
import { readRegularFile, writeFileAtomically } from '../io/durable/durable.ts';
import type { PackageFile } from '../updater/manifest.ts';
import { copyBlob, readBlob, writeBlob } from './blobs.ts';
import { isGgufModelPath, storeGgufPackage } from './gguf.ts';
import { lossyChain, type ReleaseRecord } from './record.ts';

/** The kind of model at `modelPath`: a `.onnx`, `.tflite`, `.safetensors` or `.gguf` file, else a TF.js folder. */
export function modelKindOf(modelPath: string): ReleaseRecord['modelKind'] {
  return /\.onnx$/i.test(modelPath) ? 'onnx' : /\.tflite$/i.test(modelPath) ? 'tflite' : /\.safetensors$/i.test(modelPath) ? 'safetensors' : isGgufModelPath(modelPath) ? 'gguf' : 'tfjs';
}

const PACKAGE_PATH = /^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,199}$/;

/** Open a model file or folder as a weight store, with the bytes of its weights as stored (what `1%` budgets are a share of). */
export async function openModelAt(modelPath: string): Promise<{ store: WeightStore; weightBytes: number; close(): Promise<void> }> {
  if (modelKindOf(modelPath) === 'gguf') throw new UsageError(`${modelPath}: a GGUF version is diffed block by block (src/release/gguf.ts), not opened as weights: this step takes TF.js folders, .onnx, .tflite and .safetensors files`);
  if (modelKindOf(modelPath) === 'onnx') {
    const disk = await openOnnxFile(modelPath);
    const store = disk.contents;
    const weightBytes = store.weights().reduce((n, t) => n + gridBytesPerValue(store.grid(t.name)) * t.shape.reduce((a, b) => a * b, 1), 0);
    // An ONNX store reads its external data files through open handles: closed by `close`.
    return { store, weightBytes, close: () => disk.close() };
  }
  if (modelKindOf(modelPath) === 'tflite') {
    const disk = await openTfliteFile(modelPath);
    const store = disk.contents;
    return { store, weightBytes: store.storedWeightBytes(), close: () => disk.close() };
  }
  if (modelKindOf(modelPath) === 'safetensors') {
    // Read whole through the crash-safe applier's checks (a regular file, its header before a tensor).
    const disk = await openWeightsFile(modelPath, SAFETENSORS_FILE);
    return { store: disk.contents, weightBytes: storedModelBytes(disk.contents), close: () => disk.close() };
  }
  const store = await openTfjsModelDir(modelPath);
  return { store, weightBytes: storedModelBytes(store), close: async () => {} };
}

/** The files of the model at `modelPath` (names on the device and paths on this machine). */
async function modelFiles(modelPath: string): Promise<{ name: string; from: string }[]> {
  if (modelKindOf(modelPath) === 'onnx') {
    const bytes = new Uint8Array(await readFile(modelPath));
    const external = onnxExternalLocations(bytes, modelPath);
    if (external.length) {
      throw new UsageError(`${modelPath} keeps weights in external data files (${external.slice(0, 3).join(', ')}): release folders hold single-file ONNX models for now; save the model with its weights inside (onnx.save_model(..., save_as_external_data=False))`, { external });
    }
    return [{ name: path.basename(modelPath), from: modelPath }];
  }
  if (modelKindOf(modelPath) !== 'tfjs') return [{ name: path.basename(modelPath), from: modelPath }];
  const names = await referencedFiles(modelPath);
  return names.map((n) => ({ name: n, from: path.join(modelPath, n) }));
}

/**
 * Every file of a TF.js folder must be a regular file inside it: a shard that is a link to a file
 * elsewhere (a secret of the right size) would be published and signed. Links within the folder
 * are followed; anything else is refused before a byte is read.
 */
async function checkInsideModel(modelPath: string, sources: { name: string; from: string }[]): Promise<void> {
  if (modelKindOf(modelPath) !== 'tfjs') return;
  const root = await realpath(modelPath);
  for (const f of sources) {
    const st = await lstat(f.from).catch(() => undefined);
    if (!st) throw new UsageError(`${modelPath}: model.json names ${f.name}, which is not there: the model folder is incomplete`, { file: f.name });
    const real = st.isSymbolicLink() ? await realpath(f.from).catch(() => undefined) : f.from;
    const inside = real !== undefined && (st.isSymbolicLink() ? path.dirname(real) === root || real.startsWith(root + path.sep) : true);
    const target = real ? await stat(real).catch(() => undefined) : undefined;
    if (!inside || !target?.isFile()) {
      throw new UsageError(`${modelPath}: ${f.name} is ${!inside ? `a link to ${real ?? 'nothing'}, outside the model folder` : 'not a regular file'}: a release publishes the model's own files only. Copy the file into the folder (or fix the link), then add again`, { file: f.name });
    }
  }
}

/** Refuse a file name a release cannot ship. */
function checkPackageName(modelPath: string, name: string): void {
  if (!PACKAGE_PATH.test(name)) {
    throw new UsageError(`${modelPath}: the file name ${JSON.stringify(name)} cannot be shipped (a release keeps model files in one folder, named with letters, digits and _.@+-, not starting with a dot): rename it in the model`, { file: name });
  }
}

/** Store the model's files as blobs and return them with its fingerprint. */
export async function storePackage(releaseDir: string, modelPath: string): Promise<{ files: PackageFile[]; fingerprint: string }> {
  const info = await stat(modelPath).catch(() => undefined);
  if (!info) throw new UsageError(`model (--model) ${modelPath} does not exist: expected a TF.js model folder (model.json + shards), an .onnx, .tflite, .safetensors or .gguf file`);
  if (modelKindOf(modelPath) === 'gguf') return storeGgufPackage(releaseDir, modelPath, (name) => checkPackageName(modelPath, name));
  const sources = await modelFiles(modelPath);
  await checkInsideModel(modelPath, sources);
  const model = await openModelAt(modelPath);
  const fingerprint = await Promise.resolve().then(async () => fingerprintStore(await getHasher(), model.store).fingerprint).finally(model.close);
  const files: PackageFile[] = [];
  for (const f of sources) {
    checkPackageName(modelPath, f.name);
    const bytes = await readRegularFile(f.from);
    if (!bytes) throw new UsageError(`${f.from} went away while the version was stored: add it again when the model is complete`);
    files.push({ path: f.name, ...(await writeBlob(releaseDir, bytes)) });
  }
  return { files, fingerprint };
}

/** A version's files copied out of the blobs into a fresh temporary folder; call `dispose` after use. */
export async function materializeVersion(releaseDir: string, record: ReleaseRecord, version: number): Promise<{ path: string; dispose(): Promise<void> }> {
  const v = record.versions.find((x) => x.version === version);
  if (!v) throw new ModelFormatError(`release record lists no version ${version}`);
  const dir = await mkdtemp(path.join(tmpdir(), 'ndiff-release-'));
  for (const f of v.files) await copyBlob(releaseDir, f, path.join(dir, f.path));
  const at = record.modelKind !== 'tfjs' ? path.join(dir, v.files[0].path) : dir;
  return { path: at, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** A state of a version opened on the build server (see {@link openState}). */
export interface OpenedState {
  store: WeightStore;
  weightBytes: number;
  /** The state's model on disk (a TF.js folder, or the model file) when it is a version as stored; absent for a state a payload reached in memory. */
  path?: string;
  dispose(): Promise<void>;
}

/**
 * The weights of a state of `version`: the version itself, or (with `via`) the state the lossy
 * payload `via` reached, rebuilt as the devices that hold it got there: its chain of lossy
 * payloads ({@link lossyChain}) applied in order to a temporary copy of the version the chain
 * starts from. Checked against the fingerprint expected.
 */
export async function openState(releaseDir: string, record: ReleaseRecord, version: number, fingerprint: string, via?: string): Promise<OpenedState> {
  const chain = via === undefined ? [] : lossyChain(record, via);
  const files = await materializeVersion(releaseDir, record, chain.length ? chain[0].fromVersion : version);
  try {
    const opened = await openModelAt(files.path);
    try {
      const hasher = await getHasher();
      for (const payload of chain) await applyPayload(opened.store, await readBlob(releaseDir, payload), { hasher });
      const found = fingerprintStore(hasher, opened.store).fingerprint;
      if (found !== fingerprint) throw new ModelFormatError(`release folder ${releaseDir}: the state of version ${version} opens as ${found}, the record says ${fingerprint}: the folder was damaged or edited`);
    } catch (e) {
      await opened.close();
      throw e;
    }
    return { store: opened.store, weightBytes: opened.weightBytes, ...(chain.length ? {} : { path: files.path }), dispose: async () => { await opened.close(); await files.dispose(); } };
  } catch (e) {
    await files.dispose();
    throw e;
  }
}

/**
 * Write a state of `version` as model files into `dir` (a TF.js folder's files, or the model
 * file), as {@link openState} opens it: for a state a lossy chain reached, the version the chain
 * starts from with the chain's payloads applied there. Checked against the fingerprint expected.
 * @returns the model's path (the folder, or the file in it)
 */
export async function writeState(releaseDir: string, record: ReleaseRecord, version: number, fingerprint: string, via: string | undefined, dir: string): Promise<string> {
  const chain = via === undefined ? [] : lossyChain(record, via);
  const v = record.versions.find((x) => x.version === (chain.length ? chain[0].fromVersion : version));
  if (!v) throw new ModelFormatError(`release record lists no version ${version}`);
  for (const f of v.files) await copyBlob(releaseDir, f, path.join(dir, f.path));
  const at = record.modelKind !== 'tfjs' ? path.join(dir, v.files[0].path) : dir;
  const opened = await openModelAt(at);
  try {
    const hasher = await getHasher();
    // A TF.js folder's store writes the patched shards back on commit; a file model is written below.
    for (const payload of chain) await applyPayload(opened.store, await readBlob(releaseDir, payload), { hasher });
    const found = fingerprintStore(hasher, opened.store).fingerprint;
    if (found !== fingerprint) throw new ModelFormatError(`release folder ${releaseDir}: the state of version ${version} opens as ${found}, the record says ${fingerprint}: the folder was damaged or edited`);
    if (chain.length && record.modelKind !== 'tfjs') await writeFileAtomically(at, (opened.store as unknown as { modelBytes(): Uint8Array }).modelBytes());
  } finally {
    await opened.close();
  }
  return at;
}
