/**
 * The power-loss harness: record the file-system operations of an apply to a model folder
 * (through the applier's own file layer, FileOps; for a single model file, whose applier calls
 * node:fs itself, at node:fs: node-fs-recorder.ts), build every folder a power cut could leave
 * (see fs-model.ts for the persistence model), and for each one:
 *
 * 1. what a loader sees right after the cut (before any recovery): exactly the old or exactly
 *    the new weights, compared value for value (value updates); for a structural rebuild, every
 *    file the loader reads (the model JSON and each shard it names, or the model file) byte for
 *    byte against the old version's files or the new one's;
 * 2. run the applier's recovery as the next `ndiff apply` would (take the lock, recoverModelDir,
 *    or recoverOnnxFile / recoverTfliteFile for a model file, release); then again exactly the
 *    old or the new version; the state file either absent or whole, recording the sequence from
 *    before or the payload's, and never the payload's while the weights are the old ones (ahead
 *    of the weights); the model id file absent or whole; no leftovers (journal, kept previous
 *    version, temporary files, unreferenced shards, lock files);
 * 3. with `rerun`, run the same apply again, as a user would: it must finish (the new weights,
 *    the sequence recorded, no leftovers).
 *
 * Scenarios: an update spread over every shard of a folder as tensorflowjs_converter writes it
 * (first apply: no state file yet), an update of the last layers only (second apply: state
 * file, recorded digests, model id already there; one shard rewritten), an update whose
 * health check fails (switch, then rollback), and a spread update of a model JSON file that
 * shares its folder with another model (`kws.json` + `kws-<i>.bin` beside `face.json` and the
 * files of its own earlier update): the other model's files must stay byte for byte as they were
 * in every crash state, after every recovery and after the re-run, and its sequence in the
 * folder's state file with them.
 *
 * Structural rebuilds (format v7), from the random pair 58 of test/helpers/structural-pairs.ts
 * (tensors added, removed, renamed and reshaped, the graph changed): a TF.js folder rebuilt
 * (applyToModelDir hands the payload to rebuildModelDir; its 2 converter-named shards replaced by
 * 3 content-named ones, the old ones deleted), the same with a failing health check (rolled
 * back), a second rebuild of the rebuilt folder back to the base's layout (sequence 2: state
 * file and model id present; 3 shards replaced by 2), an ONNX file with inline data rebuilt (rebuildOnnxFile), the same rolled back, and a
 * LiteRT file rebuilt (rebuildTfliteFile). For a model file the state file and the model id
 * record are the file's own (`<model>.ndiff-state.json`, `<model>.ndiff-model.json`).
 *
 * The harness runs in one process; recorded crash lock files carry this process's pid, which
 * the lock treats as left by an earlier run (the same rule as for a pid from before a reboot).
 */
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher, type Hasher } from '../../src/core/hasher.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { MemoryWeightStore, readForDigest } from '../../src/core/weight-store.ts';
import { topkDiff } from '../../src/topk-diff/encoder.ts';
import { applyToModelDir, lockModelDir, readFolderModelId, recoverModelDir } from '../../src/io/tfjs/folder-update.ts';
import { FileSequenceStore } from '../../src/io/durable/sequence-file.ts';
import type { FileOps } from '../../src/io/durable/durable.ts';
import { openTfjsModelDir, referencedFiles, writeModelDir } from '../../src/io/tfjs/index.ts';
import { DEFAULT_STATE_FILE, modelFilesOf } from '../../src/io/durable/control-files.ts';
import { baseAndTarget } from '../helpers/models.ts';
import { withTfjsFrame } from '../helpers/dirs.ts';
import { crashStates, describeOp, materialize, RecordingFileOps, snapshotFolder, type CrashState, type FolderImage, type FsOp } from './fs-model.ts';
import { recordNodeFs } from './node-fs-recorder.ts';
import { structuralDiff, structuralDiffFiles } from '../../src/diff/structural.ts';
import { readTfjsModelFiles, TFJS_REBUILD } from '../../src/io/tfjs/folder-rebuild.ts';
import { rebuildOnnxFile, recoverOnnxFile } from '../../src/io/onnx/files.ts';
import { OnnxWeightStore } from '../../src/io/onnx/store.ts';
import { rebuildTfliteFile, recoverTfliteFile } from '../../src/io/tflite/files.ts';
import { TfliteWeightStore } from '../../src/io/tflite/store.ts';
import { STATE_SUFFIX, weightsFileSequenceStore } from '../../src/io/durable/weights-file-update.ts';
import { MODEL_ID_SUFFIX, readModelIdRecord } from '../../src/io/durable/model-id-file.ts';
import type { ModelFile } from '../../src/core/model-files.ts';
import { structuralPair, type PairFile } from '../helpers/structural-pairs.ts';

