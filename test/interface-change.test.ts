/**
 * An architecture change is never patched by a value payload: a target that adds, removes,
 * reshapes (a transposed shape: same size, other dims) or retypes a tensor is refused by every
 * value diff path (exact, top-k with each value codec, the drop and low-rank baselines), with the
 * reason named and counted. Before the shared check, the exact path wrote a payload whose target
 * fingerprint was not the target's. The CLI writes a structural payload (format v7) instead, at
 * `--budget all` and within a budget, and names the change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { readMsgpack } from '../src/core/msgpack-read.ts';
import { getHasher } from '../src/core/hasher.ts';
import { ModelMismatchError, TargetMismatchError } from '../src/core/errors.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { exactDiff } from '../src/diff/exact.ts';
import { modelDelta } from '../src/diff/delta.ts';
import { topkDiff } from '../src/topk-diff/encoder.ts';
import { dropDiff } from '../src/diff/baselines.ts';
import { lowRankDiff } from '../src/lowrank-diff/encoder.ts';
import { confirmPayload } from '../src/diff/confirm.ts';
import { compareInterfaces } from '../src/diff/interface.ts';
import { writeModelDir } from '../src/io/tfjs/index.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { main } from '../cli/ndiff.ts';
import { tempDir } from './helpers/dirs.ts';

const hasher = await getHasher();
const ramp = (n: number, k = 1) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * k) * 0.1));

type Tensors = Record<string, { shape: number[]; data: Float32Array | Int32Array }>;

function baseTensors(): Tensors {
  return { a: { shape: [3, 4], data: ramp(12) }, b: { shape: [8], data: ramp(8, 2) }, c: { shape: [5], data: ramp(5, 3) } };
}

/** The four changes, each on its own (with every weight also moved a little, as a retrain does). */
function changes(): { what: 'added' | 'removed' | 'reshaped' | 'retyped'; target: Tensors }[] {
  const moved = (): Tensors => Object.fromEntries(Object.entries(baseTensors()).map(([n, t]) => [n, { shape: t.shape, data: (t.data as Float32Array).map((x) => Math.fround(x + 0.01)) }]));
  const added = moved();
  added.d = { shape: [4], data: ramp(4, 5) };
  const removed = moved();
  delete removed.c;
  const reshaped = moved();
  reshaped.a = { shape: [4, 3], data: reshaped.a.data };
  const retyped = moved();
  retyped.b = { shape: [8], data: Int32Array.from({ length: 8 }, (_, i) => i) };
  return [{ what: 'added', target: added }, { what: 'removed', target: removed }, { what: 'reshaped', target: reshaped }, { what: 'retyped', target: retyped }];
}

async function folder(dir: string, tensors: Tensors): Promise<void> {
  await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors);
}

