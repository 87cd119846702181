/**
 * `ndiff diff --calibrate TEXT` on two GGUF models (src/front/measure/gguf-calibrate.ts): the
 * on-grid ranking weighs each changed tensor by the effect of its change on the outputs through
 * llama.cpp. Without the runtime: a tensor's weight moves the payload's blocks to that tensor,
 * within the budget and deterministic (that a weighed payload is on the grid is the unweighted
 * one's code path, test/gguf-lossy.test.ts). Through llama.cpp on the stories260K
 * pair: every changed tensor is measured, its gain is the base's KL minus its own, and the
 * calibrated payload at 10% is closer to v2 on the text than the uncalibrated one of the same
 * budget. The refusals: budget all (nothing to rank), a missing text, a method.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { DataError, UsageError } from '../src/core/errors.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { ongridGgufDiff, rankGgufChange, rowChange } from '../src/gguf-diff/index.ts';
import { rowBytes } from '../src/gguf-diff/ranking.ts';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';
import { diff } from '../src/front/diff.ts';
import type { GgufDiffReport } from '../src/front/diff-gguf.ts';
import { GGUF_VECTORS } from './helpers/gguf-pairs.ts';
import { llamaForTests } from './helpers/llama.ts';
import { runNdiff } from './helpers/ndiff-run.ts';

const llama = await llamaForTests();
const stories = (v: string) => join(GGUF_VECTORS, 'stories', v);
const bytes = (v: string) => new Uint8Array(readFileSync(stories(v)));
const options = { modelId: 'stories', sequence: 1, createdBy: 'test' };

let hasher: Hasher;
let root: string;
before(async () => {
  hasher = await getHasher();
  root = mkdtempSync(join(tmpdir(), 'ndiff-gguf-calibrate-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** The names of the tensors whose bytes differ between two files of one layout. */
function changedTensors(a: Uint8Array, b: Uint8Array): string[] {
  const h = ggufModelOf(bytesSource(a)).parts[0].header;
  return h.tensors.filter((t) => Buffer.compare(a.subarray(h.dataStart + t.offset, h.dataStart + t.offset + t.bytes), b.subarray(h.dataStart + t.offset, h.dataStart + t.offset + t.bytes)) !== 0).map((t) => t.name);
}

test('a tensor weighed far above the others takes the budget: the payload carries its blocks first, within the budget, the same bytes each run', () => {
  const [v1, v2] = [bytes('v1.gguf'), bytes('v2.gguf')];
  const [m1, m2] = [ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2))];
  const { tensorScore } = rankGgufChange(m1, m2);
  assert.ok(tensorScore.size > 8, `${tensorScore.size} changed tensors`);
  // The tensor with the least squared change: unweighted, the ranking reaches it last.
  const [quiet] = [...tensorScore].sort((x, y) => x[1] - y[1])[0];
  const budget = Math.floor(v2.length * 0.02);
  const plain = ongridGgufDiff(hasher, m1, m2, budget, options);
  const weighed = ongridGgufDiff(hasher, m1, m2, budget, options, new Map([[quiet, { scale: 1e12 }]]));
  assert.deepEqual(ongridGgufDiff(hasher, m1, m2, budget, options, new Map([[quiet, { scale: 1e12 }]])).payload, weighed.payload, 'deterministic');
  assert.ok(weighed.payload.length <= budget);
  // The tensors each payload changes: the weighed one is carried by the weighed payload, not by the plain one.
  assert.notEqual(weighed.targetFingerprint, plain.targetFingerprint);
  assert.ok(weighed.changedTensors.includes(quiet), `the weighed payload changes ${quiet}`);
  assert.ok(!plain.changedTensors.includes(quiet), `the plain payload leaves ${quiet} (the least change) for later`);
  assert.ok(weighed.changeCarried < plain.changeCarried, 'changeCarried stays the unweighted share of the squared change: taking the quiet tensor first carries less of it');
  assert.deepEqual([...tensorScore.keys()].sort(), changedTensors(v1, v2).filter((n) => tensorScore.has(n)).sort());
});

test('a row weighed far above the others in the token embeddings: the payload takes that row from v2 before the rest', async () => {
  const [v1, v2] = [bytes('v1.gguf'), bytes('v2.gguf')];
  const [m1, m2] = [ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2))];
  const h = m1.parts[0].header;
  const t = h.tensors.find((x) => x.name === 'token_embd.weight')!;
  const per = rowBytes(t);
  const change = rowChange(m1, m2, t.name);
  assert.equal(change.length, t.ne[1]);
  // The changed row with the least change: ranked by the change alone it waits.
  const row = [...change.keys()].filter((r) => change[r] > 0).sort((x, y) => change[x] - change[y])[0];
  const rows = new Float64Array(t.ne[1]).fill(1);
  rows[row] = 1e12;
  const budget = Math.floor(v2.length * 0.01);
  const at = h.dataStart + t.offset + row * per;
  const rowOf = async (payload: Uint8Array) => {
    const file = join(root, `rows-${payload.length}-${Math.random().toString(36).slice(2)}.gguf`);
    writeFileSync(file, v1);
    await applyToGgufFile(file, payload, { state: null });
    return readFileSync(file).subarray(at, at + per);
  };
  const weighed = ongridGgufDiff(hasher, m1, m2, budget, options, new Map([[t.name, { scale: 1, rows }]]));
  const plain = ongridGgufDiff(hasher, m1, m2, budget, options);
  assert.equal(Buffer.compare(await rowOf(weighed.payload), v2.subarray(at, at + per)), 0, `row ${row} is v2's with its weight`);
  assert.equal(Buffer.compare(await rowOf(plain.payload), v1.subarray(at, at + per)), 0, `row ${row} is v1's without`);
});

