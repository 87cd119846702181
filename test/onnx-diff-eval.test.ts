/**
 * ONNX payloads measured on data, and ONNX trainings that take payloads made before into account:
 * - `ndiff diff --eval` on `.onnx` pairs (src/train/onnx/payload-closeness.ts): the agreement and
 *   mean difference it reports are onnxruntime-web's on the patched file against the target file;
 *   it refuses a payload that takes the model further from the target than the base is (exit 10,
 *   as ndiff train), and with --allow-worse writes it and warns (text, `--json`, `--metrics-out`,
 *   which `ndiff report` reads), the calibration's own warning beside; stateful models frame by frame with the
 *   state carried (`--state`, sequence.npy);
 * - `ndiff train --base model.onnx --also-consider`: the better of this run's payload and one made
 *   before is written, whichever it is; `--replay`: old examples trained on and marked as replayed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { reportRows } from '../src/report/rows.ts';
import { decisions, type OnnxDataset } from '../src/train/onnx/train-onnx.ts';
import { agreement, cnn, images, lstm, ortFrames, ortImages, patched, sequences } from './helpers/onnx-models.ts';

/** `--json`: the one document on stdout. */
async function json(...argv: string[]): Promise<{ code: number; doc: Record<string, any>; err: string }> {
  const r = await run(...argv, '--json');
  return { code: r.code, doc: JSON.parse(r.out) as Record<string, any>, err: r.err };
}

function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** A data folder of the CNN's images (x.npy), with labels when given. */
function imageFolder(dir: string, d: OnnxDataset, labels?: Int32Array): string {
  const n = d.inputs.x.values.length / 64;
  saveNpy(path.join(dir, 'x.npy'), d.inputs.x.values as Float32Array, [n, 1, 8, 8]);
  if (labels) saveNpy(path.join(dir, 'y.npy'), labels, [n]);
  return dir;
}

/** A data folder of the LSTM's frames (x.npy, sequence.npy), with labels when given. */
function frameFolder(dir: string, d: OnnxDataset, labels?: Int32Array): string {
  const n = (d.sequence as Int32Array).length;
  saveNpy(path.join(dir, 'x.npy'), d.inputs.x.values as Float32Array, [n, 3]);
  saveNpy(path.join(dir, 'sequence.npy'), d.sequence as Int32Array, [n]);
  if (labels) saveNpy(path.join(dir, 'y.npy'), labels, [n]);
  return dir;
}

const logits = { classes: 3, outputKind: 'logits' as const };
const probability = { classes: 2, outputKind: 'probability' as const };

