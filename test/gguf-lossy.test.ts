/**
 * On-grid GGUF payloads (docs/format/gguf.md §18.6): two versions of one GGUF layout diffed
 * under a byte budget. The payload fits the budget; the model it makes is a valid GGUF of the
 * same types whose every unit (ggml block, or 32 weights of a plain tensor) is v1's or v2's byte
 * for byte; applied by the library call and the CLI it reaches the payload's target digest; a
 * bigger budget carries a larger share of the squared dequantized change; the same inputs give
 * the same bytes; a budget below the smallest payload is a BudgetError that writes nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHasher, type Hasher } from '../src/core/hasher.ts';
import { BudgetError, MissingDependencyError } from '../src/core/errors.ts';
import { measureGguf } from '../src/front/measure/gguf-runtime.ts';
import { loadLlamaRuntime } from '../src/front/measure/llama-runtime.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { ggufModelOf, ggufSplitModel } from '../src/io/gguf/model.ts';
import { applyToGgufFile } from '../src/io/gguf/in-place.ts';
import { decodeGgufPayload } from '../src/io/gguf/payload.ts';
import { ongridGgufDiff, PLAIN_GROUP, rankGgufChange } from '../src/gguf-diff/index.ts';
import { mixedGgufModel } from '../src/gguf-diff/mixed.ts';
import { RANKING_BINS } from '../src/gguf-diff/ranking.ts';
import { diffGgufModels, ggufChanges } from '../src/io/gguf/diff.ts';
import { diff } from '../src/front/diff.ts';
import { apply } from '../src/front/apply.ts';
import { ggufFixture, GGUF_VECTORS, perturbGguf } from './helpers/gguf-pairs.ts';
import { runNdiff } from './helpers/ndiff-run.ts';

/** Why the llama.cpp test skips: node-llama-cpp not found (NEURAL_DIFF_LLAMA_DIR, or installed beside the package). */
const llamaSkip = await loadLlamaRuntime().then(() => false as const, (e: unknown) => {
  if (e instanceof MissingDependencyError) return `node-llama-cpp is not installed (set NEURAL_DIFF_LLAMA_DIR or run scripts/install-llama.sh): ${e.message.split('\n')[0]}`;
  throw e;
});

let hasher: Hasher;
let root: string;
let n = 0;
const fresh = () => mkdtempSync(join(root, `case-${n++}-`));
const options = { modelId: 'tiny', sequence: 1, createdBy: 'test' };
const ongrid = (a: Uint8Array, b: Uint8Array, budget: number) => ongridGgufDiff(hasher, ggufModelOf(bytesSource(a)), ggufModelOf(bytesSource(b)), budget, options);
const stories = (v: string) => new Uint8Array(readFileSync(join(GGUF_VECTORS, 'stories', v)));

