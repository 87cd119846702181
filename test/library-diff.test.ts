/**
 * The library's `diff` (neural-diff) against the `ndiff` binary: for each format (a TF.js
 * folder, an .onnx, a .tflite and a .safetensors file) and a structural pair, the same arguments
 * give the same payload bytes, and the library's result holds the fields `ndiff diff --json`
 * prints (the seconds aside).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { diff, type DiffOptions, writeSafetensorsFile, UsageError, ModelMismatchError } from 'neural-diff';
import { decodePayload } from 'neural-diff/kit';
import { structuralPair, valuePair, seeded, type PairFormat, type StructuralPair } from './helpers/structural-pairs.ts';
import { CountingLowBitCache } from './helpers/counting-cache.ts';

const BIN = path.join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

/** `ndiff diff ARGS --json`: the exit code and the JSON document it printed. */
function ndiffDiff(args: string[]): { status: number | null; doc: Record<string, unknown>; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'diff', ...args, '--json', '--quiet'], { encoding: 'utf8' });
  let doc: Record<string, unknown> = {};
  try {
    doc = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // left empty: the assertion on the status says what went wrong
  }
  return { status: r.status, doc, stderr: r.stderr };
}

/** The pair's two models written in `dir`: their paths. */
async function writePair(dir: string, pair: StructuralPair, format: PairFormat): Promise<{ base: string; target: string }> {
  if (format === 'tfjs') {
    const at = { base: path.join(dir, 'v1'), target: path.join(dir, 'v2') };
    for (const [side, files] of [['base', pair.baseFiles], ['target', pair.targetFiles]] as const) {
      await mkdir(at[side], { recursive: true });
      for (const f of files ?? []) await writeFile(path.join(at[side], f.path), f.bytes);
    }
    return at;
  }
  const at = { base: path.join(dir, `v1.${format}`), target: path.join(dir, `v2.${format}`) };
  await writeFile(at.base, pair.base);
  await writeFile(at.target, pair.target);
  return at;
}

/** The options as `ndiff diff` flags. */
function flags(o: DiffOptions): string[] {
  const out = ['--base', o.base, '--target', o.target, '--budget', String(o.budget), '--model-id', o.modelId as string, '--out', o.out as string];
  if (o.method) out.push('--method', o.method);
  if (o.sequence !== undefined) out.push('--sequence', String(o.sequence));
  if (o.modelOut) out.push('--model-out', o.modelOut);
  return out;
}

/** Run both with the same options: the payload bytes and the result's fields must agree. */
async function sameAsCli(dir: string, o: Omit<DiffOptions, 'out'>): Promise<Awaited<ReturnType<typeof diff>>> {
  const cliOut = path.join(dir, 'cli.ndiff');
  const libOut = path.join(dir, 'lib.ndiff');
  const cli = ndiffDiff(flags({ ...o, out: cliOut, ...(o.modelOut ? { modelOut: o.modelOut + '-cli' } : {}) }));
  assert.equal(cli.status, 0, cli.stderr);
  const progress: string[] = [];
  const res = await diff({ ...o, out: libOut, onProgress: (l) => progress.push(l) });
  const [fromCli, fromLib] = await Promise.all([readFile(cliOut), readFile(libOut)]);
  assert.ok(fromCli.length > 0);
  assert.deepEqual(new Uint8Array(fromLib), new Uint8Array(fromCli), 'the library writes the bytes ndiff writes');
  assert.deepEqual(res.payload, new Uint8Array(fromCli), 'and returns them');
  assert.ok(progress.length > 0, 'progress is reported through the callback');
  // The --json document, but for the paths written and the time taken, is the library's result.
  const { payload: _p, ...doc } = res;
  const { warnings } = res;
  const comparable = (d: Record<string, unknown>) => {
    const { seconds: _s, out: _o, modelOut: _m, ...rest } = d;
    return rest;
  };
  assert.deepEqual(comparable(JSON.parse(JSON.stringify(doc)) as Record<string, unknown>), comparable(cli.doc));
  assert.deepEqual(warnings, cli.doc.warning ? [cli.doc.warning] : []);
  return res;
}