export interface PowerLossScenario {
  name: string;
  /** The folder before the apply. */
  initial: FolderImage;
  payload: Uint8Array;
  modelId: string;
  /** The payload's sequence, and the one the state file held before (undefined: no state file). */
  sequence: number;
  sequenceBefore?: number;
  /** Value updates: every float tensor of the old and of the new version, for exact comparison. */
  oldTensors?: Map<string, Float32Array>;
  newTensors?: Map<string, Float32Array>;
  /**
   * Structural rebuilds: every file a loader reads (the model JSON and each shard it names, or the
   * model file), name to bytes, of the old and of the new version, compared byte for byte.
   */
  oldFiles?: Map<string, Uint8Array>;
  newFiles?: Map<string, Uint8Array>;
  /** A single model file (ONNX, LiteRT) rebuilt in its folder, instead of a TF.js model. */
  weightsFile?: WeightsFileTarget;
  /** The health check of the recorded apply rejects the update (it ends at the old version). */
  healthFails?: boolean;
  /** The recorded apply has a health check, and it passes (a cut while it runs leaves the switch unconfirmed). */
  healthPasses?: boolean;
  /** A model JSON file sharing the folder with other models (undefined: the folder's model.json). */
  modelFile?: string;
  /** The other models' files in the folder, which every state must hold byte for byte. */
  untouched?: Map<string, Uint8Array>;
  /** Another model's sequence in the folder's state file, which must stay recorded. */
  otherSequence?: { modelId: string; sequence: number };
}

/** A model file rebuilt in place by a structural payload, with the applier's own entry points. */
export interface WeightsFileTarget {
  /** The model file's name in the folder (`model.onnx`). */
  name: string;
  format: 'onnx' | 'tflite';
}

/** The appliers of single model files, as `ndiff apply` calls them for a structural payload. */
const WEIGHTS_FILES = {
  onnx: { rebuild: rebuildOnnxFile, recover: recoverOnnxFile, open: (b: Uint8Array) => new OnnxWeightStore(b) },
  tflite: { rebuild: rebuildTfliteFile, recover: recoverTfliteFile, open: (b: Uint8Array) => new TfliteWeightStore(b) },
} as const;

/** The path an apply is given: the folder, the model JSON file in it, or the model file. */
export function modelPath(dir: string, s: PowerLossScenario): string {
  if (s.weightsFile) return path.join(dir, s.weightsFile.name);
  return s.modelFile ? path.join(dir, s.modelFile) : dir;
}

/**
 * Apply the scenario's payload to the folder `dir` as `ndiff apply` does: applyToModelDir for a
 * TF.js model (which hands a structural payload to rebuildModelDir), rebuildOnnxFile or
 * rebuildTfliteFile for a model file. `fileOps` reaches the TF.js writers only; a model file's
 * applier uses node:fs, which {@link recordNodeFs} records.
 */
async function applyOnce(dir: string, s: PowerLossScenario, options: { fileOps?: FileOps; healthCheck?: () => boolean } = {}): Promise<string> {
  const health = options.healthCheck ? { healthCheck: options.healthCheck } : {};
  if (s.weightsFile) return (await WEIGHTS_FILES[s.weightsFile.format].rebuild(modelPath(dir, s), s.payload, health)).status;
  return (await applyToModelDir(modelPath(dir, s), s.payload, { ...(options.fileOps ? { fileOps: options.fileOps } : {}), ...health })).status;
}

/**
 * Run `run` on the folder `dir` (whose files are `initial`) and record its file operations: a
 * TF.js model's through the applier's FileOps (passed to `run`, wrapped by `mutate` if given), a
 * model file's at node:fs.
 */
async function recordRun(s: PowerLossScenario, dir: string, initial: FolderImage, run: (ops?: FileOps) => Promise<void>, mutate?: (ops: FileOps) => FileOps): Promise<FsOp[]> {
  if (s.weightsFile) {
    if (mutate) throw new Error(`${s.name}: a model file's applier does not take FileOps, so it cannot be mutated`);
    return recordNodeFs(dir, initial, () => run());
  }
  const ops = new RecordingFileOps(dir, initial);
  await run(mutate ? mutate(ops) : ops);
  return ops.log;
}

/** The files a settled folder may hold besides the model JSON and its shards (and the other models' files); for a model file, the file and its records. */
function settled(s: PowerLossScenario): Set<string> {
  if (s.weightsFile) return new Set([s.weightsFile.name, s.weightsFile.name + STATE_SUFFIX, s.weightsFile.name + MODEL_ID_SUFFIX]);
  const files = modelFilesOf(s.modelFile);
  return new Set([DEFAULT_STATE_FILE, files.digests, files.modelId, ...(s.untouched?.keys() ?? [])]);
}

const hasherPromise: Promise<Hasher> = getHasher();

/** A root for the harness's folders: a tmpfs where there is one (fsync costs nothing there, and the harness models durability itself). */
export async function harnessRoot(): Promise<string> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return mkdtemp(path.join(base, 'ndiff-power-loss-'));
}

/** Every tensor of a store, its frame (`tfjs:frame`) included. */
function tensorsOf(store: MemoryWeightStore): Map<string, Float32Array> {
  return new Map(store.list().map((t) => [t.name, readForDigest(store, t.name).slice()]));
}

/** The model.json (less its manifest) of the folders {@link writeFolder} writes. */
const FOLDER_MODEL_JSON = { format: 'graph-model', generatedBy: 'power-loss harness', modelTopology: {} } as const;