before(async () => {
  hasher = await getHasher();
  root = mkdtempSync(join(tmpdir(), 'ndiff-gguf-lossy-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Apply `payload` to a copy of `v1` in place and return the bytes it ends with. */
async function applied(v1: Uint8Array, payload: Uint8Array): Promise<Uint8Array> {
  const file = join(fresh(), 'model.gguf');
  writeFileSync(file, v1);
  assert.equal((await applyToGgufFile(file, payload, { state: null })).status, 'applied');
  return new Uint8Array(readFileSync(file));
}

/** Check that every unit of `made` is v1's or v2's and that its header and tensor infos are v2's; returns the units taken from v2 that differ from v1. */
function checkOnGrid(v1: Uint8Array, v2: Uint8Array, made: Uint8Array): number {
  assert.equal(made.length, v2.length);
  const h = ggufModelOf(bytesSource(made)).parts[0].header;
  const h2 = ggufModelOf(bytesSource(v2)).parts[0].header;
  assert.deepEqual(h.tensors.map((t) => [t.name, t.type.name, t.ne.join(), t.offset]), h2.tensors.map((t) => [t.name, t.type.name, t.ne.join(), t.offset]), 'a valid GGUF of the same types and layout');
  assert.equal(Buffer.compare(made.subarray(0, h.dataStart), v2.subarray(0, h.dataStart)), 0, 'the header is v2\'s');
  let fromV2 = 0;
  for (const t of h.tensors) {
    const unit = t.type.blockSize === 1 ? PLAIN_GROUP * t.type.typeSize : t.type.typeSize;
    for (let u = 0; u < t.bytes; u += unit) {
      const from = h.dataStart + t.offset + u;
      const to = from + Math.min(unit, t.bytes - u);
      const m = made.subarray(from, to);
      const isV1 = Buffer.compare(m, v1.subarray(from, to)) === 0;
      const isV2 = Buffer.compare(m, v2.subarray(from, to)) === 0;
      assert.ok(isV1 || isV2, `${t.name} unit at ${u} is neither v1's nor v2's`);
      if (!isV1) fromV2++;
    }
  }
  return fromV2;
}

test('Q4_K and F16 pairs: within the budget, every block v1\'s or v2\'s, the header v2\'s, the target digest reached in place; same bytes each run', async () => {
  const q4k = ggufFixture('tiny-llama-q4_k_m.gguf');
  for (const [v1, v2, share] of [[q4k, perturbGguf(q4k, { blockShare: 0.5, bytesPerBlock: 40, metadata: true, seed: 4 }), 0.15], [stories('v1.gguf'), stories('v2.gguf'), 0.05]] as const) {
    const budget = Math.floor(v2.length * share);
    const r = ongrid(v1, v2, budget);
    assert.ok(r.payload.length <= budget, `${r.payload.length} bytes within ${budget}`);
    assert.ok(r.takenBlocks > 0 && r.takenBlocks < r.changedBlocks, `${r.takenBlocks} of ${r.changedBlocks} blocks taken`);
    assert.deepEqual(ongrid(v1, v2, budget).payload, r.payload, 'deterministic');
    const made = await applied(v1, r.payload);
    assert.equal(checkOnGrid(v1, v2, made), r.takenBlocks + r.opaqueBlocks, 'exactly the taken blocks come from v2');
    assert.equal(decodeGgufPayload(r.payload).header.targetFingerprint, r.targetFingerprint);
  }
});

test('each try of the on-grid search compares only the ranges the versions differ in: the same payload as the whole comparison, at every threshold', () => {
  const splitNames = [1, 2, 3].map((k) => `tiny-split-0000${k}-of-00003.gguf`);
  const split = (parts: Uint8Array[]) => ggufSplitModel(3, (no) => bytesSource(parts[no - 1], splitNames[no - 1]), splitNames[0]);
  const splitBase = splitNames.map((x) => ggufFixture(x));
  for (const [name, base, target] of [
    ['Q4_K_M', ggufModelOf(bytesSource(ggufFixture('tiny-llama-q4_k_m.gguf'))), ggufModelOf(bytesSource(perturbGguf(ggufFixture('tiny-llama-q4_k_m.gguf'), { blockShare: 0.5, seed: 3, metadata: true })))],
    ['F32 stories', ggufModelOf(bytesSource(stories('v1.gguf'))), ggufModelOf(bytesSource(stories('v2.gguf')))],
    ['a split Q8_0', split(splitBase), split(splitBase.map((b, i) => perturbGguf(b, { blockShare: 0.4, seed: 50 + i })))],
  ] as const) {
    const ranking = rankGgufChange(base, target);
    const within = ggufChanges(hasher, base, target);
    // No unit, every unit, and the bins of a quarter, half and three quarters of the changed units.
    const bins = [...ranking.units.keys()].filter((k) => ranking.units[k] > 0);
    const thresholds = new Set([0, RANKING_BINS, ...[0.25, 0.5, 0.75].map((q) => bins[Math.floor(q * bins.length)])]);
    assert.ok(thresholds.size >= 3, `${name}: thresholds ${[...thresholds]}`);
    for (const t of thresholds) {
      const mixed = mixedGgufModel(base, target, t);
      const whole = diffGgufModels(hasher, base, mixed, options);
      const known = diffGgufModels(hasher, base, mixed, { ...options, within });
      assert.deepEqual(known.payload, whole.payload, `${name} at threshold ${t}`);
    }
  }
});

test('a bigger budget carries a larger share of the squared dequantized change (stories260K pair)', () => {
  const [v1, v2] = [stories('v1.gguf'), stories('v2.gguf')];
  const shares = [0.01, 0.03, 0.1, 0.3].map((p) => ongrid(v1, v2, Math.floor(v2.length * p)));
  for (let i = 1; i < shares.length; i++) {
    assert.ok(shares[i].changeCarried > shares[i - 1].changeCarried, `${shares.map((s) => s.changeCarried.toFixed(3)).join(' < ')}`);
    assert.ok(shares[i].takenBlocks > shares[i - 1].takenBlocks);
  }
  assert.ok(shares[0].changeCarried > 0.01, 'the first percent carries more than its share: the largest changes go first');
});

test('a budget below the smallest payload is a BudgetError naming the least that fits, and nothing is written', async () => {
  const [v1, v2] = [stories('v1.gguf'), stories('v2.gguf')];
  assert.throws(() => ongrid(v1, v2, 50), (e: unknown) => e instanceof BudgetError && /at least \d+ bytes/.test((e as Error).message));
  const dir = fresh();
  const [a, b, out] = ['v1.gguf', 'v2.gguf', 'p.ndiff'].map((x) => join(dir, x));
  writeFileSync(a, v1);
  writeFileSync(b, v2);
  await assert.rejects(diff({ base: a, target: b, budget: '50', modelId: 'tiny', out }), (e: unknown) => e instanceof BudgetError);
  assert.ok(!existsSync(out), 'no payload written');
});

test('ndiff diff --budget 5% equals the library call byte for byte; ndiff apply and apply() reach its target', async () => {
  const dir = fresh();
  const [a, b, c, d, p, q] = ['v1.gguf', 'v2.gguf', 'device.gguf', 'device2.gguf', 'cli.ndiff', 'lib.ndiff'].map((x) => join(dir, x));
  const [v1, v2] = [stories('v1.gguf'), stories('v2.gguf')];
  for (const [f, x] of [[a, v1], [b, v2], [c, v1], [d, v1]] as const) writeFileSync(f, x);
  const made = await runNdiff('diff', '--base', a, '--target', b, '--budget', '5%', '--model-id', 'tiny', '--out', p, '--json');
  assert.equal(made.code, 0, made.err);
  const doc = JSON.parse(made.out) as { method: string; bytes: number; budgetBytes: number; ongrid: { takenBlocks: number; changedBlocks: number; changeCarried: number }; targetFingerprint: string };
  assert.equal(doc.method, 'ongrid');
  assert.equal(doc.budgetBytes, Math.floor(v2.length * 0.05));
  assert.ok(doc.bytes <= doc.budgetBytes);
  assert.ok(doc.ongrid.takenBlocks < doc.ongrid.changedBlocks && doc.ongrid.changeCarried > 0 && doc.ongrid.changeCarried < 1);
  const lib = await diff({ base: a, target: b, budget: '5%', modelId: 'tiny', out: q });
  assert.equal(Buffer.compare(readFileSync(p), readFileSync(q)), 0, 'the command and the library call write the same bytes');
  assert.equal(lib.targetFingerprint, doc.targetFingerprint);
  const r = await runNdiff('apply', '--model', c, '--patch', p);
  assert.equal(r.code, 0, r.err);
  const viaLib = await apply({ model: d, payload: q, state: null });
  assert.equal(viaLib.targetFingerprint, doc.targetFingerprint);
  assert.equal(Buffer.compare(readFileSync(c), readFileSync(d)), 0, 'the CLI and the library end with the same file');
  checkOnGrid(v1, v2, new Uint8Array(readFileSync(c)));
});

test('through llama.cpp on the stories260K pair: a larger budget agrees with v2 at least as often, at no larger KL', { skip: llamaSkip }, async () => {
  const [v1, v2] = [stories('v1.gguf'), stories('v2.gguf')];
  const dir = fresh();
  const models = [];
  for (const share of [0.05, 0.5]) {
    const file = join(dir, `patched-${share}.gguf`);
    writeFileSync(file, await applied(v1, ongrid(v1, v2, Math.floor(v2.length * share)).payload));
    models.push(file);
  }
  const r = await measureGguf({ target: join(GGUF_VECTORS, 'stories', 'v2.gguf'), base: join(GGUF_VECTORS, 'stories', 'v1.gguf'), models, eval: join(GGUF_VECTORS, 'stories', 'held-out.txt'), maxTokens: 300, threads: 1 });
  const [small, large] = models.map((m) => r.models.find((x) => x.model === m)!);
  const base = r.models.find((x) => x.role === 'base')!;
  assert.ok(large.meanKl <= small.meanKl, `mean KL ${large.meanKl} (50%) <= ${small.meanKl} (5%)`);
  assert.ok(large.agreement >= small.agreement, `agreement ${large.agreement} (50%) >= ${small.agreement} (5%)`);
  assert.ok(large.meanKl < base.meanKl, `the 50% payload is closer to v2 than v1 is (${large.meanKl} < ${base.meanKl})`);
});