test('calibrate with budget all, a text that is not there, and a method are refused before anything is written', async () => {
  const out = join(root, 'refused.ndiff');
  await assert.rejects(diff({ base: stories('v1.gguf'), target: stories('v2.gguf'), budget: 'all', modelId: 'stories', calibrate: stories('held-out.txt'), out }), (e: unknown) => e instanceof UsageError && /budget all carries every change exactly/.test((e as Error).message));
  await assert.rejects(diff({ base: stories('v1.gguf'), target: stories('v2.gguf'), budget: '10%', modelId: 'stories', calibrate: join(root, 'missing.txt'), out }), (e: unknown) => e instanceof DataError && /calibrate \(--calibrate\) .*missing\.txt: expected a UTF-8 text file/.test((e as Error).message));
  await assert.rejects(diff({ base: stories('v1.gguf'), target: stories('v2.gguf'), budget: '10%', modelId: 'stories', method: 'lowbit', calibrate: stories('held-out.txt'), out }), (e: unknown) => e instanceof UsageError && /method \(--method lowbit\) does not apply to GGUF models/.test((e as Error).message));
  const r = await runNdiff('diff', '--base', stories('v1.gguf'), '--target', stories('v2.gguf'), '--budget', 'all', '--model-id', 'stories', '--calibrate', stories('held-out.txt'), '--out', out);
  assert.equal(r.code, 2, r.err);
  assert.throws(() => readFileSync(out), /ENOENT/, 'nothing written');
});

describe('through llama.cpp on the stories260K pair', { skip: llama.skip }, () => {
  test('every changed tensor measured, its gain the base\'s KL minus its own; the calibrated 10% payload is closer to v2 on the text than the uncalibrated one', async () => {
    const text = stories('held-out.txt');
    const common = { base: stories('v1.gguf'), target: stories('v2.gguf'), budget: '10%', modelId: 'stories', eval: text, allowWorse: true };
    const lines: string[] = [];
    // diff() of two .gguf models returns diffGguf's report.
    const calibrated = (await diff({ ...common, calibrate: text, onProgress: (l: string) => lines.push(l) })) as unknown as GgufDiffReport;
    const plain = (await diff(common)) as unknown as GgufDiffReport;
    assert.equal(calibrated.method, 'ongrid');
    const c = calibrated.ongrid?.calibration;
    assert.ok(c, 'the report carries the calibration');
    const { tensorScore } = rankGgufChange(ggufModelOf(bytesSource(bytes('v1.gguf'))), ggufModelOf(bytesSource(bytes('v2.gguf'))));
    assert.deepEqual(c.tensors.map((t) => t.tensor).sort(), [...tensorScore.keys()].sort(), 'every changed tensor, once');
    for (const t of c.tensors) {
      assert.ok(Math.abs(t.gain - (c.baseKl - t.meanKl)) < 1e-12, `${t.tensor}: gain = base KL - its KL`);
      assert.ok(t.weight > 0 && Number.isFinite(t.weight), `${t.tensor}: weight ${t.weight}`);
      assert.equal(t.squaredChange, tensorScore.get(t.tensor));
    }
    for (let i = 1; i < c.tensors.length; i++) assert.ok(c.tensors[i - 1].gain >= c.tensors[i].gain, 'largest gain first');
    assert.ok(c.tensors[0].gain > 0, 'some tensor alone brings the model closer');
    assert.equal(c.tensors.find((t) => t.tensor === 'token_embd.weight')?.rows, 'both', 'tied embeddings: rows weighed by the target\'s probability and the input frequency');
    assert.deepEqual(c.tensors.filter((t) => t.rows !== undefined).map((t) => t.tensor), ['token_embd.weight']);
    assert.ok(Math.abs(c.baseKl - (plain.llamaEval as { base: { meanKl: number } }).base.meanKl) < 1e-9, 'the same base KL as --eval measures on the same text');
    assert.ok(lines.some((l) => /^calibrating on .*: \d+ changed tensor\(s\)/.test(l)) && lines.some((l) => /^calibrated in .* s on \d+ positions/.test(l)), lines.join('\n'));
    const [kc, kp] = [calibrated.llamaEval!.patched.meanKl, plain.llamaEval!.patched.meanKl];
    assert.ok(calibrated.bytes <= calibrated.budgetBytes);
    assert.ok(kc < kp, `KL(v2 || patched) calibrated ${kc} < uncalibrated ${kp} at the same budget`);
      });
});
