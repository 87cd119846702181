/**
 * `ndiff train --budget auto` on a stateful .onnx model (`--state`, frames with sequence.npy), as
 * Silero VAD v5 -> v6 runs it (docs/onnx-training.md): the search measures each payload frame by
 * frame with the state carried, writes the bytes `--budget B` alone writes (the search's own
 * training, not run a second time), and the written
 * payload, applied to v1 and run by onnxruntime-web on the eval frames, agrees with v2 as the
 * search reported. The small LSTM of test/helpers/onnx-models.ts stands in for Silero.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { decisions, type OnnxDataset } from '../src/train/onnx/train-onnx.ts';
import { agreement, lstm, ortFrames, patched, sequences } from './helpers/onnx-models.ts';

/** A data folder of the LSTM's frames (x.npy, sequence.npy). */
function frameFolder(dir: string, d: OnnxDataset): string {
  const n = (d.sequence as Int32Array).length;
  saveNpy(path.join(dir, 'x.npy'), d.inputs.x.values as Float32Array, [n, 3]);
  saveNpy(path.join(dir, 'sequence.npy'), d.sequence as Int32Array, [n]);
  return dir;
}

test('ndiff train --budget auto --state on a stateful .onnx model: searched on the eval frames with the state carried, the bytes --budget B writes, its agreement what onnxruntime-web measures', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-auto-stateful-'));
  try {
    const v1 = path.join(dir, 'v1.onnx');
    const v2 = path.join(dir, 'v2.onnx');
    writeFileSync(v1, lstm());
    writeFileSync(v2, lstm(0.5));
    const train = frameFolder(path.join(dir, 'train'), sequences(12, 16, 5));
    const val = frameFolder(path.join(dir, 'val'), sequences(4, 16, 6));
    const evalData = sequences(8, 16, 7);
    const evalDir = frameFolder(path.join(dir, 'eval'), evalData);
    const common = ['--model-id', 'lstm', '--base', v1, '--teacher', v2, '--state', 'h:hN', '--state', 'c:cN', '--train', train, '--val', val, '--eval', evalDir, '--tune', 'off', '--epochs', '1', '--lr', '0.01', '--seed', '2'];
    const out = path.join(dir, 'auto.ndiff');
    const r = await run('train', ...common, '--budget', 'auto', '--min-agreement', '0.9', '--budget-grid', '150,400', '--out', out, '--json');
    // Before the exact payload was made without the ONNX run options, --state alone (no eval for
    // that diff) was refused: exit 2, "--state tells --eval and --calibrate how to run an .onnx model".
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as Record<string, any>;
    const s = doc.budgetSearch;
    t.diagnostic(`${s.tried.map((e: any) => `${e.budget} ${e.how}: ${e.bytes ?? e.note} ${e.figure ?? ''}`).join('; ')}; chosen ${s.chosen} (${s.chosenHow})`);
    // 150 bytes post hoc falls short; trained at 150 it meets 0.9: the training path is what is written.
    assert.equal(s.chosenHow, 'trained');
    assert.equal(s.chosen, '150');
    assert.ok(s.tried.every((e: any) => e.bytes === undefined || typeof e.figure === 'number'), 'every payload made was measured on the eval frames');
    // One training per budget trained in the search, none more: the chosen one's payload is the
    // search's own run (each ONNX training says its backend once).
    assert.equal(r.err.match(/^backend /gm)?.length, s.tried.filter((e: any) => e.how === 'trained').length);
    const payload = new Uint8Array(readFileSync(out));
    // The bytes the same command with --budget B alone writes (post hoc: ndiff diff --budget B --eval).
    const again = path.join(dir, 'again.ndiff');
    const alone = s.fallback
      ? await run('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', 'all', '--out', again)
      : s.chosenHow === 'post hoc'
        ? await run('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', s.chosen, '--eval', evalDir, '--state', 'h:hN', '--state', 'c:cN', '--allow-worse', '--out', again)
        : await run('train', ...common, '--budget', s.chosen, '--out', again);
    assert.equal(alone.code, 0, alone.err);
    assert.deepEqual(payload, new Uint8Array(readFileSync(again)));
    // The figure of the chosen budget is what onnxruntime-web measures on the patched file, frame by frame.
    const probability = { classes: 2, outputKind: 'probability' as const };
    const after = await ortFrames(await patched(dir, 'p.onnx', lstm(), payload), evalData);
    const measured = agreement(decisions(after, probability), decisions(await ortFrames(v2, evalData), probability));
    if (!s.fallback) {
      const chosen = s.tried.find((e: any) => e.meets);
      assert.equal(chosen.figure, measured);
      assert.ok(measured >= 0.9);
    } else assert.equal(measured, 1, 'the exact payload ends at v2');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
