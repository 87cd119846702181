/**
 * Crash injection for structural payloads (format v7) on model files: `ndiff apply` of a payload
 * that rebuilds an ONNX file (inline data) or a LiteRT file with tensors added, removed, renamed
 * or reshaped and its graph changed, or an ONNX model with external data files whose new version
 * adds a data file (in a new folder), drops one or renames one, killed (SIGKILL, through
 * test/crash/child.ts) before each of its file-system operations that change something; with
 * `torn`, an interrupted write leaves half its bytes first. After every kill the recovery
 * (`recoverOnnxFile` / `recoverTfliteFile`) must leave exactly the old or the new files byte for
 * byte (every file of the folder compared, none more, none fewer), with no journal, temp file,
 * kept previous version or made folder left, and a re-run of the apply must end at the target
 * with its sequence recorded. Run by `npm run crash-test` (every point of several pairs) and a
 * few points by test/rebuild-crash.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../../src/core/hasher.ts';
import { structuralDiff, structuralDiffFiles } from '../../src/diff/structural.ts';
import { ONNX_FILES_REBUILD } from '../../src/io/onnx/files-store.ts';
import { rebuildOnnxFile, recoverOnnxFile } from '../../src/io/onnx/files.ts';
import { OnnxWeightStore } from '../../src/io/onnx/store.ts';
import { rebuildTfliteFile, recoverTfliteFile } from '../../src/io/tflite/files.ts';
import { TfliteWeightStore } from '../../src/io/tflite/store.ts';
import { onnxDataFilesPair, structuralPair, type DataFilesChange, type PairFile } from '../helpers/structural-pairs.ts';
import { crashChild } from './bundle.ts';

/**
 * The single-file formats, and ONNX with external data files whose set changes (a TF.js folder's
 * rebuild has its own power-cut test in test/rebuild-folder.test.ts).
 */
export type RebuildCrashFormat = 'onnx' | 'tflite' | `onnx-data-${DataFilesChange}`;
type PairFormat = RebuildCrashFormat;


/** What the kills of one pair showed. */
export interface RebuildCrashSummary {
  format: PairFormat;
  seed: number;
  operations: number;
  /** The clean run's mutating operations, in order. */
  ops: string[];
  kills: number;
  sawOld: number;
  sawNew: number;
  /** Kill points after which the file was neither version, or leftovers stayed, or the re-run failed. */
  bad: string[];
}

interface Built {
  dir: string;
  file: string;
  payload: string;
}

const FORMATS = {
  onnx: { open: (b: Uint8Array) => new OnnxWeightStore(b), rebuild: rebuildOnnxFile, recover: recoverOnnxFile },
  tflite: { open: (b: Uint8Array) => new TfliteWeightStore(b), rebuild: rebuildTfliteFile, recover: recoverTfliteFile },
} as const;

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

/** The payload file of a run and the log of operations: in the folder, but no part of the model. */
const NOT_MODEL = /^update-\d+\.ndiff$|^ops\.log$/;

/** Every file of the folder that is the model's (the applier's own files, `.ndiff-*` and `*.tmp-*`, left out), by path. */
async function modelFilesIn(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || /\.ndiff-|\.tmp-/.test(e.name)) continue;
    const rel = path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/');
    if (!NOT_MODEL.test(rel)) out.set(rel, new Uint8Array(await readFile(path.join(dir, rel))));
  }
  return out;
}

/** True when the folder's model files are exactly `files`: the same paths, each byte for byte. */
function exactly(found: Map<string, Uint8Array>, files: readonly PairFile[]): boolean {
  return found.size === files.length && files.every((f) => { const b = found.get(f.path); return b !== undefined && same(b, f.bytes); });
}

/** The folders of the folder that hold none of `files` (a folder made for a file that is not there). */
async function strayFolders(dir: string, files: readonly PairFile[]): Promise<string[]> {
  const needed = new Set(files.flatMap((f) => f.path.split('/').slice(0, -1).map((_, i, segs) => segs.slice(0, i + 1).join('/'))));
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .filter((d) => !needed.has(d));
}

async function build(seed: number, payload: Uint8Array, files: readonly PairFile[]): Promise<Built> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-crash-rebuild-'));
  for (const f of files) {
    await mkdir(path.dirname(path.join(dir, f.path)), { recursive: true });
    await writeFile(path.join(dir, f.path), f.bytes);
  }
  const p = path.join(dir, `update-${seed}.ndiff`);
  await writeFile(p, payload);
  return { dir, file: path.join(dir, files[0].path), payload: p };
}