test('ndiff diff --eval on .onnx files: onnxruntime-web\'s agreement on the patched file, a warning when top-k moves away from the target, --json, --metrics-out for ndiff report', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-eval-'));
  try {
    const v1 = path.join(dir, 'v1.onnx');
    writeFileSync(v1, cnn());
    // The same function as v1 with other weights: its filters renumbered. Top-k of the change keeps
    // the largest weights of some filters and not the rest: the patched v1 leaves a target it
    // already matched.
    const rotated = path.join(dir, 'rotated.onnx');
    writeFileSync(rotated, cnn(0, 0, 1));
    const v2 = path.join(dir, 'v2.onnx');
    writeFileSync(v2, cnn(0.5, 60));
    const data = images(200, 2);
    const inputs = imageFolder(path.join(dir, 'inputs'), data);
    const common = ['--model-id', 'cnn', '--base', v1, '--eval', inputs];

    // A payload measured further from the target than not updating is refused as ndiff train
    // refuses one no better than the base: exit 10, nothing written.
    const refused = await run('diff', ...common, '--target', rotated, '--budget', '200', '--out', path.join(dir, 'away.ndiff'), '--metrics-out', path.join(dir, 'away.json'));
    assert.equal(refused.code, 10, refused.err);
    assert.match(refused.err, /takes the model further from --target than not updating at all.*Nothing was written .*pass --allow-worse to write it anyway/s);
    assert.ok(!existsSync(path.join(dir, 'away.ndiff')) && !existsSync(path.join(dir, 'away.json')), 'nothing written');
    // With a calibration that chose no closer than the base as well: exit 10 still; with
    // --allow-worse written, and both warnings on stderr (the calibration's was dropped with --eval).
    const calibrated = await run('diff', ...common, '--target', rotated, '--budget', '200', '--calibrate', inputs, '--out', path.join(dir, 'cal.ndiff'));
    assert.equal(calibrated.code, 10, calibrated.err);
    const calibratedAnyway = await run('diff', ...common, '--target', rotated, '--budget', '200', '--calibrate', inputs, '--allow-worse', '--out', path.join(dir, 'cal.ndiff'));
    assert.equal(calibratedAnyway.code, 0, calibratedAnyway.err);
    assert.match(calibratedAnyway.err, /^warning: this payload takes the model further from --target/m);
    assert.match(calibratedAnyway.err, /^warning: on the --calibrate inputs base \+ payload agrees with --target no more than the unpatched base/m);
    const away = await json('diff', ...common, '--target', rotated, '--budget', '200', '--allow-worse', '--out', path.join(dir, 'away.ndiff'), '--metrics-out', path.join(dir, 'away.json'));
    assert.equal(away.code, 0, away.err);
    const e = away.doc.eval;
    t.diagnostic(`rotated filters, 200 bytes: base agreement ${e.base.agreement}, mean |Δ| ${e.base.meanAbsDiff}; patched ${e.patched.agreement}, ${e.patched.meanAbsDiff}`);
    assert.equal(e.examples, 200);
    assert.equal(e.metric, 'top1', 'a classifier\'s logits (as PyTorch exports it) are judged by agreement with the target\'s decisions, even without labels');
    assert.equal(e.outputKind, 'logits');
    assert.equal(e.movesAway, true);
    assert.match(away.doc.warning, /further from --target than not updating at all/);
    assert.match(away.err, /^warning: this payload takes the model further from --target/m);
    // Independently: the device applier patches a copy of v1, onnxruntime-web runs it and the target.
    const payload = new Uint8Array(readFileSync(path.join(dir, 'away.ndiff')));
    const [base, after, target] = [await ortImages(v1, data), await ortImages(await patched(dir, 'away.onnx', cnn(), payload), data), await ortImages(rotated, data)];
    assert.equal(e.base.agreement, agreement(decisions(base, logits), decisions(target, logits)));
    assert.equal(e.patched.agreement, agreement(decisions(after, logits), decisions(target, logits)));
    assert.ok(Math.abs(e.patched.meanAbsDiff - meanAbsDiff(after, target)) <= 1e-4 * meanAbsDiff(after, target), `${e.patched.meanAbsDiff} vs ${meanAbsDiff(after, target)}`);
    assert.ok(e.base.meanAbsDiff < 1e-5, 'v1 and the rotated target compute the same function');
    assert.ok(e.patched.agreement < 1, 'and the patch changes decisions');
    // Without labels the row still goes into a report, by its agreement with the target.
    const awayMetrics = JSON.parse(readFileSync(path.join(dir, 'away.json'), 'utf8'));
    assert.equal(awayMetrics.eval.movesAway, true);
    const [awayRow] = reportRows(awayMetrics, 'away.json');
    assert.equal(awayRow.accAll, null);
    assert.equal(awayRow.agreement, e.patched.agreement);
    assert.equal(awayRow.agreementBefore, e.base.agreement);

    // Toward the real v2 with room for every change: closer than v1, no warning.
    const toward = await run('diff', ...common, '--target', v2, '--budget', '2000', '--out', path.join(dir, 'v2.ndiff'));
    assert.equal(toward.code, 0, toward.err);
    assert.doesNotMatch(toward.err, /warning/);
    assert.match(toward.out, /closeness to --target: unpatched base top-1 agreement [\d.]+%, mean \|output − target\| [\d.e-]+; base \+ payload top-1 agreement 100\.00%/);

    // Labels beside the inputs: accuracy, top-1 as the measure, a metrics file a report reads.
    const labels = decisions(await ortImages(v2, data), logits);
    saveNpy(path.join(inputs, 'y.npy'), labels, [labels.length]);
    const small = await run('diff', ...common, '--target', v2, '--budget', '300', '--out', path.join(dir, 'small.ndiff'), '--metrics-out', path.join(dir, 'small.json'));
    assert.equal(small.code, 0, small.err);
    const m = JSON.parse(readFileSync(path.join(dir, 'small.json'), 'utf8'));
    const smallAfter = await ortImages(await patched(dir, 'small.onnx', cnn(), new Uint8Array(readFileSync(path.join(dir, 'small.ndiff')))), data);
    assert.equal(m.eval.metric, 'top1');
    assert.equal(m.accuracyBefore, agreement(decisions(base, logits), labels));
    assert.equal(m.accuracyAfter, agreement(decisions(smallAfter, logits), labels));
    assert.match(small.out, /accuracy on --eval labels: base [\d.]+% -> [\d.]+%/);
    assert.equal(m.eval.accuracyTarget, 1, 'the labels are the target\'s own decisions');
    const [row] = reportRows(m, 'small.json');
    assert.equal(row.method, 'topk');
    assert.equal(row.accAll, m.accuracyAfter);
    assert.equal(row.agreement, m.eval.patched.agreement);
    const report = await run('report', path.join(dir, 'small.json'), '--out', path.join(dir, 'report'));
    assert.equal(report.code, 0, report.err);
    assert.ok(existsSync(path.join(dir, 'report', 'report.md')));

    // Flags that only tell --eval and --calibrate how to run an ONNX model, without either: a usage error.
    const stray = await run('diff', '--model-id', 'cnn', '--base', v1, '--target', v2, '--budget', '300', '--state', 'h:hN', '--out', path.join(dir, 'stray.ndiff'));
    assert.equal(stray.code, 2);
    assert.match(stray.err, /--state tells --eval and --calibrate how to run an \.onnx model/);
    // A folder without the model's input: a data error before anything is written.
    const missing = await run('diff', '--model-id', 'cnn', '--base', v1, '--target', v2, '--budget', '300', '--eval', path.join(dir, 'report'), '--out', path.join(dir, 'missing.ndiff'));
    assert.equal(missing.code, 8, missing.err);
    assert.match(missing.err, /has no x\.npy for input "x": give one \.npy per model input/);
    assert.ok(!existsSync(path.join(dir, 'missing.ndiff')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff diff --eval on a stateful .onnx model: every sequence from a zero state with the state carried, as onnxruntime-web runs it frame by frame', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-eval-'));
  try {
    const v1 = path.join(dir, 'v1.onnx');
    const v2 = path.join(dir, 'v2.onnx');
    writeFileSync(v1, lstm());
    writeFileSync(v2, lstm(0.5));
    const data = sequences(8, 16, 7);
    const inputs = frameFolder(path.join(dir, 'frames'), data);
    const r = await json('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', '400', '--eval', inputs, '--state', 'h:hN', '--state', 'c:cN', '--out', path.join(dir, 'p.ndiff'));
    assert.equal(r.code, 0, r.err);
    const e = r.doc.eval;
    t.diagnostic(`LSTM, 400 bytes: same decision as v2 ${e.base.agreement} -> ${e.patched.agreement}, mean |Δp| ${e.base.meanAbsDiff} -> ${e.patched.meanAbsDiff}`);
    assert.equal(e.examples, 128);
    assert.equal(e.metric, 'top1', 'a one-value probability: decisions at 0.5');
    assert.equal(e.outputKind, 'probability');
    const payload = new Uint8Array(readFileSync(path.join(dir, 'p.ndiff')));
    const [base, after, target] = [await ortFrames(v1, data), await ortFrames(await patched(dir, 'p.onnx', lstm(), payload), data), await ortFrames(v2, data)];
    assert.equal(e.base.agreement, agreement(decisions(base, probability), decisions(target, probability)));
    assert.equal(e.patched.agreement, agreement(decisions(after, probability), decisions(target, probability)));
    // Rows [1 − p, p]: their mean absolute difference is the mean |Δp|.
    assert.ok(Math.abs(e.patched.meanAbsDiff - meanAbsDiff(after, target)) <= 1e-4 * meanAbsDiff(after, target), `${e.patched.meanAbsDiff} vs ${meanAbsDiff(after, target)}`);
    assert.ok(Math.abs(e.base.meanAbsDiff - meanAbsDiff(base, target)) <= 1e-4 * meanAbsDiff(base, target));
    assert.equal(e.movesAway, e.patched.agreement < e.base.agreement);
    const text = await run('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', '400', '--eval', inputs, '--state', 'h:hN', '--state', 'c:cN', '--out', path.join(dir, 'q.ndiff'));
    assert.match(text.out, /unpatched base same decision \(threshold 0\.5\) [\d.]+%/);
    // Without --state, h and c are inputs the folder must give.
    const stateless = await run('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', '400', '--eval', inputs, '--out', path.join(dir, 's.ndiff'));
    assert.equal(stateless.code, 8);
    assert.match(stateless.err, /has no h\.npy/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff diff --calibrate on a stateful .onnx model: lowbit\'s variants (and top-k with --method auto) measured by the ONNX executor on the frames, the closest written; it is what --eval then measures', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-cal-'));
  try {
    const v1 = path.join(dir, 'v1.onnx');
    const v2 = path.join(dir, 'v2.onnx');
    writeFileSync(v1, lstm());
    writeFileSync(v2, lstm(0.5));
    const calib = frameFolder(path.join(dir, 'calib'), sequences(6, 16, 9));
    const inputs = frameFolder(path.join(dir, 'frames'), sequences(8, 16, 7));
    const common = ['diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', '600', '--state', 'h:hN', '--state', 'c:cN'];
    const r = await json(...common, '--method', 'auto', '--calibrate', calib, '--eval', inputs, '--out', path.join(dir, 'p.ndiff'));
    assert.equal(r.code, 0, r.err);
    const c = r.doc.calibration;
    t.diagnostic(`candidates: ${c.candidates.map((x: { name: string; bytes: number; loss: number }) => `${x.name} ${x.bytes} B loss ${x.loss.toPrecision(3)}`).join('; ')}; chose ${c.chosen}; eval ${r.doc.eval.base.agreement} -> ${r.doc.eval.patched.agreement}`);
    assert.equal(c.examples, 96);
    assert.deepEqual(c.candidates.map((x: { name: string }) => x.name), ['lowbit (relative errors, low-rank)', 'lowbit (relative errors, codes only)', 'lowbit (squared errors, low-rank)', 'lowbit (squared errors, codes only)', 'top-k']);
    const best = Math.min(...c.candidates.map((x: { loss: number }) => x.loss));
    assert.equal(c.candidates.find((x: { name: string }) => x.name === c.chosen).loss, best);
    // The unpatched base's loss on the same inputs, which a warning holds the choice against.
    assert.ok(Number.isFinite(c.baseLoss) && c.baseLoss >= 0, String(c.baseLoss));
    assert.ok(r.doc.bytes <= 600);
    assert.ok(r.doc.eval.patched.agreement >= 0 && r.doc.eval.examples === 128);
    // Without --state the calibration folder lacks h.npy: a data error, nothing written.
    const stateless = await run('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', '600', '--method', 'lowbit', '--calibrate', calib, '--out', path.join(dir, 's.ndiff'));
    assert.equal(stateless.code, 8, stateless.err);
    assert.ok(!existsSync(path.join(dir, 's.ndiff')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ndiff train --base model.onnx --also-consider writes the better payload on validation, its own or the other; --replay trains on old examples marked as replayed', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nd-onnx-compete-'));
  try {
    const v1 = path.join(dir, 'v1.onnx');
    const v2 = path.join(dir, 'v2.onnx');
    writeFileSync(v1, lstm());
    writeFileSync(v2, lstm(0.5));
    const train = frameFolder(path.join(dir, 'train'), sequences(20, 16, 5));
    const val = frameFolder(path.join(dir, 'val'), sequences(6, 16, 6));
    // From zero: a run that starts from the teacher's change (--sparse-start auto's second run) is
    // no longer one that "learns next to nothing" below.
    const common = ['--model-id', 'lstm', '--base', v1, '--teacher', v2, '--state', 'h:hN', '--state', 'c:cN', '--train', train, '--val', val, '--tune', 'off', '--method', 'sparse', '--sparse-start', 'zero'];
    const good = path.join(dir, 'good.ndiff');
    const made = await run('train', ...common, '--budget', '500', '--epochs', '4', '--lr', '0.01', '--out', good);
    assert.equal(made.code, 0, made.err);
    // This run learns next to nothing (a tiny rate, one epoch): the smaller payload made before is better.
    const weak = await json('train', ...common, '--budget', '700', '--epochs', '1', '--lr', '1e-7', '--also-consider', good, '--out', path.join(dir, 'weak.ndiff'));
    assert.equal(weak.code, 0, weak.err);
    t.diagnostic(weak.doc.selection.map((c: { label: string; bytes: number; score: number; chosen: boolean }) => `${c.label}: ${c.bytes} B, ${c.score}${c.chosen ? ' (written)' : ''}`).join('; '));
    assert.deepEqual(readFileSync(path.join(dir, 'weak.ndiff')), readFileSync(good), 'the better payload made before is written');
    assert.equal(weak.doc.selection.length, 2);
    assert.equal(weak.doc.selection.find((c: { chosen: boolean }) => c.chosen).label, `--also-consider ${good}`);
    // A payload that changes next to nothing (post-hoc, 80 bytes) against a run that learns: this run's payload is written.
    const poor = path.join(dir, 'poor.ndiff');
    assert.equal((await run('diff', '--model-id', 'lstm', '--base', v1, '--target', v2, '--budget', '80', '--out', poor)).code, 0);
    const strong = await json('train', ...common, '--budget', '500', '--epochs', '4', '--lr', '0.01', '--also-consider', poor, '--out', path.join(dir, 'strong.ndiff'));
    assert.equal(strong.code, 0, strong.err);
    assert.deepEqual(readFileSync(path.join(dir, 'strong.ndiff')), readFileSync(good), 'this run (the same training as good.ndiff) is written');
    assert.equal(strong.doc.selection.find((c: { chosen: boolean }) => c.chosen).label.startsWith('--also-consider'), false);
    // A payload of another update is refused by name.
    const other = await run('train', ...common, '--sequence', '2', '--budget', '500', '--epochs', '1', '--also-consider', good, '--out', path.join(dir, 'other.ndiff'));
    assert.equal(other.code, 2);
    assert.match(other.err, /is model "lstm" sequence 1, this training writes "lstm" sequence 2/);

    // --replay on a stateful model: its sequences join the training ones (their ids renumbered) and
    // validation holds out whole sequences of both, the replayed frames marked.
    const replay = frameFolder(path.join(dir, 'replay'), sequences(6, 16, 8));
    const replayed = await json('train', '--model-id', 'lstm', '--base', v1, '--teacher', v2, '--state', 'h:hN', '--state', 'c:cN', '--train', train, '--replay', replay, '--method', 'sparse', '--tune', 'off', '--budget', '500', '--epochs', '1', '--lr', '0.01', '--allow-worse', '--out', path.join(dir, 'replayed.ndiff'));
    assert.equal(replayed.code, 0, replayed.err);
    assert.match(replayed.err, /320 training examples and 96 replayed \(--replay /);
    assert.match(replayed.err, /validation: 3 whole sequences \(48 frames\) held out of training/);
    assert.equal(replayed.doc.replayExamples, 96);

    // --replay with labels: distillation keeps the base's outputs on the replayed examples only.
    const c1 = path.join(dir, 'c1.onnx');
    const c2 = path.join(dir, 'c2.onnx');
    writeFileSync(c1, cnn());
    writeFileSync(c2, cnn(0.5, 60));
    const label = async (file: string, d: OnnxDataset) => decisions(await ortImages(file, d), logits);
    const newImages = images(160, 1);
    const oldImages = images(80, 3);
    const valImages = images(60, 4);
    const labelled = await run('train', '--model-id', 'cnn', '--base', c1, '--train', imageFolder(path.join(dir, 'new'), newImages, await label(c2, newImages)),
      '--replay', imageFolder(path.join(dir, 'old'), oldImages, await label(c1, oldImages)), '--val', imageFolder(path.join(dir, 'cval'), valImages, await label(c2, valImages)),
      '--tune', 'off', '--budget', '300', '--epochs', '1', '--lr', '0.03', '--allow-worse', '--out', path.join(dir, 'cnn.ndiff'));
    assert.equal(labelled.code, 0, labelled.err);
    assert.match(labelled.err, /distillation: keeping the base model's outputs on the 80 of 80 replayed training examples \(of 240\) it classifies right/);
    // Replayed data must have labels when the training data has them.
    const unlabelled = await run('train', '--model-id', 'cnn', '--base', c1, '--train', path.join(dir, 'new'), '--replay', imageFolder(path.join(dir, 'old-x'), oldImages), '--val', path.join(dir, 'cval'), '--tune', 'off', '--out', path.join(dir, 'u.ndiff'));
    assert.equal(unlabelled.code, 2);
    assert.match(unlabelled.err, /the training examples have labels and the replayed examples none/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
