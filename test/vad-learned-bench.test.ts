/**
 * `npm run bench:vad-learned -- --quick` in the suite: Silero VAD v5 trained toward v6 on a few
 * utterances (one learned row in a child process, one epoch), its payload applied to v5 and run
 * with onnxruntime-web on bench:onnx's quick evaluation audio beside the post-hoc row. Needs
 * espeak-ng, sox and the Debian recordings; installs them as root, else skips with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { benchmarkSkip } from './helpers/benchmarks.ts';
import { ensurePackages } from '../bench/onnx.ts';
import { renderMarkdown, runVadLearnedBench } from '../bench/vad-learned.ts';

let skip: string | false = benchmarkSkip;
if (!skip) {
  try {
    ensurePackages([{ pkg: 'espeak-ng', bin: 'espeak-ng' }, { pkg: 'sox', bin: 'sox' }, { pkg: 'ktuberling-data' }, { pkg: 'klettres-data' }], () => {});
  } catch (e) {
    skip = (e as Error).message;
  }
}

test('bench:vad-learned --quick: a learned Silero v5 -> v6 payload within its budget, applied and measured with onnxruntime-web beside the post-hoc row', { skip, timeout: 600_000 }, async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'nd-vad-learned-test-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const r = await runVadLearnedBench({ quick: true, methods: ['sparse'], percents: [2], epochs: 1, parallel: 1, commit: false, work, log: () => {} });
  t.diagnostic(renderMarkdown(r));
  assert.equal(r.learned.length, 1);
  const row = r.learned[0];
  assert.equal(row.error, undefined, row.error);
  assert.ok(row.payloadBytes > 0 && row.payloadBytes <= row.budgetBytes, `${row.payloadBytes} of ${row.budgetBytes} bytes`);
  assert.ok(row.validation.frames > 100 && row.validation.agreement > 0.5 && row.validation.baseAgreement > 0.5, JSON.stringify(row.validation));
  assert.ok(row.framesPerSecond > 0 && row.peakRssMiB > 0 && row.trainSeconds > 0);
  for (const name of ['synthetic', 'real']) {
    const a = row.audio[name];
    assert.ok(a && a.frames > 100 && a.agreement > 0.5, `${name}: ${JSON.stringify(a)}`);
    assert.equal(a.frames, r.v5[name].frames);
  }
  // What the trainer measured is what onnxruntime-web computes on the patched file, frame for frame.
  const rt = row.runtime as NonNullable<typeof row.runtime>;
  t.diagnostic(`trainer vs onnxruntime-web on the patched v5, ${rt.frames} validation frames: largest |Δp| ${rt.maxAbsDiff.toExponential(2)}, same decision ${(100 * rt.sameDecisions).toFixed(2)}%`);
  assert.equal(rt.frames, row.validation.frames);
  assert.ok(rt.maxAbsDiff < 1e-4, `largest difference ${rt.maxAbsDiff}`);
  assert.equal(rt.sameDecisions, 1);
  assert.equal(r.posthoc.length, 1);
  // Training and validation audio are made apart from the evaluation audio.
  assert.ok(r.trainFrames > 300 && r.validationFrames > 100);

  // Joining an earlier record (--record): its rows stay, a row of the same method and budget is
  // this run's (reused from the work folder here, not trained again), post-hoc rows by budget.
  const earlierRow = { ...row, method: 'lora', validation: { ...row.validation, agreement: 0.99 } };
  const joined = await runVadLearnedBench({ quick: true, methods: ['sparse'], percents: [2], epochs: 1, parallel: 1, commit: false, work, record: { ...r, learned: [earlierRow, { ...row, payloadBytes: 1 }] }, log: () => {} });
  assert.deepEqual(joined.learned.map((x) => [x.method, x.payloadBytes]), [['lora', row.payloadBytes], ['sparse', row.payloadBytes]]);
  assert.equal(joined.posthoc.length, 1);
  // A record made on other validation audio is refused before anything trains.
  await assert.rejects(
    runVadLearnedBench({ quick: true, methods: ['hash'], percents: [2], epochs: 1, parallel: 1, commit: false, record: { ...r, validationFrames: r.validationFrames + 1 }, log: () => {} }),
    /validation frames.*do not compare/,
  );
});
