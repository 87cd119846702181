/**
 * `ndiff release add` of GGUF models: each version stored as blobs (every part of a split model),
 * named by the stored-bytes digest GGUF payloads use, and the exact block payload from each of the
 * last versions to the new one, checked by publish by applying it in place to a copy of its base;
 * then `ndiff update` of a device holding an older version reaches the newest byte for byte,
 * downloading only payloads. Planned as jobs, each job makes its payload and publish refuses one
 * swapped for a payload that reaches another file. Refused, the folder unchanged: a lossy method,
 * another kind of model.
 * Versions laid out differently get no payload, and the add says devices have no update path.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validateManifest, type ReleaseManifest } from '../src/updater/manifest.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { ggufBytesDigest } from './helpers/gguf-release.ts';
import { runNdiff as ndiff } from './helpers/ndiff-run.ts';
import { tempDir } from './helpers/dirs.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

describe('ndiff release add of .gguf models', () => {
  let work: string;
  let server: ReleaseServer;
  let priv: string;
  let pub: string;
  before(async () => {
    work = await tempDir('nd-release-gguf-');
    assert.equal((await ndiff('keygen', '--out', join(work, 'release'))).code, 0);
    priv = join(work, 'release.private.pem');
    pub = join(work, 'release.public.pem');
    await mkdir(join(work, 'site'));
    server = await serveRelease(join(work, 'site'));
  });
  after(async () => {
    await server?.close();
  });

  /** `bytes` written as `<work>/<dir>/<name>`; its path. */
  async function file(dir: string, name: string, bytes: Uint8Array): Promise<string> {
    await mkdir(join(work, dir), { recursive: true });
    await writeFile(join(work, dir, name), bytes);
    return join(work, dir, name);
  }
  const manifestOf = async (site: string) => validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed) as ReleaseManifest;

  test('three versions: exact block payloads from each older version, and a device on v1 updated to v3 by payload only', async () => {
    const v1 = ggufFixture('tiny-llama-q8_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.05, bytesPerBlock: 3, metadata: true, seed: 7 });
    const v3 = perturbGguf(v2, { blockShare: 0.05, bytesPerBlock: 3, seed: 9 });
    const site = join(work, 'site', 'llm');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('v1', 'model.gguf', v1), '--model-id', 'tiny-llm', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('v2', 'model.gguf', v2), '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('v3', 'model.gguf', v3), '--key', priv);
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.equal(m.modelKind, 'gguf');
    const digests = await Promise.all([v1, v2, v3].map((v) => ggufBytesDigest(v)));
    assert.deepEqual(m.versions.map((v) => v.fingerprint), digests, 'versions named by their stored-bytes digests');
    const edges = m.payloads.map((p) => `${p.fromVersion}->${p.toVersion}`).sort();
    assert.deepEqual(edges, ['1->2', '1->3', '2->3']);
    for (const p of m.payloads) {
      assert.equal(p.exact, true);
      assert.equal(p.base, digests[p.fromVersion - 1]);
      assert.equal(p.target, digests[p.toVersion - 1]);
      assert.ok(p.length < v3.length / 3, `${p.fromVersion}->${p.toVersion}: ${p.length} bytes against a ${v3.length}-byte file`);
    }
    const device = await file('device', 'model.gguf', v1);
    const before = server.log.length;
    r = await ndiff('update', '--model', device, '--from', `${server.url}llm/`, '--public-key', pub, '--model-id', 'tiny-llm');
    assert.equal(r.code, 0, r.err);
    assert.ok(same(new Uint8Array(await readFile(device)), v3), 'the device file is v3 byte for byte');
    const fetched = server.log.slice(before).map((q) => q.path);
    const direct = m.payloads.find((p) => p.fromVersion === 1 && p.toVersion === 3) as { file: string };
    assert.deepEqual(fetched, ['/llm/manifest.json', `/llm/${direct.file}`], 'the manifest and the one payload v1 -> v3, never a full file');
  });

  test('a split model, added by any part: every part stored, the payload patches every part', async () => {
    const names = [1, 2, 3].map((k) => `tiny-split-0000${k}-of-00003.gguf`);
    const s1 = names.map((x) => ggufFixture(x));
    const s2 = s1.map((b, i) => perturbGguf(b, { blockShare: 0.1, seed: 31 + i, metadata: i === 0 }));
    const site = join(work, 'site', 'split');
    for (const [k, parts] of [s1, s2].entries()) for (const [i, x] of names.entries()) await file(`split-v${k + 1}`, x, parts[i]);
    let r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'split-v1', names[1]), '--model-id', 'tiny-llm', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'split-v2', names[0]), '--key', priv);
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.deepEqual(m.versions[1].files.map((f) => f.path), names);
    assert.equal(m.versions[1].fingerprint, await ggufBytesDigest(s2));
    assert.equal(m.payloads.length, 1);
    for (const [i, x] of names.entries()) await file('split-device', x, s1[i]);
    r = await ndiff('update', '--model', join(work, 'split-device', names[2]), '--from', `${server.url}split/`, '--public-key', pub, '--model-id', 'tiny-llm');
    assert.equal(r.code, 0, r.err);
    for (const [i, x] of names.entries()) assert.ok(same(new Uint8Array(await readFile(join(work, 'split-device', x))), s2[i]), `${x} is v2's`);
  });

  test('planned as jobs (a CI matrix without the key): each job makes its payload, and publish refuses a payload swapped for one that reaches another file', async () => {
    const v1 = ggufFixture('tiny-llama-q8_0.gguf');
    const v2 = perturbGguf(v1, { blockShare: 0.1, seed: 21 });
    const other = perturbGguf(v1, { blockShare: 0.1, seed: 22 });
    const site = join(work, 'site', 'plan');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('p1', 'model.gguf', v1), '--model-id', 'p', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('p2', 'model.gguf', v2), '--plan', '-q');
    assert.equal(r.code, 0, r.err);
    const jobs = r.out.split('\n').map((l) => JSON.parse(l) as { id: string });
    assert.deepEqual(jobs.map((j) => j.id), ['v2-from-v1']);
    r = await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1');
    assert.equal(r.code, 0, r.err);
    // The job's payload replaced by one from v1 to another file, its result file claiming that payload's bytes.
    const { diffGgufModels } = await import('../src/io/gguf/diff.ts');
    const { bytesSource } = await import('../src/io/gguf/header.ts');
    const { ggufModelOf } = await import('../src/io/gguf/model.ts');
    const { getHasher } = await import('../src/core/hasher.ts');
    const { sha256Of } = await import('../src/release/blobs.ts');
    const forged = diffGgufModels(await getHasher(), ggufModelOf(bytesSource(v1)), ggufModelOf(bytesSource(other)), { modelId: 'p', sequence: 2, createdBy: 'test' }).payload;
    const resultFile = join(site, 'jobs', 'v2-from-v1.json');
    const honest = await readFile(resultFile, 'utf8');
    const payloadFile = join(site, 'jobs', 'v2-from-v1.ndiff');
    const honestPayload = await readFile(payloadFile);
    const result = JSON.parse(honest) as { payload: { length: number; sha256: string; target: string; exact: boolean } };
    Object.assign(result.payload, { length: forged.length, sha256: sha256Of(forged), target: await ggufBytesDigest(other), exact: false });
    await writeFile(payloadFile, forged);
    await writeFile(resultFile, JSON.stringify(result));
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.notEqual(r.code, 0, 'a payload that reaches another file is not signed');
    assert.match(r.err, /reaches .*not version 2/);
    await writeFile(payloadFile, honestPayload);
    await writeFile(resultFile, honest);
    r = await ndiff('release', 'publish', '--release', site, '--key', priv);
    assert.equal(r.code, 0, r.err);
    const m = await manifestOf(site);
    assert.deepEqual(m.payloads.map((p) => [p.fromVersion, p.toVersion, p.exact, p.target]), [[1, 2, true, await ggufBytesDigest(v2)]]);
  });

  test('refused, the folder untouched: a lossy method, and a model of another kind', async () => {
    const v1 = ggufFixture('tiny-llama-q4_0.gguf');
    const site = join(work, 'site', 'refusals');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('r1', 'model.gguf', v1), '--model-id', 'r', '--key', priv);
    assert.equal(r.code, 0, r.err);
    const snapshot = async () => JSON.stringify([await readFile(join(site, 'release.json'), 'utf8'), await readFile(join(site, 'manifest.json'), 'utf8'), (await readdir(join(site, 'blobs'))).sort()]);
    const before = await snapshot();
    const v2 = await file('r2', 'model.gguf', perturbGguf(v1, { blockShare: 0.2, seed: 3 }));
    r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '5%', '--key', priv);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /exact block payloads only/);
    assert.match(r.err, /ndiff diff --base OLD\.gguf --target NEW\.gguf --budget/);
    r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', 'auto', '--min-agreement', '0.9', '--eval', join(work, 'r2'), '--key', priv);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /exact block payloads only .*found method topk/);
    r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'sparse', '--budget', '5%', '--train', join(work, 'r2'), '--eval', join(work, 'r2'), '--plan');
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /found method sparse/);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('r3', 'model.safetensors', new Uint8Array(16)), '--key', priv);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /holds \.gguf models, and .* is a \.safetensors file/);
    assert.equal(await snapshot(), before, 'release.json, manifest.json and blobs/ as they were');
  });

  test('a version laid out differently gets no payload, and the add says devices have no update path', async () => {
    const site = join(work, 'site', 'layout');
    let r = await ndiff('release', 'add', '--release', site, '--model', await file('l1', 'model.gguf', ggufFixture('tiny-llama-q8_0.gguf')), '--model-id', 'l', '--key', priv);
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', await file('l2', 'model.gguf', ggufFixture('tiny-llama-q4_0.gguf')), '--key', priv);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err + r.out, /laid out differently .*no update path/);
    const m = await manifestOf(site);
    assert.equal(m.versions.length, 2);
    assert.equal(m.payloads.length, 0);
  });
});
