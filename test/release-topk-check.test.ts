/**
 * Publish checks a worker's post-hoc top-k payload in one pass, without running the encoder:
 * it takes the encoder's own payloads (several budgets, each codec) and refuses a payload that
 * keeps a smaller change in place of a larger one, carries a value further from the change than
 * its codec's error, or is over the budget, each with what was expected and what was found.
 * Through publish's check of a job result (verifyJobResult), and the check `release run` runs as
 * each result arrives (check-process.ts), the refusal names the rule broken.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import { buildPayload, storageGrids, type PatchSpec } from '../src/diff/build.ts';
import { modelDelta } from '../src/diff/delta.ts';
import { decodePayload, type SparsePatch } from '../src/core/format.ts';
import { topkDiff, type TopkCodec } from '../src/topk-diff/encoder.ts';
import { checkTopkPayload, TopkCheckError } from '../src/release/topk-check.ts';
import { jobFiles, readJobResult, runJob, verifyJobResult } from '../src/release/jobs.ts';
import { readRecord } from '../src/release/record.ts';
import { openState } from '../src/release/package.ts';
import { parseBudget } from '../src/diff/budget.ts';
import { sha256Of } from '../src/release/blobs.ts';
import { checkResult } from '../src/release/queue/check-process.ts';
import { diffOnnxModels } from '../src/diff/onnx.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { baseAndTarget } from './helpers/models.ts';
import { releaseChain } from './helpers/release-chain.ts';

const hasher = await getHasher();
const { base, target } = baseAndTarget(7);
const deltas = modelDelta(base, target);

/** The encoder's payload's kept positions, with the true changes as values, as specs to rebuild a payload from. */
function specsOf(bytes: Uint8Array, codec: 'f32' | 'f16' | 'i8'): PatchSpec[] {
  return decodePayload(bytes).patches.map((p) => {
    const s = p as SparsePatch;
    const d = deltas.get(s.name)!;
    return { kind: 'sparse', name: s.name, positions: s.positions.slice(), values: Float32Array.from(s.positions, (i) => d[i]), codec };
  });
}

function forged(specs: PatchSpec[], budgetBytes: number): Uint8Array {
  return buildPayload(hasher, base, specs, { method: 'topk', budgetBytes, grids: storageGrids(base) }).bytes;
}

function refusedWith(pattern: RegExp, check: (e: TopkCheckError) => void = () => {}) {
  return (e: unknown) => {
    assert.ok(e instanceof TopkCheckError, String(e));
    assert.equal(e.code, 'ND_PAYLOAD_FORMAT');
    assert.match(e.message, pattern);
    assert.ok('expected' in e.details && 'found' in e.details, JSON.stringify(e.details));
    check(e);
    return true;
  };
}

test('the one-pass check takes the encoder\'s own payload for several budgets and each codec', () => {
  for (const budgetBytes of [600, 2000, 6000]) {
    for (const codec of ['f32', 'f16', 'i8', 'auto'] as (TopkCodec | 'auto')[]) {
      const built = topkDiff(hasher, base, target, { budgetBytes, codec });
      const r = checkTopkPayload(hasher, base, target, built.bytes, { budgetBytes });
      assert.equal(r.kept, built.kept, `${budgetBytes} ${codec}`);
      assert.equal(r.changed, built.changed);
      assert.equal(r.reachedFingerprint, built.payload.header.targetFingerprint);
    }
  }
});

const VAD = join(import.meta.dirname, '..', 'node_modules/@ricky0123/vad-web/dist');
test('the one-pass check takes the ONNX encoder\'s payload of Silero VAD v5 -> v6 and refuses it with a value off', { skip: existsSync(join(VAD, 'silero_vad_v6.onnx')) ? false : 'the Silero VAD files of @ricky0123/vad-web are not installed' }, async () => {
  const v5 = new OnnxWeightStore(new Uint8Array(await readFile(join(VAD, 'silero_vad_v5.onnx'))), { source: 'silero_vad_v5.onnx' });
  const v6 = new OnnxWeightStore(new Uint8Array(await readFile(join(VAD, 'silero_vad_v6.onnx'))), { source: 'silero_vad_v6.onnx' });
  const budgetBytes = 21_823;
  const built = diffOnnxModels(hasher, v5, v6, { budgetBytes, modelId: 'vad', sequence: 2 });
  const r = checkTopkPayload(hasher, v5, v6, built.bytes, { budgetBytes });
  assert.equal(r.kept, built.kept);
  assert.equal(r.reachedFingerprint, built.payload.header.targetFingerprint);
  const d = modelDelta(v5, v6);
  const specs: PatchSpec[] = built.payload.patches.map((p) => {
    const s = p as SparsePatch;
    return { kind: 'sparse', name: s.name, positions: s.positions, values: Float32Array.from(s.positions, (i) => d.get(s.name)![i]), codec: s.codec as 'f32' | 'f16' | 'i8' };
  });
  (specs[0] as { values: Float32Array }).values[0] *= 2;
  const bytes = buildPayload(hasher, v5, specs, { method: 'topk', budgetBytes, modelId: 'vad', sequence: 2, grids: storageGrids(v5) }).bytes;
  assert.throws(() => checkTopkPayload(hasher, v5, v6, bytes, { budgetBytes }), refusedWith(/carries .* where the change is .* allows/));
});

