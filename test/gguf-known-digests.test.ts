/**
 * The base check of an in-place GGUF apply takes the digests the caller already took
 * (`knownDigests`, from `ggufFileDigests`: what `ndiff update` hashed to learn which version the
 * model is) while every file is the one hashed and unchanged since, so an update reads the model
 * twice (to learn its version, then the target check) instead of three times. Counted in bytes
 * hashed, not timed. A file changed since it was hashed is hashed again; and digests that lie
 * about the bytes cannot break the model: the apply is refused and the file stays byte for byte.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHasher } from '../src/core/hasher.ts';
import type { Hasher } from '../src/core/hash-types.ts';
import { NeuralDiffError } from '../src/core/errors.ts';
import { diffGgufModels } from '../src/io/gguf/diff.ts';
import { bytesSource } from '../src/io/gguf/header.ts';
import { applyToGgufFile, ggufFileDigests } from '../src/io/gguf/in-place.ts';
import { ggufModelOf } from '../src/io/gguf/model.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';

let dir: string;
let n = 0;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nd-gguf-known-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** The hasher, counting the bytes its streams take. */
async function counting(): Promise<{ hasher: Hasher; bytes(): number }> {
  const h = await getHasher();
  let bytes = 0;
  const hasher: Hasher = {
    kind: h.kind, h32: (i, s) => h.h32(i, s), h64: (i, s) => h.h64(i, s),
    create64: (seed) => {
      const s = h.create64(seed);
      const stream = { update: (b: Uint8Array) => { bytes += b.length; s.update(b); return stream; }, digest: () => s.digest() };
      return stream;
    },
  };
  return { hasher, bytes: () => bytes };
}

const v1 = ggufFixture('tiny-llama-q8_0.gguf');
const v2 = perturbGguf(v1, { blockShare: 0.05, bytesPerBlock: 3, seed: 7 });
const other = perturbGguf(v1, { blockShare: 0.3, seed: 8 });
const payload = async () => diffGgufModels(await getHasher(), ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(v2)), { modelId: 'tiny', sequence: 2, createdBy: 'test' }).payload;

async function model(bytes: Uint8Array): Promise<string> {
  const sub = path.join(dir, `m${++n}`);
  await (await import('node:fs/promises')).mkdir(sub);
  const file = path.join(sub, 'model.gguf');
  await writeFile(file, bytes);
  return file;
}

test('with the digests the caller took, the base check reads nothing: the file is hashed once (the target check), not twice', async () => {
  const p = await payload();
  const plain = await counting();
  const a = await model(v1);
  await applyToGgufFile(a, p, { state: null, hasher: plain.hasher });
  assert.ok(Buffer.from(await readFile(a)).equals(v2));
  assert.ok(plain.bytes() >= 2 * v1.length, `without known digests the apply hashes the file twice (${plain.bytes()} bytes for a ${v1.length}-byte file)`);

  const b = await model(v1);
  const known = await ggufFileDigests(b);
  assert.ok(known && known.files.length === 1 && known.files[0].identity !== '');
  const given = await counting();
  const r = await applyToGgufFile(b, p, { state: null, hasher: given.hasher, knownDigests: known });
  assert.equal(r.status, 'applied');
  assert.ok(Buffer.from(await readFile(b)).equals(v2), 'v2 byte for byte');
  assert.ok(given.bytes() <= plain.bytes() - v1.length, `with them it hashes one file's bytes fewer (${given.bytes()} against ${plain.bytes()})`);
});

test('a file changed since it was hashed is hashed again', async () => {
  const p = await payload();
  const plain = await counting();
  await applyToGgufFile(await model(v1), p, { state: null, hasher: plain.hasher });
  const file = await model(v1);
  const known = await ggufFileDigests(file);
  await utimes(file, new Date(1_000_000), new Date(1_000_000)); // touched: its times (and change time) move
  const given = await counting();
  await applyToGgufFile(file, p, { state: null, hasher: given.hasher, knownDigests: known });
  assert.ok(Buffer.from(await readFile(file)).equals(v2));
  assert.equal(given.bytes(), plain.bytes(), 'the base check hashed the file as without known digests');
});

test('digests that lie about the bytes cannot break the model: refused, the file byte for byte as it was, no journal left', async () => {
  const p = await payload();
  const file = await model(other);
  const truth = await ggufFileDigests(file);
  const claimsV1 = await ggufFileDigests(await model(v1));
  assert.ok(truth && claimsV1);
  // The file's own identity, v1's digests: as if the caller had hashed v1 there.
  const lie = { digest: claimsV1.digest, files: truth.files.map((f, i) => ({ ...f, digest: claimsV1.files[i].digest })) };
  // Where the file differs from v1 in the ranges the payload rewrites: refused before anything is written.
  await assert.rejects(applyToGgufFile(file, p, { state: null, knownDigests: lie }), (e: unknown) => e instanceof NeuralDiffError && /this file is not the payload's base.*nothing of this chunk was written/.test((e as Error).message));
  assert.ok(Buffer.from(await readFile(file)).equals(other), 'the model as it was, byte for byte');
  assert.deepEqual((await readdir(path.dirname(file))).filter((f) => f.includes('ndiff-undo')), []);

  // Where it differs only outside them (one byte of a block v2 keeps): the target check after the
  // overwrite fails, and the journal brings the file back.
  let at = v1.length - 1;
  const keeps = (i: number) => { for (let k = Math.max(0, i - 256); k <= Math.min(v1.length - 1, i + 256); k++) if (v1[k] !== v2[k]) return false; return true; };
  while (at > 0 && !keeps(at)) at--;
  assert.ok(at > v1.length / 2, 'a byte v2 keeps, in the tensor data');
  const near = v1.slice();
  near[at] ^= 0xff;
  const file2 = await model(near);
  const truth2 = await ggufFileDigests(file2);
  assert.ok(truth2);
  const lie2 = { digest: claimsV1.digest, files: truth2.files.map((f, i) => ({ ...f, digest: claimsV1.files[i].digest })) };
  await assert.rejects(applyToGgufFile(file2, p, { state: null, knownDigests: lie2 }), (e: unknown) => e instanceof NeuralDiffError && /rolled back/.test((e as Error).message));
  assert.ok(Buffer.from(await readFile(file2)).equals(near), 'rolled back: the model as it was, byte for byte');
  assert.deepEqual((await readdir(path.dirname(file2))).filter((f) => f.includes('ndiff-undo')), []);
});