test('every diff path refuses an added, a removed, a reshaped and a retyped tensor, naming it', async () => {
  const dir = await tempDir('nd-iface-');
  await folder(join(dir, 'base'), baseTensors());
  const base = await openTfjsModelDir(join(dir, 'base'));
  for (const { what, target: t } of changes()) {
    await folder(join(dir, what), t);
    const target = await openTfjsModelDir(join(dir, what));
    const d = compareInterfaces(base, target);
    const named = { added: ['d'], removed: ['c'], reshaped: ['a'], retyped: ['b'] }[what];
    const got = what === 'reshaped' ? d.reshaped.map((r) => r.name) : what === 'retyped' ? d.retyped.map((r) => r.name) : d[what];
    assert.deepEqual(got, named, `${what}: the difference is named`);
    const paths: [string, () => unknown][] = [
      ['exact', () => exactDiff(hasher, base, target)],
      ...(['auto', 'f32', 'f16', 'i8'] as const).map((codec) => [`topk ${codec}`, () => topkDiff(hasher, base, target, { budgetBytes: 400, codec })] as [string, () => unknown]),
      ['drop', () => dropDiff(hasher, base, modelDelta(base, target), { budgetBytes: 400 })],
      ['lowrank', () => lowRankDiff(hasher, base, modelDelta(base, target), { budgetBytes: 400 })],
    ];
    for (const [path, run] of paths) {
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof ModelMismatchError, `${what} / ${path}: ${String(e)}`);
        assert.match(e.message, new RegExp(`1 (tensor\\(s\\) )?${what}`), `${what} / ${path}: counted in the message`);
        assert.match(e.message, new RegExp(`"${named[0]}"`), `${what} / ${path}: named in the message`);
        assert.deepEqual((e.details as Record<string, unknown>)[what], named);
        return true;
      });
    }
    // The CLI writes a structural payload instead (format v7: the files rebuilt, FORMAT.md §17),
    // exactly and within a budget, and names the change; the value-only paths above still refuse.
    for (const budget of ['all', '2KB']) {
      const out = join(dir, `${what}-${budget.replace('%', 'pct')}.ndiff`);
      const lines: string[] = [];
      const code = await main(['diff', '--model-id', 'm', '--base', join(dir, 'base'), '--target', join(dir, what), '--budget', budget, '--out', out], { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: () => {} });
      assert.equal(code, 0, `${what} at --budget ${budget}: ${lines.join(' ')}`);
      assert.equal((readMsgpack(new Uint8Array(await readFile(out))) as Record<string, unknown>).nd, 7, `${what} at --budget ${budget}: a structural payload`);
      assert.match(lines.join('\n'), what === 'removed' ? /removed: c;/ : what === 'added' ? /added: d;/ : what === 'reshaped' ? /reshaped: a \[3, 4\] -> \[4, 3\]/ : /retyped: b|removed: b;/); // an int32 tensor is part of a TF.js model's frame, not a weight
    }
  }
});

test('a transposed shape on in-memory stores: refused, though the values line up one for one', () => {
  const a = ramp(12);
  const base = new MemoryWeightStore({ w: { shape: [3, 4], data: a } });
  const target = new MemoryWeightStore({ w: { shape: [4, 3], data: a.map((x) => x + 1) } });
  assert.throws(() => exactDiff(hasher, base, target), /1 reshaped \("w" \[3, 4\] -> \[4, 3\]\)/);
});

test('a payload whose bytes would not reach the target is refused by the confirmation', () => {
  const base = new MemoryWeightStore({ w: { shape: [6], data: ramp(6) } });
  const target = new MemoryWeightStore({ w: { shape: [6], data: ramp(6).map((x) => x + 0.5) } });
  const other = new MemoryWeightStore({ w: { shape: [6], data: ramp(6).map((x) => x - 0.5) } });
  const built = exactDiff(hasher, base, target);
  assert.doesNotThrow(() => confirmPayload(hasher, base, built, target));
  assert.throws(() => confirmPayload(hasher, base, built, other), (e: unknown) => e instanceof TargetMismatchError && /1 tensor\(s\) differ \("w"\)/.test(e.message));
  assert.throws(() => confirmPayload(hasher, other, built), (e: unknown) => e instanceof TargetMismatchError && /built from another model/.test(e.message));
});

test('the library result says whether the exact payload is smaller than the new model', () => {
  const base = new MemoryWeightStore({ w: { shape: [400], data: ramp(400) } });
  const few = new MemoryWeightStore({ w: { shape: [400], data: ramp(400).map((x, i) => (i % 50 ? x : x + 1)) } });
  const all = new MemoryWeightStore({ w: { shape: [400], data: ramp(400).map((x) => Math.fround(-x * 3000 - 7)) } });
  const small = exactDiff(hasher, base, few);
  assert.equal(small.targetModelBytes, 1600);
  assert.equal(small.smallerThanModel, true);
  const big = exactDiff(hasher, base, all, { codecs: ['x'] });
  assert.equal(big.smallerThanModel, big.bytes.length < 1600);
  assert.equal(big.smallerThanModel, false, `${big.bytes.length} bytes for 1600 bytes of weights`);
});
