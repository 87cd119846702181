/**
 * Structural payloads within a budget (`ndiff diff --budget N` with `--method topk` or `lowbit` on
 * two files whose structure differs): the value patches may stop short of the `--target` file, so
 * the payload names the model it truly reaches, `--model-out` writes exactly that model, `--json`
 * says the payload is not exact, and a device's rebuild ends there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { rebuildModelBytes, type RebuildFormat } from '../src/apply/rebuild.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { OnnxWeightStore } from '../src/io/onnx/store.ts';
import { TfliteWeightStore } from '../src/io/tflite/store.ts';
import { structuralPair } from './helpers/structural-pairs.ts';

const FORMATS: Record<'onnx' | 'tflite', RebuildFormat> = {
  onnx: { kind: 'onnx', open: (b) => new OnnxWeightStore(b) },
  tflite: { kind: 'tflite', open: (b) => new TfliteWeightStore(b) },
};

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const { main } = await import('../cli/ndiff.ts');
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

for (const kind of ['onnx', 'tflite'] as const) {
  for (const method of ['topk', 'lowbit'] as const) {
    test(`.${kind}, --method ${method} within a budget: the structural payload names the model it reaches, --model-out is that model, and a device ends there`, async () => {
      const hasher = await getHasher();
      // A pair whose kept weights changed (seed 1: one kept tensor changed, one renamed, reshaped, removed and added).
      const pair = structuralPair(kind, 1);
      assert.ok(pair.changes.changed >= 1, JSON.stringify(pair.changes));
      const dir = await mkdtemp(path.join(tmpdir(), 'nd-slossy-'));
      try {
        const [b, t, out, model] = ['v1', 'v2', 'p.ndiff', 'out'].map((n) => path.join(dir, n === 'p.ndiff' ? n : `${n}.${kind}`));
        await writeFile(b, pair.base);
        await writeFile(t, pair.target);
        const r = await run('diff', '--base', b, '--target', t, '--method', method, '--budget', '120', '--model-id', 'net', '--out', out, '--model-out', model, '--json');
        assert.equal(r.code, 0, r.err);
        const doc = JSON.parse(r.out) as Record<string, any>;
        const targetFile = fingerprintStore(hasher, FORMATS[kind].open(pair.target)).fingerprint;
        assert.equal(doc.structural, true);
        assert.equal(doc.targetFileFingerprint, targetFile);
        assert.equal(doc.exact, false, 'a 120-byte budget cannot carry every change');
        assert.notEqual(doc.targetFingerprint, targetFile);
        const written = new Uint8Array(await readFile(model));
        assert.equal(fingerprintStore(hasher, FORMATS[kind].open(written)).fingerprint, doc.targetFingerprint, '--model-out is the model the payload names');
        const res = await rebuildModelBytes(pair.base.slice(), new Uint8Array(await readFile(out)), FORMATS[kind]);
        assert.equal(res.status, 'applied');
        assert.ok(Buffer.from(res.bytes).equals(Buffer.from(written)), 'the device rebuilds exactly --model-out');
        // and with --budget all, the --target file itself
        const all = await run('diff', '--base', b, '--target', t, '--budget', 'all', '--model-id', 'net', '--out', out, '--json');
        assert.equal(all.code, 0, all.err);
        const allDoc = JSON.parse(all.out) as Record<string, any>;
        assert.equal(allDoc.exact, true);
        assert.equal(allDoc.targetFingerprint, targetFile);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
}