test('a payload keeping a smaller change in place of a larger one is refused, naming both', () => {
  const budgetBytes = 2000;
  const built = topkDiff(hasher, base, target, { budgetBytes, codec: 'f32' });
  const specs = specsOf(built.bytes, 'f32');
  // Swap the largest kept change of the first patched tensor for the smallest change it dropped.
  const s = specs[0] as Extract<PatchSpec, { kind: 'sparse' }>;
  const d = deltas.get(s.name)!;
  const kept = new Set(s.positions);
  let largest = s.positions[0];
  for (const i of s.positions) if (Math.abs(d[i]) > Math.abs(d[largest])) largest = i;
  let smallest = -1;
  for (let i = 0; i < d.length; i++) if (d[i] !== 0 && !kept.has(i) && (smallest < 0 || Math.abs(d[i]) < Math.abs(d[smallest]))) smallest = i;
  const positions = Uint32Array.from([...s.positions].filter((i) => i !== largest).concat(smallest).sort((a, b) => a - b));
  specs[0] = { ...s, positions, values: Float32Array.from(positions, (i) => d[i]) };
  const bytes = forged(specs, budgetBytes);
  assert.throws(() => checkTopkPayload(hasher, base, target, bytes, { budgetBytes }), refusedWith(new RegExp(`keeps "${s.name}" at ${smallest} .* but drops`), (e) => {
    assert.deepEqual((e.details.found as { position: number }).position, smallest);
  }));
});

test('a tie is broken as the encoder breaks it: the earlier position of two equal changes is kept', async () => {
  const { MemoryWeightStore } = await import('../src/core/weight-store.ts');
  const b = new MemoryWeightStore({ a: { shape: [8], data: new Float32Array(8) }, b: { shape: [8], data: new Float32Array(8) } });
  const t = new MemoryWeightStore({ a: { shape: [8], data: Float32Array.from([0, 0.5, 0, 0.5, 0, 0, 0, 0]) }, b: { shape: [8], data: Float32Array.from([0.5, 0, 0, 0, 0, 0, 0, 0.5]) } });
  const small = topkDiff(hasher, b, t, { budgetBytes: 10_000, codec: 'f32' });
  // A budget for three of the four equal changes: the encoder keeps a@1, a@3, b@0.
  let budgetBytes = small.bytes.length;
  while (topkDiff(hasher, b, t, { budgetBytes, codec: 'f32' }).kept > 3) budgetBytes--;
  const three = topkDiff(hasher, b, t, { budgetBytes, codec: 'f32' });
  assert.equal(three.kept, 3);
  assert.equal(checkTopkPayload(hasher, b, t, three.bytes, { budgetBytes }).kept, 3);
  // The same three with b@7 for b@0: as large, but later.
  const other = buildPayload(hasher, b, [
    { kind: 'sparse', name: 'a', positions: Uint32Array.from([1, 3]), values: Float32Array.from([0.5, 0.5]), codec: 'f32' },
    { kind: 'sparse', name: 'b', positions: Uint32Array.from([7]), values: Float32Array.from([0.5]), codec: 'f32' },
  ], { method: 'topk', budgetBytes, grids: storageGrids(b) }).bytes;
  assert.throws(() => checkTopkPayload(hasher, b, t, other, { budgetBytes }), refusedWith(/keeps "b" at 7 \(\|change\| 0\.5\) but drops "b" at 0/));
});

