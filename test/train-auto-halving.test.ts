/**
 * `--method auto` by successive halving (src/train/auto-halving.ts) against the exhaustive search,
 * on a small MLP whose teacher differs from the base by a rank-1 change of one matrix: lowbit
 * carries it exactly (its post-hoc start keeps a change of low rank as low-rank factors), the
 * other candidates only in part within the budget, so the answer is known:
 *  - halving chooses what the exhaustive search chooses (lowbit), and its payload is, byte for
 *    byte, the one lowbit trained alone gives with the same seed (its run was suspended between
 *    epochs while the others ran, and continued, never restarted);
 *  - it runs fewer epochs in all than the exhaustive search (counted, not timed);
 *  - its report and progress lines give every candidate's figure at every round it was in, and
 *    the time against the exhaustive search's estimate.
 * A second case (a few large changes) has a sparse winner, stopped in the middle of its mask's
 * annealing (the temperature falls over all the soft epochs of the run): continued, its payload is
 * still the one `sparse` alone gives.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/engine/backend.ts';
import { modelToStore, setModelWeights } from '../src/engine/model-weights.ts';
import { trainAuto, type AutoResult } from '../src/train/auto.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { autoCandidateLine, autoChoiceLines } from '../src/train/front-settings.ts';
import type { TrainDiffOptions } from '../src/train/options.ts';
import { seeded } from './helpers/graph-model.ts';
import { onceSkip } from './helpers/benchmarks.ts';

/** In-process training only (no file, folder, TMPDIR or child process): checked once per CI, in the in-place suite. */
const once = onceSkip('the successive-halving searches (in-process training only) are');

await initBackend('cpu');

const IN = 16;
const HIDDEN = 48;
const CLASSES = 4;

function mlp(): tf.Sequential {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: s });
  return tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [IN], units: HIDDEN, activation: 'relu', name: 'h1', kernelInitializer: init(1) }),
      tf.layers.dense({ units: HIDDEN, activation: 'relu', name: 'h2', kernelInitializer: init(2) }),
      tf.layers.dense({ units: CLASSES, activation: 'softmax', name: 'out', kernelInitializer: init(3) }),
    ],
  });
}

/** The base, and a teacher whose h2 kernel moved by `change(i, j)`. */
function pair(change: (i: number, j: number) => number): { student: tf.Sequential; teacher: tf.Sequential } {
  const student = mlp();
  const teacher = mlp();
  const [k, b] = teacher.layers[1].getWeights();
  const moved = Float32Array.from(k.dataSync(), (w, at) => w + change(Math.floor(at / HIDDEN), at % HIDDEN));
  teacher.layers[1].setWeights([tf.tensor(moved, [HIDDEN, HIDDEN]), b]);
  return { student, teacher };
}

/** Inputs from the deployment distribution, seeded. */
function inputs(n: number): tf.Tensor2D {
  const r = seeded(11);
  return tf.tensor2d(Float32Array.from({ length: n * IN }, () => 2 * r()), [n, IN]);
}

type Common = Omit<TrainDiffOptions, 'method'>;

/** Run `auto` with `search`, counting the epochs every run reported; the student back at the base first. */
async function auto(student: tf.LayersModel, x: tf.Tensor2D, options: Common & { candidates?: TrainDiffOptions['method'][] }, autoSearch: 'halving' | 'exhaustive'): Promise<{ res: AutoResult; epochs: number; lines: string[] }> {
  setModelWeights(student, (n) => (options.base as NonNullable<Common['base']>).values(n));
  let epochs = 0;
  const lines: string[] = [];
  const res = await trainAuto(student, { x }, { ...options, autoSearch, onEpoch: () => epochs++ }, (c) => lines.push(autoCandidateLine(c)));
  lines.push(...autoChoiceLines(res.auto));
  return { res, epochs, lines };
}

async function alone(student: tf.LayersModel, x: tf.Tensor2D, options: Common, method: TrainDiffOptions['method']): Promise<Uint8Array> {
  setModelWeights(student, (n) => (options.base as NonNullable<Common['base']>).values(n));
  return (await trainDiff(student, { x }, { ...options, method })).bytes;
}

