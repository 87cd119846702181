/**
 * Crash injection for `.safetensors` files: `ndiff apply` on a safetensors file, killed (SIGKILL,
 * through test/crash/child.ts) before each chosen file-system operation that changes something.
 * After every kill the file must be the old one or the new one byte for byte (never a mix);
 * {@link recoverSafetensorsFile} (after every other kill) or the next apply alone (every apply
 * recovers first) leaves no journal, temp file or kept previous version, and the re-run of the
 * apply finishes at the target.
 * Used by test/safetensors-apply.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { applyPayload } from '../../src/apply/index.ts';
import { buildPayload } from '../../src/diff/build.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { concatChunks, SafetensorsWeightStore, serializeSafetensors, type SafetensorsTensorInput } from '../../src/io/safetensors/store.ts';
import { applyToSafetensorsFile, recoverSafetensorsFile } from '../../src/io/safetensors/files.ts';
import { crashChild } from './bundle.ts';


/** What the kills showed. */
export interface SafetensorsCrashSummary {
  /** The mutating operations of a clean run, in order. */
  operations: string[];
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
  before: Uint8Array;
  after: Uint8Array;
}

/** The tensors of the crash model: an F32 weight patched in place, an F16 one rebuilt, an I64 passed through. */
export function crashTensors(): Map<string, SafetensorsTensorInput> {
  return new Map<string, SafetensorsTensorInput>([
    ['w', { shape: [8, 8], data: Float32Array.from({ length: 64 }, (_, i) => Math.cos(i)) }],
    ['h', { shape: [4], dtype: 'F16', data: Float32Array.of(0.5, 1, -2, 0.25) }],
    ['steps', { shape: [1], dtype: 'I64', data: new Uint8Array(8).fill(3) }],
  ]);
}

async function build(): Promise<Built> {
  const hasher = await getHasher();
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-crash-safetensors-'));
  const before = concatChunks(serializeSafetensors(crashTensors()));
  const file = path.join(dir, 'm.safetensors');
  await writeFile(file, before);
  const built = buildPayload(hasher, new SafetensorsWeightStore(before.slice()), [
    { kind: 'dense', name: 'w', values: Float32Array.from({ length: 64 }, (_, i) => (i % 5 === 0 ? 0.125 : 0)), codec: 'f32' },
    // 0.1 is no half: the F16 tensor is written back as F32, so the file is rebuilt.
    { kind: 'dense', name: 'h', values: Float32Array.of(0.1, 0, 0, 0), codec: 'f32' },
  ], { method: 'topk', modelId: 'crash-st', sequence: 1 });
  const payload = path.join(dir, 'p.ndiff');
  await writeFile(payload, built.bytes);
  // The new file as the in-memory applier makes it.
  const mem = new SafetensorsWeightStore(before.slice());
  await applyPayload(mem, built.bytes, { hasher });
  return { dir, file, payload, before, after: mem.modelBytes().slice() };
}

/** Run the child (the CLI's apply) killed before mutating operation `at` (0: never, with the operations logged to `logFile`). */
function runChild(child: string, b: Built, at: number, logFile?: string): number | null {
  const r = spawnSync(process.execPath, [child, JSON.stringify({ mode: 'cli', dir: b.file, payload: b.payload })], {
    encoding: 'utf8',
    env: { ...process.env, NDIFF_CRASH_AT: String(at), ...(logFile ? { NDIFF_CRASH_LOG: logFile } : {}) },
  });
  return r.status;
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

/** Kill the apply at `points(count)` (1-based operation numbers; every one by default). */
export async function crashSafetensors(points?: (count: number) => number[]): Promise<SafetensorsCrashSummary> {
  const child = await crashChild();
  const clean = await build();
  const logFile = path.join(clean.dir, 'ops.log');
  try {
    const status = runChild(child, clean, 0, logFile);
    if (status !== 0) throw new Error(`the clean run of the safetensors apply failed (exit ${status})`);
    if (!same(new Uint8Array(await readFile(clean.file)), clean.after)) throw new Error('the clean run did not write the file the in-memory applier makes');
    const operations = (await readFile(logFile, 'utf8')).trim().split('\n');
    const summary: SafetensorsCrashSummary = { operations, kills: 0, sawOld: 0, sawNew: 0, bad: [] };
    for (const at of points ? points(operations.length) : operations.map((_, i) => i + 1)) {
      const b = await build();
      const where = `kill before ${operations[at - 1]}`;
      try {
        if (runChild(child, b, at) !== null) summary.bad.push(`${where}: the child was not killed`);
        summary.kills++;
        // What a loader reading the path sees right after the crash, before any recovery.
        const seen = new Uint8Array(await readFile(b.file));
        if (same(seen, b.before)) summary.sawOld++;
        else if (same(seen, b.after)) summary.sawNew++;
        else summary.bad.push(`${where}: the file is neither version (${seen.length} bytes)`);
        // (A temp file of the state file is the state store's: it sweeps it at its next write.)
        const leftovers = async () => (await readdir(b.dir)).filter((n) => /\.tmp-|\.ndiff-prev|\.ndiff-update/.test(n) && !n.includes('.ndiff-state.json.tmp-'));
        // Every other kill is recovered by the recovery call an app makes before loading the file;
        // the others by the re-run alone (every apply recovers first).
        if (at % 2 === 0) {
          await recoverSafetensorsFile(b.file);
          const recovered = new Uint8Array(await readFile(b.file));
          if (!same(recovered, b.before) && !same(recovered, b.after)) summary.bad.push(`${where}: recovered to neither version`);
          const left = await leftovers();
          if (left.length) summary.bad.push(`${where}: left ${left.join(', ')} after recovery`);
        }
        const again = await applyToSafetensorsFile(b.file, new Uint8Array(await readFile(b.payload))).catch((e: Error) => e);
        if (again instanceof Error) summary.bad.push(`${where}: the re-run failed: ${again.message}`);
        else if (!same(new Uint8Array(await readFile(b.file)), b.after)) summary.bad.push(`${where}: the re-run did not reach the target`);
        const left = await leftovers();
        if (left.length) summary.bad.push(`${where}: left ${left.join(', ')} after the re-run`);
      } finally {
        await rm(b.dir, { recursive: true, force: true });
      }
    }
    return summary;
  } finally {
    await rm(clean.dir, { recursive: true, force: true });
  }
}