test('a value further from the change than its codec\'s error is refused with the change, the value and the error allowed', () => {
  const budgetBytes = 2000;
  for (const codec of ['f32', 'f16', 'i8'] as const) {
    const built = topkDiff(hasher, base, target, { budgetBytes, codec });
    const specs = specsOf(built.bytes, codec);
    const s = specs[1] as Extract<PatchSpec, { kind: 'sparse' }>;
    const values = s.values.slice();
    // f32: the next float32 but a few; f16: 1% off (about 20 of its half-ulps); i8: 3 steps of its scale off.
    if (codec === 'i8') {
      let max = 0;
      for (const v of values) max = Math.max(max, Math.abs(v));
      values[0] += (Math.sign(values[0]) || 1) * -3 * (max / 127);
    } else values[0] *= codec === 'f32' ? 1 + 2 ** -20 : 1.01;
    specs[1] = { ...s, values };
    const bytes = forged(specs, budgetBytes);
    assert.throws(() => checkTopkPayload(hasher, base, target, bytes, { budgetBytes }), refusedWith(new RegExp(`carries .* for "${s.name}" at ${s.positions[0]}, where the change is .*codec ${codec} allows`), (e) => {
      assert.equal(e.details.position, s.positions[0]);
      assert.equal(typeof e.details.allowed, 'number');
    }));
  }
});

test('a payload over the budget (more positions than it holds) is refused with the budget and the size', () => {
  const budgetBytes = 1500;
  const built = topkDiff(hasher, base, target, { budgetBytes, codec: 'f32' });
  const larger = topkDiff(hasher, base, target, { budgetBytes: 4000, codec: 'f32' });
  assert.ok(larger.kept > built.kept && larger.bytes.length > budgetBytes);
  assert.throws(() => checkTopkPayload(hasher, base, target, larger.bytes, { budgetBytes }), refusedWith(new RegExp(`it is ${larger.bytes.length} bytes, over the job's budget of ${budgetBytes} bytes`), (e) => {
    assert.deepEqual([e.details.expected, e.details.found], [budgetBytes, larger.bytes.length]);
  }));
});

test('publish\'s check of a job result refuses a forged top-k payload by the rule it breaks, not by a rebuild\'s other SHA-256', async () => {
  const chain = await releaseChain(2, { history: 2 });
  await chain.addNext({ planOnly: true, policy: { method: 'topk', budget: '2%' } });
  const record = (await readRecord(chain.releaseDir))!;
  const job = record.pending!.jobs.find((j) => j.id === 'v3-from-v2')!;
  await runJob(chain.releaseDir, record, job);
  const done = (await readJobResult(chain.releaseDir, job.id))!;
  assert.equal(done.result.payload?.method, 'topk');
  const entry = await verifyJobResult(chain.releaseDir, record, job, done.result, done.payload!);
  assert.equal(entry.method, 'topk');
  // The same payload, in its codec, with one kept value half as large again (more than any codec's error).
  const b = await openState(chain.releaseDir, record, job.fromVersion, job.base);
  const t = await openState(chain.releaseDir, record, job.toVersion, record.versions.find((v) => v.version === 3)!.fingerprint);
  const budgetBytes = parseBudget('2%', b.weightBytes);
  const payload = decodePayload(done.payload!);
  const specs = payload.patches.map((p) => ({ kind: 'sparse' as const, name: p.name, positions: (p as SparsePatch).positions, values: (p as SparsePatch).values.slice(), codec: p.codec as 'f32' | 'f16' | 'i8' }));
  specs[0].values[0] *= 1.5;
  const bytes = buildPayload(hasher, b.store, specs, { method: 'topk', budgetBytes, modelId: record.modelId, sequence: 3, grids: storageGrids(b.store) }).bytes;
  await b.dispose();
  await t.dispose();
  const files = jobFiles(chain.releaseDir, job.id);
  await writeFile(files.payload, bytes);
  const h = decodePayload(bytes).header;
  const result = { ...done.result, payload: { ...done.result.payload!, length: bytes.length, sha256: sha256Of(bytes), target: h.targetFingerprint } };
  await writeFile(files.result, JSON.stringify(result));
  const again = (await readJobResult(chain.releaseDir, job.id))!;
  assert.deepEqual(new Uint8Array(await readFile(files.payload)), bytes);
  await assert.rejects(verifyJobResult(chain.releaseDir, record, job, again.result, again.payload!), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'ND_PAYLOAD_FORMAT');
    assert.doesNotMatch(e.message, /publish rebuilt it/);
    assert.match(e.message, new RegExp(`job ${job.id}: its payload is not the top-k payload of budget [^:]+: it carries .* for "${specs[0].name}" at ${specs[0].positions[0]}, where the change is .*codec ${specs[0].codec} allows [^;]*; nothing was signed`));
    return true;
  });
  // The check `release run` runs as each result arrives gives the same reason.
  const verdict = await checkResult({ releaseDir: chain.releaseDir, job: job.id, accept: [] });
  assert.ok('refused' in verdict, JSON.stringify(verdict));
  assert.match(verdict.refused, new RegExp(`its payload is not the top-k payload of budget [^:]+: it carries .* for "${specs[0].name}" at ${specs[0].positions[0]}`));
});
