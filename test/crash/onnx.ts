/**
 * Crash injection for ONNX model files: `ndiff apply` on a `.onnx` file with external data,
 * killed (SIGKILL, through test/crash/child.ts) before each of its file-system operations that
 * change something. After every kill, {@link recoverOnnxFile} must leave the old or the new
 * model exactly (by fingerprint), with no journal, temp file or kept previous version left, and
 * a re-run of the apply must finish at the target. Run by `npm run crash-test` (all points; with
 * `--big`, a few points of a model whose data lies past 4 GiB in a sparse file), and a few points
 * by test/onnx-hardening.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { buildPayload } from '../../src/diff/build.ts';
import { applyToOnnxFile, openOnnxFile, recoverOnnxFile } from '../../src/io/onnx/files.ts';
import { DT, f32le, graph, model, tensor } from '../helpers/onnx-build.ts';
import { crashChild } from './bundle.ts';


/** What the kills of one scenario showed. */
export interface OnnxCrashSummary {
  operations: number;
  kills: number;
  sawOld: number;
  sawNew: number;
  /** Kill points after which the model was neither version, or leftovers stayed, or the re-run failed. */
  bad: string[];
}

interface Built {
  dir: string;
  file: string;
  payload: string;
  base: string;
  target: string;
}

/** A model with two tensors in `w.bin` (the second at `far`, past 4 GiB with `big`) and one inline; the payload changes all three. */
async function build(big: boolean): Promise<Built> {
  const hasher = await getHasher();
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-crash-onnx-'));
  const far = big ? 2 ** 32 + 4096 : 1 << 20;
  const w = path.join(dir, 'w.bin');
  await writeFile(w, Uint8Array.from(f32le([1, 2])));
  await truncate(w, far + 16);
  const fh = await open(w, 'r+');
  await fh.write(Uint8Array.from(f32le([3, 4, 5, 6])), 0, 16, far);
  await fh.close();
  const file = path.join(dir, 'm.onnx');
  await writeFile(file, model(graph({ initializers: [
    tensor({ name: 'a', dims: [2], dataType: DT.FLOAT, external: { location: 'w.bin', offset: '0', length: '8' } }),
    tensor({ name: 'b', dims: [4], dataType: DT.FLOAT, external: { location: 'w.bin', offset: String(far), length: '16' } }),
    tensor({ name: 'c', dims: [1], dataType: DT.FLOAT, raw: f32le([7]) }),
  ] })));
  const disk = await openOnnxFile(file);
  const built = buildPayload(hasher, disk.contents, [
    { kind: 'dense', name: 'a', values: Float32Array.of(0.5, 0.5), codec: 'f32' },
    { kind: 'dense', name: 'b', values: Float32Array.of(1, 1, 1, 1), codec: 'f32' },
    { kind: 'dense', name: 'c', values: Float32Array.of(-1), codec: 'f32' },
  ], { method: 'topk', modelId: 'crash', sequence: 1 });
  await disk.close();
  const payload = path.join(dir, 'p.ndiff');
  await writeFile(payload, built.bytes);
  return { dir, file, payload, base: built.payload.header.baseFingerprint, target: built.payload.header.targetFingerprint };
}

/** Run the child (the CLI's apply) killed before mutating operation `at` (0: never); returns its operation log. */
function runChild(child: string, b: Built, at: number, logFile?: string): { status: number | null; ops: string[] } {
  const r = spawnSync(process.execPath, [child, JSON.stringify({ mode: 'cli', dir: b.file, payload: b.payload, state: path.join(b.dir, '.ndiff-state.json') })], {
    encoding: 'utf8',
    env: { ...process.env, NDIFF_CRASH_AT: String(at), ...(logFile ? { NDIFF_CRASH_LOG: logFile } : {}) },
  });
  return { status: r.status, ops: [] };
}

async function fingerprintOf(file: string): Promise<string> {
  const disk = await openOnnxFile(file);
  try {
    return fingerprintStore(await getHasher(), disk).fingerprint;
  } finally {
    await disk.close();
  }
}

/** Kill the apply at `points` (1-based operation numbers; all of them by default) of one scenario. */
export async function crashOnnx(options: { big?: boolean; points?: (count: number) => number[] } = {}): Promise<OnnxCrashSummary> {
  const child = await crashChild();
  const clean = await build(!!options.big);
  const logFile = path.join(clean.dir, 'ops.log');
  try {
    const r = runChild(child, clean, 0, logFile);
    if (r.status !== 0) throw new Error(`the clean run of the ONNX apply failed (exit ${r.status})`);
    const ops = (await readFile(logFile, 'utf8')).trim().split('\n');
    const points = options.points ? options.points(ops.length) : ops.map((_, i) => i + 1);
    const summary: OnnxCrashSummary = { operations: ops.length, kills: 0, sawOld: 0, sawNew: 0, bad: [] };
    for (const at of points) {
      const b = await build(!!options.big);
      try {
        runChild(child, b, at);
        summary.kills++;
        await recoverOnnxFile(b.file);
        const fp = await fingerprintOf(b.file);
        // (A temp file of the state file is the state store's: it sweeps it at its next write.)
        const left = (await readdir(b.dir)).filter((n) => /\.tmp-|\.ndiff-prev|\.ndiff-update/.test(n) && !n.startsWith('.ndiff-state.json.tmp-'));
        if (fp === b.base) summary.sawOld++;
        else if (fp === b.target) summary.sawNew++;
        else summary.bad.push(`kill before ${ops[at - 1]}: neither version (${fp})`);
        if (left.length) summary.bad.push(`kill before ${ops[at - 1]}: left ${left.join(', ')}`);
        const again = await applyToOnnxFile(b.file, new Uint8Array(await readFile(b.payload)), { state: path.join(b.dir, '.ndiff-state.json') }).catch((e: Error) => e);
        if (again instanceof Error) summary.bad.push(`kill before ${ops[at - 1]}: the re-run failed: ${again.message}`);
        else if ((await fingerprintOf(b.file)) !== b.target) summary.bad.push(`kill before ${ops[at - 1]}: the re-run did not reach the target`);
      } finally {
        await rm(b.dir, { recursive: true, force: true });
      }
    }
    return summary;
  } finally {
    await rm(clean.dir, { recursive: true, force: true });
  }
}
