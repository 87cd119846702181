/**
 * The device's bundles for structural payloads (format v7): `neural-diff/rebuild` is bundled with
 * the applier (`rebuild-apply.js`) and with each single-file store (`onnx-rebuild-apply.js`,
 * `tflite-rebuild-apply.js`) by `npm run build:apply`, so `neural-diff/apply`'s own bundle keeps its
 * size. Each stays within its bound and its figure in docs/BENCHMARKS.md, imports nothing of node or
 * tfjs, and, loaded as built, rebuilds a file whose structure changed to the target byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildApplyBundle, type ApplyBundle } from '../scripts/build-apply.ts';
import { getHasher } from '../src/core/hasher.ts';
import { structuralDiff } from '../src/diff/structural.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { checkDocumentedFigures } from './helpers/doc-figures.ts';
import { structuralPair } from './helpers/structural-pairs.ts';

const ROWS: { key: keyof ApplyBundle; figure: string; bound: number }[] = [
  { key: 'rebuildWithApply', figure: '`dist/rebuild-apply.js` (`neural-diff/rebuild` with the applier)', bound: 40_000 },
  { key: 'onnxRebuildWithApply', figure: '`dist/onnx-rebuild-apply.js` (the same with `neural-diff/onnx`)', bound: 48_000 },
  { key: 'tfliteRebuildWithApply', figure: '`dist/tflite-rebuild-apply.js` (the same with `neural-diff/tflite`)', bound: 48_000 },
];

test('the structural rebuild bundled with the applier and each store: within bounds, figures as documented, nothing of node or tfjs, and it rebuilds to the target', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-rebuild-bundle-'));
  try {
    const bundle = await buildApplyBundle(dir);
    assert.ok(bundle.apply.gzipBytes < 30_000, `neural-diff/apply grew to ${bundle.apply.gzipBytes} bytes min+gzip`); // and keeps its size: the rebuild is in files of its own
    for (const { key, figure, bound } of ROWS) {
      const e = bundle[key] as { gzipBytes: number; outfile: string };
      assert.ok(e.gzipBytes <= bound, `${figure}: ${e.gzipBytes} bytes min+gzip, above ${bound}`);
      checkDocumentedFigures(figure, [e.gzipBytes], `${e.gzipBytes.toLocaleString('en-US')} bytes min+gzip`);
      assert.doesNotMatch(await readFile(e.outfile, 'utf8'), /from\s*["'](node:|fs|path|@tensorflow)/);
    }
    const hasher = await getHasher();
    for (const [kind, file, Store] of [['onnx', bundle.onnxRebuildWithApply.outfile, OnnxWeightStore], ['tflite', bundle.tfliteRebuildWithApply.outfile, TfliteWeightStore]] as const) {
      const pair = structuralPair(kind, 17);
      const built = structuralDiff(hasher, pair.base, pair.target, { kind, open: (b) => new Store(b) }, { modelId: 'bundle', sequence: 1 });
      const mod = await import(file);
      const open = (b: Uint8Array) => (kind === 'onnx' ? new mod.OnnxWeightStore(b) : new mod.TfliteWeightStore(b));
      assert.equal(mod.isStructuralPayload(built.bytes), true);
      const res = await mod.rebuildModelBytes(pair.base.slice(), built.bytes, { kind, open });
      assert.equal(res.status, 'applied');
      assert.ok(Buffer.from(res.bytes).equals(Buffer.from(pair.target)), `${kind}: the bundle's rebuild is not the target`);
      // the base's own payload kind still goes to the applier in the same file
      await assert.rejects(mod.applyPayload(open(pair.base.slice()), built.bytes), (e: Error & { code?: string }) => e.code === 'ND_UNSUPPORTED_VERSION');
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