for (const format of ['tfjs', 'onnx', 'tflite'] as const) {
  test(`diff of two ${format === 'tfjs' ? 'TF.js folders' : `.${format} files`}: the bytes ndiff writes, within a budget and exactly`, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), `nd-lib-diff-${format}-`));
    try {
      const at = await writePair(dir, valuePair(format, 7), format);
      const budgeted = await sameAsCli(dir, { ...at, budget: 240, modelId: 'lib-diff', sequence: 3 });
      assert.ok(!budgeted.structural && budgeted.budgetBytes > 0, 'a value payload within the budget');
      assert.equal(decodePayload(budgeted.payload).header.sequence, 3);
      const exact = await sameAsCli(dir, { ...at, budget: 'all', modelId: 'lib-diff', modelOut: path.join(dir, format === 'tfjs' ? 'after' : `after.${format}`) });
      assert.ok(!exact.structural && exact.method === 'exact');
      assert.equal(exact.modelOutFingerprint, exact.targetFingerprint, 'modelOut holds the target exactly');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('diff of two .safetensors files: the bytes ndiff writes; modelOut is the target; eval and a tensor set that differs are refused', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-lib-diff-st-'));
  try {
    const r = seeded(11);
    const kernel = Float32Array.from({ length: 1536 }, () => r.float() - 0.5);
    const bias = Float32Array.from({ length: 8 }, () => r.float() - 0.5);
    const moved = (x: Float32Array) => x.map((v, i) => (i % 4 === 0 ? Math.fround(v + 0.125) : v));
    const at = { base: path.join(dir, 'v1.safetensors'), target: path.join(dir, 'v2.safetensors') };
    await writeSafetensorsFile(at.base, { 'dense.weight': { shape: [192, 8], data: kernel }, 'dense.bias': { shape: [8], data: bias } });
    await writeSafetensorsFile(at.target, { 'dense.weight': { shape: [192, 8], data: moved(kernel) }, 'dense.bias': { shape: [8], data: moved(bias) } });
    const budgeted = await sameAsCli(dir, { ...at, budget: '30%', modelId: 'st', method: 'topk' });
    assert.ok(!budgeted.structural && budgeted.kept > 0);
    const exact = await sameAsCli(dir, { ...at, budget: 'all', modelId: 'st', modelOut: path.join(dir, 'after.safetensors') });
    assert.ok(!exact.structural);
    assert.equal(exact.modelOutFingerprint, exact.targetFingerprint);
    await assert.rejects(diff({ ...at, budget: '30%', modelId: 'st', eval: dir }), (e: unknown) => e instanceof UsageError && /safetensors file holds weights without the program/.test((e as Error).message));
    const other = path.join(dir, 'other.safetensors');
    await writeSafetensorsFile(other, { 'dense.weight': { shape: [8, 192], data: kernel } });
    await assert.rejects(diff({ base: at.base, target: other, budget: '30%', modelId: 'st' }), ModelMismatchError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

for (const format of ['onnx', 'tfjs'] as const) {
  test(`diff of a ${format === 'onnx' ? '.onnx pair' : 'TF.js pair'} whose structure changed: the structural payload ndiff writes`, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), `nd-lib-diff-structural-${format}-`));
    try {
      const at = await writePair(dir, structuralPair(format, 5), format);
      const res = await sameAsCli(dir, { ...at, budget: 'all', modelId: 'lib-structural' });
      assert.ok(res.structural && res.formatVersion === 7 && res.exact);
      const within = await sameAsCli(dir, { ...at, budget: 300, modelId: 'lib-structural', method: 'lowbit' });
      assert.ok(within.structural);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('diff refuses what does not fit with the typed error ndiff maps to its exit code, writing nothing', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-lib-diff-refuse-'));
  try {
    const at = await writePair(dir, valuePair('onnx', 3), 'onnx');
    const out = path.join(dir, 'p.ndiff');
    await assert.rejects(diff({ ...at, budget: '5%', modelId: 'x', method: 'auto', out }), (e: unknown) => e instanceof UsageError && /method auto \(--method auto\) measures every candidate/.test((e as Error).message));
    // The option a library caller passed is named, with the flag beside it for the command's users.
    await assert.rejects(diff({ ...at, budget: '5%', out }), (e: unknown) => e instanceof UsageError && /which model is this an update of.*pass modelId \(--model-id ID\)/.test((e as Error).message));
    await assert.rejects(diff({ ...at, budget: '5%', modelId: '', out }), (e: unknown) => e instanceof UsageError && /^modelId \(--model-id\) is empty/.test((e as Error).message));
    await assert.rejects(diff({ ...at, budget: 'all', modelId: 'x', method: 'lowbit', out }), (e: unknown) => e instanceof UsageError && /^method lowbit \(--method lowbit\) carries changes within a byte budget: give budget \(--budget\) a size/.test((e as Error).message));
    await assert.rejects(readFile(out), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('diff with a lowbitCache shared between budgets (as budget auto shares one): the bytes each budget gives alone, and the cache is consulted', async () => {
  for (const format of ['tfjs', 'onnx'] as const) {
    const dir = await mkdtemp(path.join(tmpdir(), `nd-lib-diff-cache-${format}-`));
    try {
      const at = await writePair(dir, valuePair(format, 11), format);
      const cache = new CountingLowBitCache();
      for (const budget of [240, 480, 240]) {
        const shared = await diff({ ...at, budget, method: 'lowbit', modelId: 'lib-diff', lowbitCache: cache });
        const alone = await diff({ ...at, budget, method: 'lowbit', modelId: 'lib-diff' });
        assert.deepEqual(shared.payload, alone.payload, `${format} at ${budget} bytes`);
      }
      assert.ok(cache.asked > 0, `${format}: the shared cache was consulted`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
});