async function writeFolder(dir: string, store: MemoryWeightStore, shardBytes: number): Promise<void> {
  const tensors = new Map(store.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: store.values(t.name) }]));
  await writeModelDir(dir, { ...FOLDER_MODEL_JSON }, tensors, { shardBytes });
}

/** Rename a folder's shards to the converter's names (`group1-shard3of9.bin`), as a model fresh from tensorflowjs_converter. */
async function converterNames(dir: string): Promise<void> {
  const file = path.join(dir, 'model.json');
  let text = await readFile(file, 'utf8');
  for (const name of await readdir(dir)) {
    const m = /^(group\d+-shard\d+of\d+)-[0-9a-f]{16}\.bin$/.exec(name);
    if (!m) continue;
    await rename(path.join(dir, name), path.join(dir, `${m[1]}.bin`));
    text = text.replace(name, `${m[1]}.bin`);
  }
  await writeFile(file, text);
}

/** The scenarios, their folders and payloads, built under `root`. */
export async function buildScenarios(root: string): Promise<PowerLossScenario[]> {
  const hasher = await hasherPromise;
  // With the frame of the folders writeFolder makes: the payloads are for those folders.
  const pair = baseAndTarget(81);
  const [v1, t2] = [withTfjsFrame(pair.base, FOLDER_MODEL_JSON), withTfjsFrame(pair.target, FOLDER_MODEL_JSON)];
  // Update 1, spread: a change in every tensor, so every shard is rewritten.
  const p12 = topkDiff(hasher, v1, t2, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 1 });
  const v2 = v1.clone();
  for (const [n, v] of p12.targetValues) v2.values(n).set(v);
  // Update 2, last layers: only the output layer changes (the last shard).
  const t3 = v2.clone();
  for (const name of ['out/kernel', 'out/bias']) {
    const w = t3.values(name);
    for (let i = 0; i < w.length; i += 3) w[i] += 0.01 * ((i % 7) - 3);
  }
  const p23 = topkDiff(hasher, v2, t3, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'kws', sequence: 2 });
  if (p23.payload.patches.some((p) => !p.name.startsWith('out/'))) throw new Error('the last-layers payload patches other tensors');
  const v3 = v2.clone();
  for (const [n, v] of p23.targetValues) v3.values(n).set(v);

  const v1dir = path.join(root, 'fixtures', 'v1');
  await writeFolder(v1dir, v1, 2048);
  await converterNames(v1dir);
  const v2dir = path.join(root, 'fixtures', 'v2');
  await cp(v1dir, v2dir, { recursive: true });
  await applyToModelDir(v2dir, p12.bytes);
  const initial1 = await snapshotFolder(v1dir);
  const initial2 = await snapshotFolder(v2dir);
  const shared = await sharedFolder(root, v1dir, hasher);
  return [
    { name: 'spread update, first apply to a converter-written folder (9 shards, all rewritten; no state file yet)', initial: initial1, payload: p12.bytes, modelId: 'kws', sequence: 1, oldTensors: tensorsOf(v1), newTensors: tensorsOf(v2) },
    { name: 'last-layers update, second apply (state file, recorded digests and model id present; 1 of 9 shards rewritten)', initial: initial2, payload: p23.bytes, modelId: 'kws', sequence: 2, sequenceBefore: 1, oldTensors: tensorsOf(v2), newTensors: tensorsOf(v3) },
    { name: 'spread update whose health check fails (switch, then rollback)', initial: initial1, payload: p12.bytes, modelId: 'kws', sequence: 1, oldTensors: tensorsOf(v1), newTensors: tensorsOf(v2), healthFails: true },
    { name: 'spread update of kws.json in a folder shared with face.json (9 shards, all rewritten; face updated before)', initial: shared.initial, payload: p12.bytes, modelId: 'kws', sequence: 1, oldTensors: tensorsOf(v1), newTensors: tensorsOf(v2), modelFile: 'kws.json', untouched: shared.untouched, otherSequence: { modelId: 'face', sequence: 1 } },
    ...(await structuralScenarios(root)),
  ];
}

/** The random structural pair of test/helpers/structural-pairs.ts the rebuild scenarios use: every kind of change at once. */
const STRUCTURAL_SEED = 58;

/** `files` (a TF.js model: model.json, then its shards) with its weights cut into `shards` shards `group1-shard<i>of<n>.bin`. */
function recut(files: readonly PairFile[], shards: number): ModelFile[] {
  const data = Buffer.concat(files.slice(1).map((f) => f.bytes));
  const cut = Math.ceil(data.length / 4 / shards) * 4;
  const paths = Array.from({ length: shards }, (_, i) => `group1-shard${i + 1}of${shards}.bin`);
  const json = JSON.parse(new TextDecoder().decode(files[0].bytes)) as { weightsManifest: { paths: string[] }[] };
  if (json.weightsManifest.length !== 1) throw new Error('recut expects one weights group');
  json.weightsManifest[0].paths = paths;
  return [{ path: files[0].path, bytes: new TextEncoder().encode(JSON.stringify(json)) }, ...paths.map((p, i) => ({ path: p, bytes: new Uint8Array(data.subarray(i * cut, Math.min(data.length, (i + 1) * cut))) }))];
}