/** The pair of `format` for `seed` as the model's files on each side, and its payload. */
async function pairOf(format: PairFormat, seed: number): Promise<{ baseFiles: PairFile[]; targetFiles: PairFile[]; payload: Uint8Array }> {
  const hasher = await getHasher();
  if (format === 'onnx' || format === 'tflite') {
    const pair = structuralPair(format, seed);
    const payload = structuralDiff(hasher, pair.base, pair.target, { kind: format, open: FORMATS[format].open }, { modelId: 'crash', sequence: 1 }).bytes;
    return { baseFiles: [{ path: `model.${format}`, bytes: pair.base }], targetFiles: [{ path: `model.${format}`, bytes: pair.target }], payload };
  }
  const pair = onnxDataFilesPair(seed, format.slice('onnx-data-'.length) as DataFilesChange);
  const [baseFiles, targetFiles] = [pair.baseFiles as PairFile[], pair.targetFiles as PairFile[]];
  const payload = structuralDiffFiles(hasher, baseFiles, targetFiles, ONNX_FILES_REBUILD, { modelId: 'crash', sequence: 1 }).bytes;
  return { baseFiles, targetFiles, payload };
}

/** Run the child (the CLI's apply) killed before mutating operation `at` (0: never). */
function runChild(child: string, b: Built, at: number, options: { torn?: boolean; logFile?: string } = {}): number | null {
  const r = spawnSync(process.execPath, [child, JSON.stringify({ mode: 'cli', dir: b.file, payload: b.payload })], {
    encoding: 'utf8',
    env: { ...process.env, NDIFF_CRASH_AT: String(at), ...(options.torn ? { NDIFF_CRASH_TORN: '1' } : {}), ...(options.logFile ? { NDIFF_CRASH_LOG: options.logFile } : {}) },
  });
  return r.status;
}

/**
 * Kill the structural apply of the random pair `seed` of `format` (test/helpers/structural-pairs.ts)
 * at `points` (1-based numbers into the clean run's operations, which it is given; all of them by
 * default). Returns the clean run's operations too, for a test of their order.
 */
export async function crashRebuild(format: PairFormat, seed: number, options: { torn?: boolean; points?: (ops: readonly string[]) => number[] } = {}): Promise<RebuildCrashSummary> {
  const f = FORMATS[format === 'tflite' ? 'tflite' : 'onnx'];
  const { baseFiles, targetFiles, payload } = await pairOf(format, seed);
  const child = await crashChild();
  const clean = await build(seed, payload, baseFiles);
  const logFile = path.join(clean.dir, 'ops.log');
  try {
    const status = runChild(child, clean, 0, { logFile });
    if (status !== 0) throw new Error(`the clean run of the structural apply (${format}, seed ${seed}) failed (exit ${status})`);
    if (!exactly(await modelFilesIn(clean.dir), targetFiles)) throw new Error(`the clean run of the structural apply (${format}, seed ${seed}) did not write exactly the target's files`);
    const ops = (await readFile(logFile, 'utf8')).trim().split('\n');
    const points = options.points ? options.points(ops) : ops.map((_, i) => i + 1);
    const summary: RebuildCrashSummary = { format, seed, operations: ops.length, ops, kills: 0, sawOld: 0, sawNew: 0, bad: [] };
    for (const at of points) {
      const b = await build(seed, payload, baseFiles);
      const where = `${format} seed ${seed}, kill before ${ops[at - 1]} (${at}/${ops.length})${options.torn ? ', torn' : ''}`;
      try {
        runChild(child, b, at, { torn: options.torn });
        summary.kills++;
        await f.recover(b.file);
        const now = await modelFilesIn(b.dir);
        const old = exactly(now, baseFiles);
        if (old) summary.sawOld++;
        else if (exactly(now, targetFiles)) summary.sawNew++;
        else summary.bad.push(`${where}: the files are neither version (${[...now].map(([p, v]) => `${p} ${v.length} bytes`).join(', ')})`);
        // The state file's own temp file is swept by its next write.
        const left = (await readdir(b.dir, { recursive: true })).filter((n) => /\.tmp-|\.ndiff-prev|\.ndiff-update/.test(n) && !/\.ndiff-state\.json\.tmp-/.test(n));
        left.push(...(await strayFolders(b.dir, old ? baseFiles : targetFiles)));
        if (left.length) summary.bad.push(`${where}: left ${left.join(', ')}`);
        const again = await f.rebuild(b.file, new Uint8Array(await readFile(b.payload))).catch((e: Error) => e);
        if (again instanceof Error) summary.bad.push(`${where}: the re-run failed: ${again.message}`);
        else if (!exactly(await modelFilesIn(b.dir), targetFiles)) summary.bad.push(`${where}: the re-run did not reach exactly the target's files`);
        else if (!again.sequenceRecorded && again.status === 'applied') summary.bad.push(`${where}: the re-run did not record its sequence`);
      } finally {
        await rm(b.dir, { recursive: true, force: true });
      }
    }
    return summary;
  } finally {
    await rm(clean.dir, { recursive: true, force: true });
  }
}
