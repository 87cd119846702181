/**
 * The library's `apply` (neural-diff) against the `ndiff` binary: the same payload applied to two
 * copies of a model, one by `ndiff apply`, one by the library, leaves the same bytes on disk, and
 * the library's result holds the fields `ndiff apply --json` prints; a refusal is the typed error
 * the command maps to its exit code, the model untouched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { apply, diff, ModelMismatchError } from 'neural-diff';
import { structuralPair, valuePair, type PairFormat, type StructuralPair } from './helpers/structural-pairs.ts';

const BIN = path.join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');

function ndiff(args: string[]): { status: number | null; doc: Record<string, unknown>; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json', '--quiet'], { encoding: 'utf8' });
  let doc: Record<string, unknown> = {};
  try {
    doc = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // left empty: the assertion on the status says what went wrong
  }
  return { status: r.status, doc, stderr: r.stderr };
}

/** The model's files, by name (control files the apply writes beside it left out: they name paths and times). */
async function modelBytes(at: string): Promise<Map<string, Buffer>> {
  const dir = path.extname(at) ? path.dirname(at) : at;
  const names = (await readdir(dir)).filter((n) => !n.includes('.ndiff-') && !n.startsWith('.ndiff')).sort();
  return new Map(await Promise.all(names.map(async (n) => [n, await readFile(path.join(dir, n))] as [string, Buffer])));
}

/** The base of `pair` written twice (for the binary and for the library) and the target once: their paths. */
async function layout(dir: string, pair: StructuralPair, format: PairFormat): Promise<{ base: string; target: string; cli: string; lib: string }> {
  const name = format === 'tfjs' ? '' : `model.${format}`;
  const at = { base: path.join(dir, 'base', name), target: path.join(dir, 'target', name), cli: path.join(dir, 'cli', name), lib: path.join(dir, 'lib', name) };
  for (const [side, one, files] of [['base', pair.base, pair.baseFiles], ['target', pair.target, pair.targetFiles], ['cli', pair.base, pair.baseFiles], ['lib', pair.base, pair.baseFiles]] as const) {
    await mkdir(path.join(dir, side), { recursive: true });
    if (format === 'tfjs') for (const f of files ?? []) await writeFile(path.join(dir, side, f.path), f.bytes);
    else await writeFile(at[side], one);
  }
  return at;
}

const cases: { name: string; format: PairFormat; pair: (seed: number) => StructuralPair; budget: string | number }[] = [
  { name: 'a TF.js folder', format: 'tfjs', pair: (s) => valuePair('tfjs', s), budget: 240 },
  { name: 'an .onnx file', format: 'onnx', pair: (s) => valuePair('onnx', s), budget: 240 },
  { name: 'a .tflite file', format: 'tflite', pair: (s) => valuePair('tflite', s), budget: 'all' },
  { name: 'an .onnx file whose structure changes (format v7)', format: 'onnx', pair: (s) => structuralPair('onnx', s), budget: 'all' },
  { name: 'a TF.js folder whose structure changes (format v7)', format: 'tfjs', pair: (s) => structuralPair('tfjs', s), budget: 'all' },
];

for (const c of cases) {
  test(`apply to ${c.name}: the bytes ndiff apply leaves, and its --json fields`, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nd-lib-apply-'));
    try {
      const at = await layout(dir, c.pair(9), c.format);
      const payload = path.join(dir, 'p.ndiff');
      const made = await diff({ base: at.base, target: at.target, budget: c.budget, modelId: 'lib-apply', out: payload });
      const cli = ndiff(['apply', '--model', at.cli, '--patch', payload]);
      assert.equal(cli.status, 0, cli.stderr);
      const res = await apply({ model: at.lib, payload });
      assert.equal(res.status, 'applied');
      assert.equal(res.targetFingerprint, made.targetFingerprint);
      const [fromCli, fromLib] = await Promise.all([modelBytes(at.cli), modelBytes(at.lib)]);
      assert.deepEqual([...fromLib.keys()], [...fromCli.keys()]);
      for (const [name, bytes] of fromCli) assert.ok(bytes.equals(fromLib.get(name) as Buffer), `${name}: the library leaves the bytes ndiff apply leaves`);
      assert.notDeepEqual(fromLib, await modelBytes(at.base), 'the model changed');
      const comparable = (d: Record<string, unknown>) => {
        const { milliseconds: _m, model: _model, statePath: _s, ...rest } = d;
        return rest;
      };
      assert.deepEqual(comparable(JSON.parse(JSON.stringify(res)) as Record<string, unknown>), comparable(cli.doc));
      // Once more: already there, nothing written; by bytes, as a device receives them.
      const again = await apply({ model: at.lib, payload: new Uint8Array(await readFile(payload)) });
      assert.equal(again.status, 'already-applied');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('apply refuses a payload made for another model with the typed error, the model untouched, the health check a function', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-lib-apply-refuse-'));
  try {
    const at = await layout(dir, valuePair('onnx', 4), 'onnx');
    const payload = path.join(dir, 'p.ndiff');
    await diff({ base: at.base, target: at.target, budget: 'all', modelId: 'refuse', out: payload });
    // A model the payload was not made for: another model's base.
    const other = path.join(dir, 'other', 'model.onnx');
    await mkdir(path.dirname(other), { recursive: true });
    await writeFile(other, valuePair('onnx', 6).base);
    const before = await readFile(other);
    await assert.rejects(apply({ model: other, payload }), ModelMismatchError);
    assert.ok(before.equals(await readFile(other)), 'untouched');
    let checked: { dir: string; file?: string } | undefined;
    const res = await apply({ model: at.lib, payload, healthCheck: (where) => { checked = where; } });
    assert.equal(res.status, 'applied');
    assert.equal(checked?.file, at.lib, 'the health check was given the model file');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
