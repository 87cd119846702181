/**
 * Crash injection for GGUF models patched in place: `ndiff apply` of a GGUF block payload
 * (format v8), killed (SIGKILL, through test/crash/child.ts) before its N-th file-system
 * operation that changes something, or in the middle of it (a torn write: half the bytes, then
 * the kill). After every kill the file is the old or the new version byte for byte once the
 * undo journal a kill left is rolled back ({@link recoverGgufFile}, which every apply runs
 * first); nothing else is left beside it; and the same apply run again ends at the new version.
 * Used by test/gguf-crash.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../../src/core/hasher.ts';
import { diffGgufModels } from '../../src/io/gguf/diff.ts';
import { bytesSource } from '../../src/io/gguf/header.ts';
import { ggufModelOf } from '../../src/io/gguf/model.ts';
import { applyToGgufFile, recoverGgufFile } from '../../src/io/gguf/in-place.ts';
import { ggufFixture, perturbGguf } from '../helpers/gguf-pairs.ts';
import { crashChild } from './bundle.ts';

/** One GGUF pair and its payload: the model's old and new bytes. */
export interface GgufCrashPair {
  v1: Uint8Array;
  v2: Uint8Array;
  payload: Uint8Array;
}

/** The pair the crash tests use: a Q8_0 model with a few blocks and two metadata values changed (a few ranges: every operation can be hit). */
export async function ggufCrashPair(): Promise<GgufCrashPair> {
  const v1 = ggufFixture('tiny-llama-q8_0.gguf');
  const v2 = perturbGguf(v1, { blockShare: 0.02, bytesPerBlock: 3, metadata: true, seed: 21 });
  const r = diffGgufModels(await getHasher(), ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'tiny', sequence: 1, createdBy: 'test' });
  return { v1, v2, payload: r.payload };
}

/** What the kills showed. */
export interface GgufCrashSummary {
  operations: string[];
  kills: number;
  sawOld: number;
  sawNew: number;
  /** Kill points after which the file was neither version, something was left, or the re-run failed. */
  bad: string[];
}

async function setUp(pair: GgufCrashPair): Promise<{ dir: string; file: string; payload: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-crash-gguf-'));
  const file = path.join(dir, 'model.gguf');
  await writeFile(file, pair.v1);
  // The payload outside the model's folder: the folder holds only what the apply leaves.
  const payload = `${dir}.ndiff`;
  await writeFile(payload, pair.payload);
  return { dir, file, payload };
}

function runChild(child: string, file: string, payload: string, at: number, torn: boolean, logFile?: string): number | null {
  const r = spawnSync(process.execPath, [child, JSON.stringify({ mode: 'cli', dir: file, payload })], {
    encoding: 'utf8',
    env: { ...process.env, NDIFF_CRASH_AT: String(at), ...(torn ? { NDIFF_CRASH_TORN: '1' } : {}), ...(logFile ? { NDIFF_CRASH_LOG: logFile } : {}) },
  });
  return r.status;
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

/**
 * Kill the apply before each operation `points` picks (1-based; all by default), and, with
 * `torn`, in the middle of each write among them.
 */
export async function crashGguf(pair: GgufCrashPair, options: { points?: (ops: string[]) => number[]; torn?: boolean } = {}): Promise<GgufCrashSummary> {
  const child = await crashChild();
  const clean = await setUp(pair);
  const logFile = path.join(tmpdir(), `nd-crash-gguf-ops-${process.pid}.log`);
  try {
    const status = runChild(child, clean.file, clean.payload, 0, false, logFile);
    if (status !== 0) throw new Error(`the clean run of the GGUF apply failed (exit ${status})`);
    if (!same(new Uint8Array(await readFile(clean.file)), pair.v2)) throw new Error('the clean run of the GGUF apply did not reach the target');
    const ops = (await readFile(logFile, 'utf8')).trim().split('\n');
    const points = options.points ? options.points(ops) : ops.map((_, i) => i + 1);
    const summary: GgufCrashSummary = { operations: ops, kills: 0, sawOld: 0, sawNew: 0, bad: [] };
    const kinds = options.torn ? [false, true] : [false];
    for (const at of points) {
      for (const torn of kinds) {
        if (torn && !/^(write|writeFile)\(/.test(ops[at - 1])) continue;
        const b = await setUp(pair);
        const where = `${torn ? 'torn ' : ''}kill at ${ops[at - 1]} (${at})`;
        try {
          runChild(child, b.file, b.payload, at, torn);
          summary.kills++;
          await recoverGgufFile(b.file);
          const now = new Uint8Array(await readFile(b.file));
          if (same(now, pair.v1)) summary.sawOld++;
          else if (same(now, pair.v2)) summary.sawNew++;
          else summary.bad.push(`${where}: neither version after the recovery`);
          // The state file's own temp files are swept by its next write.
          const left = (await readdir(b.dir)).filter((n) => n !== 'model.gguf' && !/^model\.gguf\.ndiff-(state|model)\.json(\.tmp-.*)?$/.test(n) && !/^\.ndiff-apply\.lock/.test(n));
          if (left.length) summary.bad.push(`${where}: left ${left.join(', ')}`);
          const again = await applyToGgufFile(b.file, pair.payload).catch((e: Error) => e);
          if (again instanceof Error) summary.bad.push(`${where}: the re-run failed: ${again.message}`);
          else if (!same(new Uint8Array(await readFile(b.file)), pair.v2)) summary.bad.push(`${where}: the re-run did not reach the target`);
        } finally {
          await rm(b.dir, { recursive: true, force: true });
          await rm(b.payload, { force: true });
        }
      }
    }
    return summary;
  } finally {
    await rm(clean.dir, { recursive: true, force: true });
    await rm(clean.payload, { force: true });
    await rm(logFile, { force: true });
  }
}