test('halving chooses what the exhaustive search chooses, ships the bytes that method alone gives, in fewer epochs, and reports every round', { skip: once }, async () => {
  // A rank-1 change of h2: u vᵀ.
  const r = seeded(7);
  const u = Float32Array.from({ length: HIDDEN }, () => r());
  const v = Float32Array.from({ length: HIDDEN }, () => r());
  const { student, teacher } = pair((i, j) => 0.6 * u[i] * v[j]);
  const x = inputs(400);
  try {
    const options: Common = { teacher, budgetBytes: 900, epochs: 2, tune: 'off', seed: 1, base: modelToStore(student) };
    const exhaustive = await auto(student, x, options, 'exhaustive');
    const halving = await auto(student, x, options, 'halving');
    assert.equal(exhaustive.res.auto.chosen, 'lowbit', `the exhaustive search: ${exhaustive.lines.join(' | ')}`);
    assert.equal(halving.res.auto.chosen, 'lowbit', `halving: ${halving.lines.join(' | ')}`);
    assert.equal(halving.res.auto.search, 'halving');
    const lowbit = await alone(student, x, options, 'lowbit');
    assert.deepEqual(halving.res.bytes, lowbit, 'the winner\'s payload is the one lowbit alone gives, byte for byte');
    assert.deepEqual(exhaustive.res.bytes, lowbit);
    assert.ok(halving.epochs < exhaustive.epochs, `halving ran ${halving.epochs} epochs, the exhaustive search ${exhaustive.epochs}`);

    // Rounds: five candidates, then two, then the winner to its end; each figure there.
    const rounds = halving.res.auto.rounds ?? [];
    assert.deepEqual(rounds.map((r) => r.figures.map((f) => f.method)), [['lowbit', 'sparse', 'lora', 'sparse-lora', 'topk-retrain'], [rounds[1]?.figures[0].method, rounds[1]?.figures[1].method], ['lowbit']]);
    assert.deepEqual(rounds.map((r) => r.epochs), [1, 2, null]);
    for (const r of rounds.slice(0, -1)) {
      assert.equal(r.figures.filter((f) => f.dropped).length, r.figures.length - Math.floor(r.figures.length / 2), `round ${r.round} drops the worse half`);
      const kept = Math.min(...r.figures.filter((f) => !f.dropped).map((f) => f.score as number));
      for (const f of r.figures) {
        assert.ok(f.epochs >= (r.epochs as number) && Number.isFinite(f.score) && f.scoreText, `round ${r.round}: ${f.method} has a figure after its epochs`);
        if (f.dropped) assert.ok((f.score as number) <= kept, `round ${r.round}: ${f.method} dropped at ${f.scoreText}, below every one kept`);
      }
    }
    assert.deepEqual(halving.res.auto.candidates.map((c) => [c.method, c.droppedAfterRound === undefined]), [['lowbit', true], ['sparse', false], ['lora', false], ['sparse-lora', false], ['topk-retrain', false]]);
    assert.ok(halving.res.auto.exhaustiveSecondsEstimate! > 0 && Math.abs(halving.res.trainSeconds - halving.res.auto.candidates.reduce((t, c) => t + c.seconds, 0)) < 1e-6);
    // Printed: each round with every candidate's figure, the choice and the time saved.
    for (const r of rounds) {
      const line = halving.lines.find((l) => l.startsWith(`auto: round ${r.round} `)) ?? '';
      for (const f of r.figures) assert.ok(line.includes(`${f.method} ${f.scoreText} (${f.epochs} ep${f.dropped ? ', dropped' : ''})`), `round ${r.round} prints ${f.method}: ${line}`);
    }
    assert.match(halving.lines.at(-1) as string, /^auto: chose lowbit by successive halving .* the exhaustive search \(--auto-search exhaustive\) would take about [\d.]+ s \(estimated\), -?[\d.]+ s saved$/);
  } finally {
    x.dispose();
    student.dispose();
    teacher.dispose();
  }
});

test('a sparse winner cut into rounds (its mask annealed over the whole run) ships the bytes sparse alone gives', { skip: once }, async () => {
  // A few large changes: what a sparse mask carries, and a rank-limited adapter does not.
  const r = seeded(3);
  const picked = new Set(Array.from({ length: 40 }, () => Math.floor(((r() + 1) / 2) * HIDDEN * HIDDEN)));
  const { student, teacher } = pair((i, j) => (picked.has(i * HIDDEN + j) ? 1.5 : 0));
  const x = inputs(400);
  try {
    const options: Common & { candidates: TrainDiffOptions['method'][] } = { teacher, budgetBytes: 700, epochs: 4, tune: 'off', seed: 2, base: modelToStore(student), candidates: ['topk-retrain', 'lora', 'hash', 'sparse'] };
    const halving = await auto(student, x, options, 'halving');
    assert.equal(halving.res.auto.chosen, 'sparse', halving.lines.join(' | '));
    // sparse trains from zero (epochs 1-4: 3 soft, 1 hard), then from the teacher's change (5-8).
    // Round one ran it past its 2 epochs to its first checkpoint (the hard mask, then epoch 4);
    // round two stopped it after epoch 5, in the second run's soft phase, its mask's temperature
    // a third of the way down: continued from there, the run ends as sparse alone ends it. Its first
    // mask was made while topk-retrain's (a sparse mask too) was alive: its variables took other
    // names (src/method/contract.ts), which must not change a number.
    assert.deepEqual(halving.res.auto.rounds?.map((r) => r.figures.map((f) => `${f.method} ${f.epochs}${f.finished ? ' finished' : ''}`)), [['topk-retrain 2', 'lora 2', 'hash 2', 'sparse 4'], ['hash 4', 'sparse 5'], ['sparse 8 finished']]);
    const { candidates: _c, ...plain } = options;
    assert.deepEqual(halving.res.bytes, await alone(student, x, plain, 'sparse'), 'byte for byte the payload of sparse alone');
  } finally {
    x.dispose();
    student.dispose();
    teacher.dispose();
  }
});
