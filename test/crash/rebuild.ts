/**
 * Crash injection for structural payloads (format v7) on single-file models: `ndiff apply` of a
 * payload that rebuilds an ONNX file (inline data) or a LiteRT file with tensors added, removed,
 * renamed or reshaped and its graph changed, killed (SIGKILL, through test/crash/child.ts) before
 * each of its file-system operations that change something; with `torn`, an interrupted write
 * leaves half its bytes first. After every kill the recovery (`recoverOnnxFile` /
 * `recoverTfliteFile`) must leave the old or the new file byte for byte, with no journal, temp
 * file or kept previous version left, and a re-run of the apply must end at the target with its
 * sequence recorded. Run by `npm run crash-test` (every point of several pairs) and a few points by
 * test/rebuild-crash.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHasher } from '../../src/core/hasher.ts';
import { structuralDiff } from '../../src/diff/structural.ts';
import { rebuildOnnxFile, recoverOnnxFile } from '../../src/io/onnx/files.ts';
import { OnnxWeightStore } from '../../src/io/onnx/store.ts';
import { rebuildTfliteFile, recoverTfliteFile } from '../../src/io/tflite/files.ts';
import { TfliteWeightStore } from '../../src/io/tflite/store.ts';
import { structuralPair } from '../helpers/structural-pairs.ts';

/** The single-file formats (a TF.js folder's rebuild has its own power-cut test in test/rebuild-folder.test.ts). */
type PairFormat = 'onnx' | 'tflite';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

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
  base: Uint8Array;
  target: Uint8Array;
}

const FORMATS = {
  onnx: { open: (b: Uint8Array) => new OnnxWeightStore(b), rebuild: rebuildOnnxFile, recover: recoverOnnxFile },
  tflite: { open: (b: Uint8Array) => new TfliteWeightStore(b), rebuild: rebuildTfliteFile, recover: recoverTfliteFile },
} as const;

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

async function build(format: PairFormat, seed: number, payload: Uint8Array, pair: { base: Uint8Array; target: Uint8Array }): Promise<Built> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-crash-rebuild-'));
  const file = path.join(dir, `model.${format}`);
  await writeFile(file, pair.base);
  const p = path.join(dir, `update-${seed}.ndiff`);
  await writeFile(p, payload);
  return { dir, file, payload: p, base: pair.base, target: pair.target };
}

/** Run the child (the CLI's apply) killed before mutating operation `at` (0: never). */
function runChild(b: Built, at: number, options: { torn?: boolean; logFile?: string } = {}): number | null {
  const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', CHILD, JSON.stringify({ mode: 'cli', dir: b.file, payload: b.payload })], {
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
  const f = FORMATS[format];
  const pair = structuralPair(format, seed);
  const built = structuralDiff(await getHasher(), pair.base, pair.target, { kind: format, open: f.open }, { modelId: 'crash', sequence: 1 });
  const clean = await build(format, seed, built.bytes, pair);
  const logFile = path.join(clean.dir, 'ops.log');
  try {
    const status = runChild(clean, 0, { logFile });
    if (status !== 0) throw new Error(`the clean run of the structural apply (${format}, seed ${seed}) failed (exit ${status})`);
    if (!same(new Uint8Array(await readFile(clean.file)), pair.target)) throw new Error(`the clean run of the structural apply (${format}, seed ${seed}) did not write the target`);
    const ops = (await readFile(logFile, 'utf8')).trim().split('\n');
    const points = options.points ? options.points(ops) : ops.map((_, i) => i + 1);
    const summary: RebuildCrashSummary = { format, seed, operations: ops.length, ops, kills: 0, sawOld: 0, sawNew: 0, bad: [] };
    for (const at of points) {
      const b = await build(format, seed, built.bytes, pair);
      const where = `${format} seed ${seed}, kill before ${ops[at - 1]} (${at}/${ops.length})${options.torn ? ', torn' : ''}`;
      try {
        runChild(b, at, { torn: options.torn });
        summary.kills++;
        await f.recover(b.file);
        const now = new Uint8Array(await readFile(b.file));
        if (same(now, pair.base)) summary.sawOld++;
        else if (same(now, pair.target)) summary.sawNew++;
        else summary.bad.push(`${where}: the file is neither version (${now.length} bytes)`);
        // The state file's own temp file is swept by its next write.
        const left = (await readdir(b.dir)).filter((n) => /\.tmp-|\.ndiff-prev|\.ndiff-update/.test(n) && !/\.ndiff-state\.json\.tmp-/.test(n));
        if (left.length) summary.bad.push(`${where}: left ${left.join(', ')}`);
        const again = await f.rebuild(b.file, new Uint8Array(await readFile(b.payload))).catch((e: Error) => e);
        if (again instanceof Error) summary.bad.push(`${where}: the re-run failed: ${again.message}`);
        else if (!same(new Uint8Array(await readFile(b.file)), pair.target)) summary.bad.push(`${where}: the re-run did not reach the target`);
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
