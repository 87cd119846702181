/**
 * A learned edge in a release: `ndiff release job --export` writes the job's base and target
 * version, `ndiff train --teacher` learns a payload of the base toward the target from unlabeled
 * inputs, and `ndiff release job --payload` takes it back as the edge's (checked to be this
 * release's model id, the job's base and the version's sequence, and to apply), lossy, so the
 * published manifest lists it beside the full packages; a payload of another job is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { initBackend } from '../src/engine/backend.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { seededRandom } from '../src/core/random.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { sha256Of } from '../src/release/blobs.ts';
import { decodePayload } from '../src/core/format.ts';
import { tempDir } from './helpers/dirs.ts';

async function ndiff(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) };
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const fingerprintOf = async (dir: string) => fingerprintStore(await getHasher(), await openTfjsModelDir(dir)).fingerprint;

/** A small classifier; v2 is v1 with every weight moved (a retrain), so an exact payload is large. */
async function versions(dir: string): Promise<void> {
  const make = () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [16], units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }), tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) })] });
  const v1 = make();
  await v1.save(fileSystemIO(join(dir, 'v1')));
  const r = seededRandom(7);
  v1.setWeights(v1.getWeights().map((w) => tf.tidy(() => w.add(tf.tensor(Float32Array.from({ length: w.size }, () => (r() - 0.5) * 0.2), w.shape)))));
  await v1.save(fileSystemIO(join(dir, 'v2')));
  const x = Float32Array.from({ length: 400 * 16 }, () => r() * 2 - 1);
  await saveNpy(join(dir, 'inputs', 'x.npy'), x, [400, 16]);
}

test('a learned edge: export the job, train toward the new version, take the payload back', { timeout: 240_000 }, async () => {
  await initBackend('wasm');
  const dir = await tempDir('nd-release-learned-');
  await versions(dir);
  const release = join(dir, 'site');
  assert.equal((await ndiff('keygen', '--out', join(dir, 'k'))).code, 0);
  const key = join(dir, 'k.private.pem');
  let r = await ndiff('release', 'add', '--release', release, '--model', join(dir, 'v1'), '--model-id', 'clf', '--key', key);
  assert.equal(r.code, 0, r.err);
  r = await ndiff('release', 'add', '--release', release, '--model', join(dir, 'v2'), '--plan');
  assert.equal(r.code, 0, r.err);
  const [job] = r.out.split('\n').map((l) => JSON.parse(l) as { id: string });
  assert.equal(job.id, 'v2-from-v1');

  r = await ndiff('release', 'job', '--release', release, '--id', job.id, '--export', join(dir, 'edge'));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /ndiff train --base .*edge\/base --teacher .*edge\/target .*--model-id clf --sequence 2/);
  assert.equal(await fingerprintOf(join(dir, 'edge', 'base')), await fingerprintOf(join(dir, 'v1')));
  assert.equal(await fingerprintOf(join(dir, 'edge', 'target')), await fingerprintOf(join(dir, 'v2')));

  const train = (sequence: string, out: string) => ndiff('train', '--base', join(dir, 'edge', 'base'), '--teacher', join(dir, 'edge', 'target'), '--train', join(dir, 'inputs'),
    '--method', 'sparse', '--budget', '10%', '--epochs', '3', '--tune', 'off', '--model-id', 'clf', '--sequence', sequence, '--out', out);
  r = await train('2', join(dir, 'learned.ndiff'));
  assert.equal(r.code, 0, r.err);

  // Another job's payload (wrong sequence) is refused and leaves no job result.
  r = await train('3', join(dir, 'other.ndiff'));
  assert.equal(r.code, 0, r.err);
  r = await ndiff('release', 'job', '--release', release, '--id', job.id, '--payload', join(dir, 'other.ndiff'));
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /has sequence 3, version 2 needs sequence 2: make it with modelId "clf" and sequence 2 \(--model-id clf --sequence 2\)/);
  assert.equal(existsSync(join(release, 'jobs', `${job.id}.json`)), false, 'a refused payload left a job result');

  r = await ndiff('release', 'job', '--release', release, '--id', job.id, '--payload', join(dir, 'learned.ndiff'));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\(sparse, lossy\) checked against the job's base/);
  // A lossy payload publish cannot rebuild is signed only when the key holder vouches for its bytes.
  const sha = sha256Of(new Uint8Array(await readFile(join(dir, 'learned.ndiff'))));
  assert.ok(r.out.includes(`--accept ${sha.slice(0, 16)}`), r.out);
  r = await ndiff('release', 'publish', '--release', release, '--key', key);
  assert.equal(r.code, 3, r.err);
  assert.match(r.err, /accept it by its SHA-256: --accept [0-9a-f]{16}/);
  r = await ndiff('release', 'publish', '--release', release, '--key', key, '--accept', sha.slice(0, 16));
  assert.equal(r.code, 0, r.err);
  const manifest = validateManifest(JSON.parse(await readFile(join(release, 'manifest.json'), 'utf8')).signed);
  const learned = manifest.payloads.filter((p) => p.method === 'sparse');
  assert.equal(learned.length, 1);
  assert.equal(learned[0].exact, false);
  assert.equal(learned[0].base, await fingerprintOf(join(dir, 'v1')));
  const header = decodePayload(new Uint8Array(await readFile(join(dir, 'learned.ndiff')))).header;
  assert.equal(learned[0].target, header.targetFingerprint, 'the manifest lists the learned payload (signed on publish)');
  assert.notEqual(learned[0].target, await fingerprintOf(join(dir, 'v2')), 'a 10% payload of a retrain is lossy');
});
