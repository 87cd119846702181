/**
 * The short fuzz run of `npm test` (the long one: `npm run fuzz`, test/fuzz/run.ts). Every
 * generated input must end in success or a typed refusal with the weights untouched.
 */
import { test, describe, before, after } from 'node:test';
import { rm } from 'node:fs/promises';
import assert from 'node:assert/strict';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { NeuralDiffError } from '../src/core/errors.ts';
import { buildCorpus, type Corpus } from './fuzz/corpus.ts';
import { fuzz, runMemoryCase, type FuzzCase, type FuzzSummary } from './fuzz/harness.ts';
import { buildReleaseFixture, fuzzReleaseFolder, type ReleaseFixture } from './fuzz/release-folder.ts';

const SEED = Number(process.env.NDIFF_FUZZ_SEED ?? 20261122);

function explain(s: FuzzSummary): string {
  return `outcomes ${JSON.stringify(s.outcomes)}; first bad case: ${JSON.stringify(s.firstBad, (_, x) => (x instanceof Uint8Array ? [...x] : typeof x === 'bigint' ? `${x}n` : x))}`;
}

describe('payload fuzzing (short run)', () => {
  let corpus: Corpus;
  before(async () => {
    corpus = await buildCorpus();
  });

  test('2000 mutated, re-encoded, random and re-signed inputs through applyPayload', async () => {
    const s = await fuzz(corpus, { cases: 2000, seed: SEED });
    assert.equal(s.cases, 2000);
    assert.equal(s.bad, 0, explain(s));
    // the run reached every stage of the applier, not just the first check
    for (const k of ['applied', 'refused:ND_PAYLOAD_FORMAT', 'refused:ND_SIGNATURE', 'refused:ND_FRESHNESS', 'refused:ND_MODEL_MISMATCH', 'refused:ND_TARGET_MISMATCH']) {
      assert.ok((s.outcomes[k] ?? 0) > 0, `no case ended in ${k}: ${explain(s)}`);
    }
  });

  test('40 inputs through the crash-safe folder apply: every file byte-identical on refusal', async () => {
    const s = await fuzz(corpus, { cases: 40, seed: SEED + 1, disk: true });
    assert.equal(s.bad, 0, explain(s));
    assert.ok((s.outcomes['refused:ND_PAYLOAD_FORMAT'] ?? 0) > 5, explain(s));
  });

  test('the oracle is not blind: it flags an untyped error and a partial write', async () => {
    const base = corpus.entries[0].base;
    /** A store whose commit scribbles on a weight no patch touches, then fails. */
    class Scribbling extends MemoryWeightStore {
      override clone(): MemoryWeightStore {
        const s = new Scribbling(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name).slice() }]));
        return s;
      }
      commit(): void {
        this.values('conv1/bias')[7] += 1;
        throw new NeuralDiffError('ND_STATE', 'disk full (test)');
      }
    }
    /** A store that breaks with a TypeError once the applier reads it (after the oracle's snapshot). */
    class Broken extends MemoryWeightStore {
      private reads = 0;
      override clone(): MemoryWeightStore {
        const s = new Broken(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name).slice() }]));
        return s;
      }
      override values(name: string): Float32Array {
        if (++this.reads > this.list().length) throw new TypeError('cannot read properties of undefined');
        return super.values(name);
      }
    }
    const valid: FuzzCase = { mode: 'bytes', entry: 0, mutations: [], policy: 'none', seq: null };
    for (const [Store, expected] of [[Scribbling, 'modified'], [Broken, 'crash']] as const) {
      const evil: Corpus = { ...corpus, entries: [{ ...corpus.entries[0], base: new Store(base.list().map((t) => [t.name, { shape: t.shape, data: base.values(t.name).slice() }])) }] };
      const r = await runMemoryCase(evil, valid, 5000);
      assert.equal(r.outcome, expected, JSON.stringify(r));
    }
  });
});

describe('release folder fuzzing (short run)', () => {
  let fx: ReleaseFixture;
  before(async () => {
    fx = await buildReleaseFixture();
  });
  after(async () => {
    await rm(fx.root, { recursive: true, force: true });
  });

  test('60 poisoned release.json and job files: publish signs only what a device accepts whole, or refuses with a typed error and the manifest untouched', async () => {
    const s = await fuzzReleaseFolder(fx, { cases: 60, seed: SEED + 7 });
    assert.equal(s.cases, 60);
    assert.deepEqual(s.bad, [], JSON.stringify(s.outcomes));
    assert.ok((s.outcomes.published ?? 0) > 0 && Object.keys(s.outcomes).some((k) => k.startsWith('refused:')), `outcomes ${JSON.stringify(s.outcomes)}`);
  });
});

describe('structural payload fuzzing (short run)', () => {
  test('600 hostile structural payloads (format v7) for ONNX, LiteRT and TF.js pairs whose structure changed: the target or a typed refusal with the base untouched, in memory and on disk', async () => {
    const { fuzzStructural } = await import('./fuzz/structural.ts');
    const s = await fuzzStructural({ cases: 600, seed: SEED + 11, diskEvery: 10 });
    assert.equal(s.cases, 600);
    assert.equal(s.bad, 0, `${JSON.stringify(s.outcomes)}; ${s.firstBad.join('; ')}`);
    // the inputs reached the checks after the document's: the base, the model's format, the byte delta, and success
    for (const k of ['applied', 'refused BaseMismatchError', 'refused ModelMismatchError', 'refused PayloadFormatError']) assert.ok((s.outcomes[k] ?? 0) > 0, `no "${k}" among ${JSON.stringify(s.outcomes)}`);
  });
});