/** Name to bytes. */
const fileMap = (files: readonly { path: string; bytes: Uint8Array }[]) => new Map(files.map((f) => [f.path, f.bytes]));

/**
 * The structural rebuilds (format v7): a TF.js folder whose model gains, loses, renames and
 * reshapes tensors and changes its graph, its 2 converter-named shards replaced by 3 new ones
 * (then the same rebuild with a failing health check, rolled back; and a second rebuild of the
 * rebuilt folder back to the base's layout); an ONNX file (inline data,
 * also rolled back by a failing health check) and a LiteRT file with the same changes. The new version's files are the ones a clean apply
 * writes, checked here against the payload's target: for a model file the target byte for byte;
 * for a TF.js folder the target's model JSON but for its shard paths (the device names its
 * shards by content), and the target's shard bytes in order.
 */
async function structuralScenarios(root: string): Promise<PowerLossScenario[]> {
  const hasher = await hasherPromise;
  const out: PowerLossScenario[] = [];

  const tfjs = structuralPair('tfjs', STRUCTURAL_SEED);
  const c = tfjs.changes;
  if (!(c.added && c.removed && c.renamed && c.reshaped && c.graphChanged)) throw new Error(`structural pair ${STRUCTURAL_SEED} no longer has every kind of change: ${JSON.stringify(c)}`);
  const baseFiles = tfjs.baseFiles as PairFile[];
  const targetFiles = recut(tfjs.targetFiles as PairFile[], 3);
  const payload = structuralDiffFiles(hasher, baseFiles, targetFiles, TFJS_REBUILD, { modelId: 'kws', sequence: 1 }).bytes;
  const baseDir = path.join(root, 'fixtures', 'structural-v1');
  await mkdir(baseDir, { recursive: true });
  for (const f of baseFiles) await writeFile(path.join(baseDir, f.path), f.bytes);
  const initial = await snapshotFolder(baseDir);
  // The new version as a clean apply leaves it.
  const doneDir = path.join(root, 'fixtures', 'structural-v2');
  await cp(baseDir, doneDir, { recursive: true });
  await applyToModelDir(doneDir, payload);
  const newFiles = new Map<string, Uint8Array>();
  for (const name of await referencedFiles(doneDir)) newFiles.set(name, new Uint8Array(await readFile(path.join(doneDir, name))));
  checkRebuiltFolder(newFiles, targetFiles);
  const oldFiles = fileMap(baseFiles);
  const tfjsName = `structural rebuild of a TF.js folder (${c.added} tensor(s) added, ${c.removed} removed, ${c.renamed} renamed, ${c.reshaped} reshaped, graph changed; 2 converter-named shards replaced by 3)`;
  out.push({ name: tfjsName, initial, payload, modelId: 'kws', sequence: 1, oldFiles, newFiles });
  out.push({ name: 'structural rebuild of a TF.js folder whose health check fails (switch, then rollback)', initial, payload, modelId: 'kws', sequence: 1, oldFiles, newFiles, healthFails: true });
  // A second rebuild of the rebuilt folder (state file and model id there, its shards content
  // named), back to the base's layout: the 3 shards replaced by 2, the tensors added by the first
  // removed again.
  const secondFrom = await readTfjsModelFiles(doneDir, 'model.json');
  const back = structuralDiffFiles(hasher, secondFrom, baseFiles, TFJS_REBUILD, { modelId: 'kws', sequence: 2 }).bytes;
  const backDir = path.join(root, 'fixtures', 'structural-v3');
  await cp(doneDir, backDir, { recursive: true });
  await applyToModelDir(backDir, back);
  const backFiles = new Map<string, Uint8Array>();
  for (const name of await referencedFiles(backDir)) backFiles.set(name, new Uint8Array(await readFile(path.join(backDir, name))));
  checkRebuiltFolder(backFiles, baseFiles);
  out.push({ name: 'second structural rebuild of the rebuilt TF.js folder, back to the base layout (state file and model id present; 3 shards replaced by 2)', initial: await snapshotFolder(doneDir), payload: back, modelId: 'kws', sequence: 2, sequenceBefore: 1, oldFiles: newFiles, newFiles: backFiles });

  for (const format of ['onnx', 'tflite'] as const) {
    const pair = structuralPair(format, STRUCTURAL_SEED);
    const name = `model.${format}`;
    const bytes = structuralDiff(hasher, pair.base, pair.target, { kind: format, open: WEIGHTS_FILES[format].open }, { modelId: 'vad', sequence: 1 }).bytes;
    const dir = path.join(root, 'fixtures', `structural-${format}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, name), pair.base);
    const scenario: PowerLossScenario = {
      name: `structural rebuild of ${format === 'onnx' ? 'an ONNX file (inline data)' : 'a LiteRT file'} (the same changes)`,
      initial: await snapshotFolder(dir),
      payload: bytes,
      modelId: 'vad',
      sequence: 1,
      oldFiles: new Map([[name, pair.base]]),
      newFiles: new Map([[name, pair.target]]),
      weightsFile: { name, format },
    };
    out.push(scenario);
    if (format === 'onnx') out.push({ ...scenario, name: 'structural rebuild of an ONNX file whose health check fails (switch, then the kept file renamed back)', healthFails: true });
  }
  return out;
}

/** Throw unless `rebuilt` (a clean rebuild's model JSON and shards) is `target` but for the shards' names. */
function checkRebuiltFolder(rebuilt: Map<string, Uint8Array>, target: readonly ModelFile[]): void {
  const [jsonName, ...shards] = [...rebuilt.keys()];
  type Json = { weightsManifest: { paths: string[] }[] };
  const got = JSON.parse(new TextDecoder().decode(rebuilt.get(jsonName))) as Json;
  const want = JSON.parse(new TextDecoder().decode(target[0].bytes)) as Json;
  const unpathed = (j: Json) => JSON.stringify({ ...j, weightsManifest: j.weightsManifest.map((g) => ({ ...g, paths: g.paths.length })) });
  if (unpathed(got) !== unpathed(want)) throw new Error('the rebuilt model JSON is not the target\'s (shard paths aside)');
  if (shards.length !== target.length - 1 || shards.some((n, i) => Buffer.compare(rebuilt.get(n) as Uint8Array, target[i + 1].bytes) !== 0)) throw new Error('the rebuilt shards are not the target\'s');
  if (shards.some((n) => target.some((t) => t.path === n))) throw new Error('the rebuilt shards kept the converter\'s names: the test of old shards deleted is void');
}

/**
 * A folder two model files share, as `@vladmandic/human` ships them: `kws.json` (v1's model, its
 * 9 shards named `kws-<i>.bin`) and `face.json`, which an earlier apply updated in place (its
 * rewritten shard, its digests and model id records beside it, its sequence in the state file).
 */
async function sharedFolder(root: string, v1dir: string, hasher: Hasher): Promise<{ initial: FolderImage; untouched: Map<string, Uint8Array> }> {
  const dir = path.join(root, 'fixtures', 'shared');
  await mkdir(dir, { recursive: true });
  const text = await readFile(path.join(v1dir, 'model.json'), 'utf8');
  const json = JSON.parse(text) as { weightsManifest: { paths: string[] }[] };
  json.weightsManifest = json.weightsManifest.map((g) => ({ ...g, paths: g.paths.map((p) => `kws-${/shard(\d+)of/.exec(p)![1]}.bin`) }));
  for (const g of JSON.parse(text).weightsManifest as { paths: string[] }[]) {
    for (const p of g.paths) await cp(path.join(v1dir, p), path.join(dir, `kws-${/shard(\d+)of/.exec(p)![1]}.bin`));
  }
  await writeFile(path.join(dir, 'kws.json'), JSON.stringify(json));
  // face: another model, shipped as face.json + face.bin, then updated in place.
  const face = baseAndTarget(82);
  const faceTemplate = { format: 'graph-model', generatedBy: 'power-loss harness', modelTopology: { node: [{ name: 'face' }] } };
  const faceDir = path.join(root, 'fixtures', 'face');
  await writeFolder(faceDir, face.base, 1 << 20);
  const faceJson = JSON.parse(await readFile(path.join(faceDir, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  await cp(path.join(faceDir, faceJson.weightsManifest[0].paths[0]), path.join(dir, 'face.bin'));
  faceJson.weightsManifest[0].paths = ['face.bin'];
  await writeFile(path.join(dir, 'face.json'), JSON.stringify({ ...faceJson, modelTopology: faceTemplate.modelTopology }));
  const faceBase = withTfjsFrame(face.base, { ...FOLDER_MODEL_JSON, modelTopology: faceTemplate.modelTopology });
  const faceTarget = withTfjsFrame(face.target, { ...FOLDER_MODEL_JSON, modelTopology: faceTemplate.modelTopology });
  const pf = topkDiff(hasher, faceBase, faceTarget, { budgetBytes: 1_000_000, codec: 'f32', modelId: 'face', sequence: 1 });
  await applyToModelDir(path.join(dir, 'face.json'), pf.bytes);
  const initial = await snapshotFolder(dir);
  const untouched = new Map<string, Uint8Array>();
  for (const [name, ino] of initial.names) if (name.startsWith('face')) untouched.set(name, initial.data.get(ino) as Uint8Array);
  return { initial, untouched };
}

/**
 * Run the scenario's apply on a fresh copy of its folder, recording every operation. `mutate`
 * wraps the recorder, to check that the harness catches a protocol with a step missing (the
 * self-check in power-loss.test.ts drops every fsync).
 */
export async function recordApply(s: PowerLossScenario, root: string, mutate?: (ops: FileOps) => FileOps): Promise<FsOp[]> {
  const dir = path.join(root, 'record', s.name.replace(/\W+/g, '-').slice(0, 60));
  await rm(dir, { recursive: true, force: true });
  await materialize(s.initial, dir);
  const log = await recordRun(s, dir, s.initial, async (ops) => {
    try {
      await applyOnce(dir, s, { fileOps: ops, ...(s.healthFails ? { healthCheck: () => false } : s.healthPasses ? { healthCheck: () => true } : {}) });
      if (s.healthFails) throw new Error(`${s.name}: the recorded apply was expected to fail its health check`);
    } catch (e) {
      if (!(s.healthFails && (e as { code?: string }).code === 'ND_HEALTH_CHECK')) throw e;
    }
  }, mutate);
  const seen = await loaderSees(dir, s);
  const expected = s.healthFails ? 'old' : 'new';
  if (seen !== expected) throw new Error(`${s.name}: the recorded apply ended at ${seen}, expected ${expected}`);
  await rm(dir, { recursive: true, force: true });
  return log;
}

/**
 * 'old', 'new', or what else the folder is: for a value update, every float tensor compared value
 * for value, and the frame; for a structural rebuild, every file a loader reads byte for byte.
 */
export async function loaderSees(dir: string, s: PowerLossScenario): Promise<string> {
  if (s.oldFiles && s.newFiles) return filesSee(dir, s, s.oldFiles, s.newFiles);
  if (!s.oldTensors || !s.newTensors) throw new Error(`${s.name}: neither the versions' tensors nor their files are given`);
  const [oldTensors, newTensors] = [s.oldTensors, s.newTensors];
  let store;
  try {
    store = await openTfjsModelDir(dir, s.modelFile ? { modelJsonFile: s.modelFile } : {});
  } catch (e) {
    return `unloadable: ${(e as Error).message.slice(0, 160)}`;
  }
  const same = (want: Map<string, Float32Array>) => store.list().length === want.size && store.list().every((t) => {
    const a = readForDigest(store, t.name);
    const b = want.get(t.name);
    return b !== undefined && a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
  });
  if (same(oldTensors)) return 'old';
  if (same(newTensors)) return 'new';
  return `neither (fingerprint ${fingerprintStore(await hasherPromise, store).fingerprint})`;
}

/**
 * The files a loader reads from the folder: the model file; or the model JSON and every shard
 * its manifest names (as tf.loadGraphModel fetches them). Undefined with the reason when it
 * cannot read them.
 */
async function loaderFiles(dir: string, s: PowerLossScenario): Promise<Map<string, Uint8Array> | string> {
  let names: string[];
  if (s.weightsFile) {
    names = [s.weightsFile.name];
  } else {
    try {
      names = await referencedFiles(dir, s.modelFile);
    } catch (e) {
      return `unloadable: ${(e as Error).message.slice(0, 160)}`;
    }
  }
  const files = new Map<string, Uint8Array>();
  for (const name of names) {
    const bytes = await readFile(path.join(dir, name)).catch(() => null);
    if (bytes === null) return `unloadable: ${name} is missing`;
    files.set(name, new Uint8Array(bytes));
  }
  return files;
}

/** 'old' or 'new' when the files a loader reads are exactly one version's (same names, same bytes); else what differs. */
async function filesSee(dir: string, s: PowerLossScenario, oldFiles: Map<string, Uint8Array>, newFiles: Map<string, Uint8Array>): Promise<string> {
  const files = await loaderFiles(dir, s);
  if (typeof files === 'string') return files;
  const differences = (want: Map<string, Uint8Array>): string[] => {
    const out: string[] = [];
    for (const [name, bytes] of want) {
      const got = files.get(name);
      if (!got) out.push(`${name} not read`);
      else if (Buffer.compare(got, bytes) !== 0) out.push(`${name} differs (${got.length} bytes, expected ${bytes.length})`);
    }
    for (const name of files.keys()) if (!want.has(name)) out.push(`${name} read too`);
    return out;
  };
  const fromOld = differences(oldFiles);
  if (fromOld.length === 0) return 'old';
  const fromNew = differences(newFiles);
  if (fromNew.length === 0) return 'new';
  return `neither (against the old version: ${fromOld.join(', ')}; against the new: ${fromNew.join(', ')})`.slice(0, 400);
}

/** Files beyond the model file, its shards, the state file, the recorded digests, the model id file and the other models' files. */
export async function leftovers(dir: string, s: PowerLossScenario): Promise<string[]> {
  let keep: Set<string>;
  try {
    keep = new Set([...(await referencedFiles(dir, s.modelFile)), ...settled(s)]);
  } catch {
    keep = settled(s);
  }
  return (await readdir(dir)).filter((f) => !keep.has(f)).sort();
}

/** The other models' files: each still there, byte for byte (a problem, or null). */
async function checkUntouched(dir: string, s: PowerLossScenario): Promise<string | null> {
  for (const [name, bytes] of s.untouched ?? []) {
    const now = await readFile(path.join(dir, name)).catch(() => null);
    if (now === null) return `another model's file ${name} is gone`;
    if (Buffer.compare(now, bytes) !== 0) return `another model's file ${name} changed`;
  }
  return null;
}

/** Where the applier records the model's sequence: the folder's state file, or the model file's own. */
function sequenceStore(dir: string, s: PowerLossScenario): { get(modelId: string): Promise<number | undefined> } {
  return s.weightsFile ? weightsFileSequenceStore(modelPath(dir, s)) : new FileSequenceStore(path.join(dir, DEFAULT_STATE_FILE));
}

/** The model id the applier recorded for the model (undefined: none yet). */
function recordedModelId(dir: string, s: PowerLossScenario): Promise<string | undefined> {
  return s.weightsFile ? readModelIdRecord(modelPath(dir, s)) : readFolderModelId(modelPath(dir, s));
}

/** The state file and the model id file, checked against the weights the folder holds. */
async function checkRecords(dir: string, s: PowerLossScenario, weights: string): Promise<string | null> {
  let recorded: number | undefined;
  try {
    recorded = await sequenceStore(dir, s).get(s.modelId);
  } catch (e) {
    return `state file unreadable: ${(e as Error).message.slice(0, 160)}`;
  }
  if (recorded !== s.sequenceBefore && recorded !== s.sequence) return `state file records sequence ${recorded}, expected ${s.sequenceBefore} or ${s.sequence}`;
  if (recorded === s.sequence && recorded !== s.sequenceBefore && weights !== 'new') return `state file records sequence ${recorded} but the weights are ${weights}: the state is ahead of the weights`;
  if (s.otherSequence) {
    const other = await new FileSequenceStore(path.join(dir, DEFAULT_STATE_FILE)).get(s.otherSequence.modelId);
    if (other !== s.otherSequence.sequence) return `the state file records ${other} for ${s.otherSequence.modelId}, expected ${s.otherSequence.sequence}: another model's sequence was lost`;
  }
  try {
    const id = await recordedModelId(dir, s);
    if (id !== undefined && id !== s.modelId) return `the folder's model id is ${JSON.stringify(id)}, expected ${JSON.stringify(s.modelId)}`;
  } catch (e) {
    return `model id file unreadable: ${(e as Error).message.slice(0, 160)}`;
  }
  return null;
}

export interface StateVerdict {
  scenario: string;
  point: number;
  /** The last operation issued before the cut. */
  lastOp: string;
  variant: string;
  /** What a loader sees before recovery, and after it. */
  before: string;
  after: string;
  /** Problems (empty when the state passed). */
  torn: string[];
  leftovers: string[];
  rerun?: string;
}

/**
 * The recovery the next `ndiff apply` runs first: take the folder's lock, recoverModelDir (or
 * recoverOnnxFile / recoverTfliteFile for a model file), release. When the recorded apply had a
 * health check, the next apply runs the same one (a switch it left unconfirmed is finished by it:
 * src/io/durable/pending-update.ts; without one it would be refused, which
 * test/power-loss/health-check-cut.ts checks).
 */
async function recover(dir: string, s: PowerLossScenario, fileOps?: FileOps): Promise<void> {
  const unlock = await lockModelDir(dir, { fileOps });
  const healthCheck = s.healthFails ? () => false : s.healthPasses ? () => true : undefined;
  try {
    if (s.weightsFile) await WEIGHTS_FILES[s.weightsFile.format].recover(modelPath(dir, s), { healthCheck });
    else await recoverModelDir(modelPath(dir, s), { fileOps, healthCheck });
  } finally {
    await unlock();
  }
}

/** Check one crash state (see the module doc). */
export async function checkState(s: PowerLossScenario, log: readonly FsOp[], state: CrashState, dir: string, options: { rerun?: boolean } = {}): Promise<StateVerdict> {
  await materialize(state.image, dir);
  const v: StateVerdict = { scenario: s.name, point: state.point, lastOp: state.point > 0 ? describeOp(log[state.point - 1]) : '(nothing yet)', variant: state.variant, before: '', after: '', torn: [], leftovers: [] };
  v.before = await loaderSees(dir, s);
  if (v.before !== 'old' && v.before !== 'new') v.torn.push(`before recovery the loader sees ${v.before}`);
  const crashed = await checkUntouched(dir, s);
  if (crashed) v.torn.push(`before recovery: ${crashed}`);
  try {
    await recover(dir, s);
  } catch (e) {
    v.torn.push(`recovery threw ${(e as Error).constructor.name}: ${(e as Error).message.slice(0, 200)}`);
  }
  v.after = await loaderSees(dir, s);
  if (v.after !== 'old' && v.after !== 'new') v.torn.push(`after recovery the loader sees ${v.after}`);
  const records = await checkRecords(dir, s, v.after);
  if (records) v.torn.push(records);
  const untouched = await checkUntouched(dir, s);
  if (untouched) v.torn.push(`after recovery: ${untouched}`);
  v.leftovers = await leftovers(dir, s);
  if (options.rerun) v.rerun = await rerun(s, dir);
  return v;
}

/** Run the same apply again (with a passing health check) and check it finished. */
async function rerun(s: PowerLossScenario, dir: string): Promise<string> {
  try {
    const status = await applyOnce(dir, s, { healthCheck: () => true });
    if (status !== 'applied' && status !== 'already-applied') return `status ${status}`;
  } catch (e) {
    return `threw ${(e as Error).constructor.name}: ${(e as Error).message.slice(0, 200)}`;
  }
  const seen = await loaderSees(dir, s);
  if (seen !== 'new') return `after the re-run the loader sees ${seen}`;
  const extra = await leftovers(dir, s);
  if (extra.length) return `leftovers after the re-run: ${extra.join(', ')}`;
  const problem = (await checkRecords(dir, s, 'new')) ?? (await checkUntouched(dir, s));
  if (problem) return problem;
  const recorded = await sequenceStore(dir, s).get(s.modelId);
  if (recorded !== s.sequence) return `the state file records ${recorded} after the re-run, expected ${s.sequence}`;
  if ((await recordedModelId(dir, s)) !== s.modelId) return 'the model did not record its model id';
  return 'ok';
}

/**
 * A second power cut, during the recovery of the first: record the recovery's own operations on
 * the crash state, and check every state a cut during them could leave, as {@link checkState}
 * does (the recovery run again on each). Returns the verdicts; the recovery must have work to
 * do for this to check anything (a clean folder records no operation).
 */
export async function checkRecoveryCrashes(s: PowerLossScenario, first: CrashState, root: string, seed: number): Promise<{ ops: number; verdicts: StateVerdict[] }> {
  const dir = path.join(root, 'recovery-record');
  await rm(dir, { recursive: true, force: true });
  await materialize(first.image, dir);
  const log = await recordRun(s, dir, first.image, async (ops) => {
    try {
      await recover(dir, s, ops);
    } catch {
      /* a recovery that refuses is checked by checkState already */
    }
  });
  await rm(dir, { recursive: true, force: true });
  const verdicts: StateVerdict[] = [];
  // Every prefix after the first operation, with one random subset per prefix (not two).
  const states = [...crashStates(first.image, log, { seed, randomPerPoint: 1 })].filter((st) => st.point > 0);
  for (const [i, st] of states.entries()) {
    const stateDir = path.join(root, 'recovery-states', String(i));
    const v = await checkState(s, log, st, stateDir);
    v.variant = `after crash state (${first.point}, ${first.variant}), recovery cut at ${st.point}: ${st.variant}`;
    verdicts.push(v);
    await rm(stateDir, { recursive: true, force: true });
  }
  return { ops: log.length, verdicts };
}

export interface ScenarioSummary {
  name: string;
  /** Operations the apply performed. */
  ops: number;
  /** Crash states checked (distinct folders). */
  states: number;
  /** After recovery: the old weights, the new ones. */
  sawOld: number;
  sawNew: number;
  /** States with any problem (weights neither version, state file torn or ahead, recovery failed). */
  torn: StateVerdict[];
  /** States recovery left files in (not torn, but not clean either). */
  withLeftovers: StateVerdict[];
  /** Re-runs that did not finish cleanly (when re-run). */
  reruns: number;
  rerunFailures: StateVerdict[];
  /** Second cuts during recovery: the crash states they started from, and the states checked. */
  doubleFrom: number;
  doubleStates: number;
}

/**
 * Record the scenario's apply and check its crash states: all of them, or (`sample`) that many
 * spread evenly over the generated list. `onProgress` is called every 250 states.
 */
export async function runScenario(s: PowerLossScenario, root: string, options: { sample?: number; rerun?: boolean | ((index: number) => boolean); doubleEvery?: number; seed?: number; mutate?: (ops: FileOps) => FileOps; onProgress?: (done: number) => void } = {}): Promise<ScenarioSummary> {
  const log = await recordApply(s, root, options.mutate);
  const all = [...crashStates(s.initial, log, { seed: options.seed ?? 20261122 })];
  const chosen = options.sample && options.sample < all.length
    ? Array.from({ length: options.sample }, (_, i) => all[Math.floor((i * all.length) / options.sample!)])
    : all;
  const summary: ScenarioSummary = { name: s.name, ops: log.length, states: 0, sawOld: 0, sawNew: 0, torn: [], withLeftovers: [], reruns: 0, rerunFailures: [], doubleFrom: 0, doubleStates: 0 };
  const statesDir = path.join(root, 'states');
  await mkdir(statesDir, { recursive: true });
  for (const [i, state] of chosen.entries()) {
    const dir = path.join(statesDir, `${i}`);
    const rerunThis = typeof options.rerun === 'function' ? options.rerun(i) : options.rerun === true;
    const v = await checkState(s, log, state, dir, { rerun: rerunThis });
    summary.states++;
    if (v.after === 'old') summary.sawOld++;
    if (v.after === 'new') summary.sawNew++;
    if (v.torn.length) summary.torn.push(v);
    if (v.leftovers.length) summary.withLeftovers.push(v);
    if (v.rerun !== undefined) {
      summary.reruns++;
      if (v.rerun !== 'ok') summary.rerunFailures.push(v);
    }
    await rm(dir, { recursive: true, force: true });
    if (options.doubleEvery && i % options.doubleEvery === 0) {
      const nested = await checkRecoveryCrashes(s, state, root, (options.seed ?? 20261122) + i);
      if (nested.ops > 0) summary.doubleFrom++;
      for (const w of nested.verdicts) {
        summary.doubleStates++;
        if (w.torn.length) summary.torn.push(w);
        if (w.leftovers.length) summary.withLeftovers.push(w);
      }
    }
    if ((i + 1) % 250 === 0) options.onProgress?.(i + 1);
  }
  return summary;
}
