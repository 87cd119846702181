import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadFolder } from '../src/train/data-folders.ts';
import { DataError } from '../src/core/errors.ts';
import { saveNpy } from '../src/io/npy/files.ts';

// The data folders `ndiff train` and `ndiff diff --eval` read for ONNX, LiteRT and TF.js graph
// models: labels as the layers-model loader takes them (class indices or one-hot rows), one per
// example; a mask per example (a segmentation team's first try) is refused, saying what to do.
describe('data folders: labels (y.npy)', () => {
  const root = mkdtempSync(join(tmpdir(), 'ndiff-folders-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const folder = (name: string, y: Float32Array | Int32Array, yShape: number[]): string => {
    const dir = join(root, name);
    saveNpy(join(dir, 'x.npy'), new Float32Array(3 * 4 * 4 * 3), [3, 4, 4, 3]);
    saveNpy(join(dir, 'y.npy'), y, yShape);
    return dir;
  };

  it('reads class indices, one per example', () => {
    const { data } = loadFolder(folder('indices', Int32Array.of(2, 0, 1), [3]), [{ name: 'input', files: ['x.npy'] }], '--train', false);
    assert.deepEqual(Array.from(data.labels ?? []), [2, 0, 1]);
  });

  it('reads one-hot rows as their class indices', () => {
    const y = Float32Array.of(0, 0, 1, 1, 0, 0, 0, 1, 0);
    const { data } = loadFolder(folder('one-hot', y, [3, 3]), [{ name: 'input', files: ['x.npy'] }], '--train', false);
    assert.deepEqual(Array.from(data.labels ?? []), [2, 0, 1]);
  });

  it('refuses a mask per example, naming its shape and the teacher instead', () => {
    const dir = folder('masks', new Float32Array(3 * 4 * 4).fill(0.5), [3, 4, 4, 1]);
    assert.throws(
      () => loadFolder(dir, [{ name: 'input', files: ['x.npy'] }], '--train', false),
      (e: unknown) => e instanceof DataError && /shape \[3, 4, 4, 1\]/.test(e.message) && /expected \[3\] class indices/.test(e.message) && /--teacher/.test(e.message),
    );
  });

  it('refuses labels that are not whole class indices, or too few', () => {
    assert.throws(() => loadFolder(folder('fractions', Float32Array.of(0.2, 0.9, 0.5), [3]), [{ name: 'input', files: ['x.npy'] }], '--train', false), (e: unknown) => e instanceof DataError && /label 0 is 0\.2/.test(e.message));
    assert.throws(() => loadFolder(folder('short', Int32Array.of(1, 0), [2]), [{ name: 'input', files: ['x.npy'] }], '--train', false), (e: unknown) => e instanceof DataError && /expected 3 labels/.test(e.message));
  });
});
