/**
 * The pretrained example's image sets (examples/pretrained/fashion.ts): the labelled training
 * images, the evaluation images and the unlabeled distillation inputs (`--distill-inputs N`) never
 * share an image, each is balanced over the 5 classes, the draws are seeded, and the training
 * images are the ones the committed results were measured on. Reads only the labels and a few
 * images (no training). Skipped where Debian's dataset-fashion-mnist is missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CLASSES, FASHION_DIR, fashionImages, fashionSets, fashionTask, type FashionPick } from '../examples/pretrained/fashion.ts';
import { UsageError } from '../src/core/errors.ts';

const skip = existsSync(join(FASHION_DIR, 'train-labels-idx1-ubyte.gz')) ? false : 'dataset-fashion-mnist is not installed';

const perClass = (picks: FashionPick[]) => CLASSES.map((_, c) => picks.filter((p) => p.cls === c).length);

test('training, evaluation and distillation images: no image in two sets, each set balanced, the draws seeded', { skip }, () => {
  const sets = fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: 400 });
  assert.deepEqual(perClass(sets.train), [100, 100, 100, 100, 100]);
  assert.deepEqual(perClass(sets.eval), [100, 100, 100, 100, 100]);
  assert.deepEqual(perClass(sets.distill), [400, 400, 400, 400, 400]);
  // Training and distillation images come from the same split: no index may repeat across them.
  const trainIndex = new Set(sets.train.map((p) => p.index));
  assert.equal(trainIndex.size, 500);
  const distillIndex = new Set(sets.distill.map((p) => p.index));
  assert.equal(distillIndex.size, 2000);
  assert.deepEqual([...distillIndex].filter((i) => trainIndex.has(i)), []);
  // Evaluation images are from the other split (t10k), which no training draws from.
  assert.equal(new Set(sets.eval.map((p) => p.index)).size, 500);
  // Classes mixed, not in runs of one class.
  assert.notDeepEqual(sets.distill.slice(0, 10).map((p) => p.cls), Array(10).fill(sets.distill[0].cls));
  // Seeded: the same call gives the same images in the same order.
  assert.deepEqual(fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: 400 }), sets);
  // A narrower distillation set is part of the wider one (N only widens it).
  const narrow = fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: 50 }).distill;
  assert.equal(narrow.length, 250);
  assert.ok(narrow.every((p) => distillIndex.has(p.index)));
  assert.deepEqual(fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: 0 }).distill, []);
});

test('the training images are those the committed results used, and an oversized draw is refused with a typed error', { skip }, () => {
  const sets = fashionSets({ trainPerClass: 2, evalPerClass: 2, distillPerClass: 2 });
  const before = fashionTask('train', 2, 1);
  const now = fashionImages('train', sets.train);
  assert.deepEqual(now.y, before.y);
  assert.deepEqual(now.x, before.x);
  const distill = fashionImages('train', sets.distill);
  assert.notDeepEqual(distill.x.subarray(0, 224 * 224 * 3), now.x.subarray(0, 224 * 224 * 3));
  // 6,000 training images of each class: 100 for training leave 5,900 for distillation.
  assert.throws(() => fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: 5901 }), (e: unknown) => e instanceof UsageError && /holds 6000 images of class T-shirt; 100 \+ 5901 were asked/.test(e.message));
  assert.throws(() => fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: -1 }), UsageError);
  assert.equal(fashionSets({ trainPerClass: 100, evalPerClass: 100, distillPerClass: 5900 }).distill.length, 5 * 5900);
});
