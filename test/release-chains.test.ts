/**
 * Lossy chains in a release folder that do not drift (issue 64, deliverable 3):
 * - a device that takes every update keeps taking lossy payloads, each made from the state it
 *   holds (rebuilt by applying the chain's payloads, never assumed), and with error feedback
 *   the part an earlier payload left out is carried into the next one's target: on a chain
 *   whose top-k codec drops a small change every version makes, the accumulated error after four
 *   updates is measured with and without it;
 * - `release add --eval INPUTS` measures the drift of each lossy payload (agreement with the
 *   version of the model its devices would hold after the chain), prints the keyframe threshold,
 *   and ships the exact payload when the agreement falls below it, and only then;
 * - the same versions and policy give the same payload bytes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { MemoryWeightStore } from '../src/core/weight-store.ts';
import { seededRandom } from '../src/core/random.ts';
import { addVersion } from '../src/release/add.ts';
import { openState } from '../src/release/package.ts';
import { exportJob, runJob } from '../src/release/jobs.ts';
import { measurePayload } from '../src/front/measure/payload-eval.ts';
import { readPrivateKeyFile } from '../src/sign/node-keys.ts';
import { checkTicket, runTicket, ticketsOf } from '../src/release/ticket.ts';
import { sha256Of } from '../src/release/blobs.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { readRecord, type EdgePolicy, type ReleaseRecord } from '../src/release/record.ts';
import type { ManifestPayload } from '../src/updater/manifest.ts';
import { fileSystemIO, openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { initBackend } from '../src/engine/backend.ts';
import { tempDir, writeStore } from './helpers/dirs.ts';

const work = await tempDir('nd-release-chains-');
after(() => rm(work, { recursive: true, force: true }));
const { privateKey } = generateKeyPairSync('ed25519');
const expiresAt = Math.floor(Date.now() / 1000) + 86400;

async function ndiff(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (l) => out.push(l), err: (l) => err.push(l), progress: (l) => err.push(l) };
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/**
 * Five versions of a 2000-weight model whose updates differ in size: 64, 24, 64 and 24 weights
 * move by 1 (each update its own weights), and a payload within the budget carries about 40
 * values. Without error feedback what a large update left out is never shipped; with it, the
 * smaller updates' spare bytes carry it.
 */
async function unevenVersions(dir: string): Promise<string[]> {
  const r = seededRandom(11);
  const w = Float32Array.from({ length: 2000 }, () => r() - 0.5);
  const b = Float32Array.from({ length: 20 }, () => r() - 0.5);
  const order = Array.from(w.keys());
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const paths: string[] = [];
  let next = 0;
  for (let v = 1; v <= 5; v++) {
    if (v > 1) for (let k = 0; k < [64, 24][v % 2]; k++) w[order[next++]] += r() < 0.5 ? -1 : 1;
    const at = join(dir, `v${v}`);
    await writeStore(at, new MemoryWeightStore([['dense/kernel', { shape: [100, 20], data: Float32Array.from(w) }], ['dense/bias', { shape: [20], data: Float32Array.from(b) }]]));
    paths.push(at);
  }
  return paths;
}

/** The chain of payloads a device that started at version 1 and took every update took, in order. */
function deviceChain(record: ReleaseRecord): ManifestPayload[] {
  const chain: ManifestPayload[] = [];
  let at = record.versions[0].fingerprint;
  for (let v = 2; v <= record.versions.length; v++) {
    const step = record.payloads.find((p) => p.base === at && p.toVersion === v);
    assert.ok(step, `a payload from the state a device holds after ${v - 2} update(s) into version ${v}`);
    chain.push(step);
    at = step.target;
  }
  return chain;
}

/** Sum of squared differences between the weights of two stores. */
function squaredDistance(a: { values(n: string): Float32Array; list(): { name: string; patchable?: boolean }[] }, b: { values(n: string): Float32Array }): number {
  let s = 0;
  for (const t of a.list()) {
    if (t.patchable === false) continue;
    const x = a.values(t.name);
    const y = b.values(t.name);
    for (let i = 0; i < x.length; i++) s += (x[i] - y[i]) ** 2;
  }
  return s;
}

/** Release the five versions with `policy`; the squared error of each device state along the chain from version 1. */
async function releaseChain(name: string, versions: string[], policy: EdgePolicy): Promise<{ record: ReleaseRecord; chain: ManifestPayload[]; errors: number[] }> {
  const site = join(work, name);
  for (const v of versions) await addVersion(site, v, { modelId: 'shift', history: 5, policy, key: privateKey, expiresAt });
  const record = (await readRecord(site))!;
  const chain = deviceChain(record);
  const errors: number[] = [];
  for (const p of chain) {
    // The device's state rebuilt by applying the chain's payloads (openState checks its fingerprint).
    const state = await openState(site, record, p.toVersion, p.target, p.exact ? undefined : p.sha256);
    const version = await openTfjsModelDir(versions[p.toVersion - 1]);
    try {
      errors.push(squaredDistance(state.store, version));
    } finally {
      await state.dispose();
    }
  }
  return { record, chain, errors };
}

test('error feedback: a lossy chain made from the device\'s own state carries what earlier payloads left out, and drifts less than one without', async (t) => {
  const versions = await unevenVersions(join(work, 'shift'));
  const policy: EdgePolicy = { method: 'topk', budget: '235' };
  const withEf = await releaseChain('ef', versions, policy);
  const without = await releaseChain('no-ef', versions, { ...policy, errorFeedback: false });
  for (const { chain } of [withEf, without]) {
    t.diagnostic(chain.map((p) => `${p.fromVersion}->${p.toVersion} ${p.method} ${p.exact ? 'exact' : 'lossy'} ${p.length} bytes`).join('; '));
    assert.equal(chain.length, 4);
    assert.ok(chain.every((p) => !p.exact && p.method === 'topk'), 'every update along the chain is a lossy payload within the budget');
  }
  // Measured on the states the payloads reach, not assumed: the error after each update.
  const show = (e: number[]) => e.map((x) => x.toFixed(3)).join(', ');
  t.diagnostic(`squared error from the version after 1..4 updates: with error feedback ${show(withEf.errors)}; without ${show(without.errors)}`);
  assert.equal(withEf.errors[0], without.errors[0], 'the first payload starts from a version: the same either way');
  assert.ok(withEf.errors[3] < without.errors[3] * 0.75, `after four updates error feedback leaves less error: ${withEf.errors[3]} vs ${without.errors[3]}`);
  // Without it what the large updates left out stays out.
  assert.ok(without.errors[3] > without.errors[0] * 1.5, `without error feedback the error grows: ${show(without.errors)}`);
});

test('the same versions and policy give the same payload bytes along the chain, in the folder or on a worker, and a learned payload\'s export starts from the state devices hold', async () => {
  const versions = await unevenVersions(join(work, 'shift-again'));
  const a = await releaseChain('det-a', versions, { method: 'topk', budget: '235' });
  const b = await releaseChain('det-b', versions, { method: 'topk', budget: '235' });
  assert.deepEqual(a.record.payloads.map((p) => p.sha256).sort(), b.record.payloads.map((p) => p.sha256).sort());
  assert.deepEqual(a.chain.map((p) => p.sha256), b.chain.map((p) => p.sha256));
  // A worker without the folder (a job ticket) rebuilds the chain's state from the blobs it names
  // and makes the same bytes as the job run in the folder.
  const site = join(work, 'det-a');
  const w = new Float32Array((await openTfjsModelDir(versions[4])).values('dense/kernel'));
  for (let i = 0; i < 64; i++) w[i * 29] += 1;
  const v6 = join(work, 'shift-again', 'v6');
  await writeStore(v6, new MemoryWeightStore([['dense/kernel', { shape: [100, 20], data: w }], ['dense/bias', { shape: [20], data: (await openTfjsModelDir(versions[4])).values('dense/bias') }]]));
  await addVersion(site, v6, { policy: { method: 'topk', budget: '235' }, planOnly: true });
  const record = (await readRecord(site))!;
  const tickets = ticketsOf(record);
  const onChain = tickets.find((t) => t.job.base === a.chain[3].target);
  assert.ok(onChain?.chain?.length === 3 && onChain.via?.sha256 === a.chain[3].sha256, 'the ticket of the chain\'s job names its four payloads');
  assert.equal(onChain.job.policy.method, 'topk', 'the chain continues lossy');
  const byWorker = await runTicket(checkTicket(JSON.parse(JSON.stringify(onChain))), { source: site, cacheDir: join(work, 'worker') });
  const inFolder = await runJob(site, record, onChain.job);
  assert.ok(byWorker.payload && inFolder.payload && !inFolder.payload.exact);
  assert.equal(sha256Of(byWorker.payload), inFolder.payload.sha256);
  // A payload learned for that job elsewhere starts from the same state: the export's base is it.
  const exported = await exportJob(site, record, onChain.job, join(work, 'export'));
  assert.equal(fingerprintStore(await getHasher(), await openTfjsModelDir(exported.base)).fingerprint, onChain.job.base);
  assert.equal(fingerprintStore(await getHasher(), await openTfjsModelDir(exported.target)).fingerprint, record.versions[5].fingerprint);
});

/** Three versions of a small classifier (TF.js layers-model), each a retrain that moves every weight; inputs to measure on. */
async function classifierVersions(dir: string): Promise<{ versions: string[]; inputs: string }> {
  await initBackend('wasm');
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [16], units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }), tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) })] });
  const r = seededRandom(5);
  const versions: string[] = [];
  for (let v = 1; v <= 3; v++) {
    if (v > 1) model.setWeights(model.getWeights().map((w) => tf.tidy(() => w.add(tf.tensor(Float32Array.from({ length: w.size }, () => (r() - 0.5) * 0.15), w.shape)))));
    versions.push(join(dir, `v${v}`));
    await model.save(fileSystemIO(versions[v - 1]));
  }
  model.dispose();
  const inputs = join(dir, 'inputs');
  saveNpy(join(inputs, 'x.npy'), Float32Array.from({ length: 400 * 16 }, () => r() * 2 - 1), [400, 16]);
  return { versions, inputs };
}

test('release add --eval measures each lossy chain\'s drift, prints the keyframe threshold, and below it ships a larger or the exact payload, and only then', { timeout: 240_000 }, async (t) => {
  const { versions, inputs } = await classifierVersions(join(work, 'clf'));
  const keyDir = join(work, 'keys');
  assert.equal((await ndiff('keygen', '--out', join(keyDir, 'k'))).code, 0);
  const key = join(keyDir, 'k.private.pem');
  const add = (site: string, v: number, ...extra: string[]) => ndiff('release', 'add', '--release', join(work, site), '--model', versions[v - 1], '--model-id', 'clf', '--key', key, '--method', 'topk', '--budget', '30%', '--history', '3', '--eval', inputs, ...extra);
  const twoVersions = async (site: string) => {
    assert.equal((await ndiff('release', 'add', '--release', join(work, site), '--model', versions[0], '--model-id', 'clf', '--key', key)).code, 0);
    const r = await add(site, 2, '--keyframe-below', '0');
    assert.equal(r.code, 0, r.err);
    return r;
  };
  // The threshold is printed; 0 never makes a keyframe.
  const first = await twoVersions('kf-none');
  assert.match(first.out, /keyframe threshold: 0\.00% top-1 agreement with the new version on the --eval inputs \(--keyframe-below\)/);
  const none = await add('kf-none', 3, '--keyframe-below', '0');
  assert.equal(none.code, 0, none.err);
  const chainLine = /(v3-from-v2-[0-9a-f]{8}): devices agree with version 3 on ([\d.]+)% of the --eval inputs after a chain of 2 lossy payloads, at or above 0\.00%: the lossy payload \(budget 30%\) is kept/.exec(none.out);
  assert.ok(chainLine, none.out);
  const agreement = Number(chainLine[2]) / 100;
  assert.ok(agreement < 1, `the chain's state is not the version: agreement ${agreement}`);
  let record = (await readRecord(join(work, 'kf-none')))!;
  assert.ok(record.payloads.some((p) => p.toVersion === 3 && p.fromVersion === 2 && !p.exact && p.base !== record.versions[1].fingerprint), 'the chain continues with a lossy payload from the state devices hold');

  // Just above the chain's agreement: `add` tries a payload of twice the budget first, and ships it
  // since devices agree with the version on it at or above the threshold.
  await twoVersions('kf-cross');
  const above = Math.min(1, agreement + 0.001);
  const cross = await add('kf-cross', 3, '--keyframe-below', String(above));
  assert.equal(cross.code, 0, cross.err);
  t.diagnostic(cross.out);
  assert.match(cross.out, new RegExp(`keyframe threshold: ${(100 * above).toFixed(2)}%`));
  const larger = new RegExp(`${chainLine[1]}: devices agree with version 3 on ${chainLine[2]}% of the --eval inputs after a chain of 2 lossy payloads, below ${(100 * above).toFixed(2)}%: a larger payload is shipped \\(budget 60%, [\\d.]+ KB\\), with which they agree on ([\\d.]+)%`).exec(cross.out);
  assert.ok(larger, cross.out);
  assert.ok(Number(larger[1]) / 100 >= above);
  const chainPayload = (r: ReleaseRecord) => r.payloads.filter((p) => p.toVersion === 3 && p.fromVersion === 2 && p.base !== r.versions[1].fingerprint);
  const kept = chainPayload(record);
  record = (await readRecord(join(work, 'kf-cross')))!;
  const fromState = chainPayload(record);
  assert.equal(fromState.length, 1);
  assert.ok(!fromState[0].exact && fromState[0].length > kept[0].length, 'a larger lossy payload from the state devices hold');

  // With no larger payload to try (the library's default), the keyframe: an exact payload from that state.
  await twoVersions('kf-exact');
  const site = join(work, 'kf-exact');
  const calib = await tempDir('nd-calib-');
  const res = await addVersion(site, versions[2], {
    policy: { method: 'topk', budget: '30%' }, key: await readPrivateKeyFile(key), expiresAt,
    keyframes: {
      threshold: above,
      agreement: async (l) => {
        const models = await exportJob(site, l.record, l.job, join(calib, `${l.job.id}-${sha256Of(l.bytes).slice(0, 8)}`));
        return (await measurePayload({ base: models.base, target: models.target, eval: inputs, state: [] }, l.bytes, () => {})).patched.agreement;
      },
    },
  });
  const onChain = res.drift?.find((d) => d.job === chainLine[1]);
  assert.ok(onChain && onChain.keyframe && onChain.chain === 2 && Math.abs((onChain.agreement ?? 0) - agreement) < 1e-9, JSON.stringify(res.drift));
  record = (await readRecord(site))!;
  const keyframe = chainPayload(record);
  assert.equal(keyframe.length, 1);
  assert.ok(keyframe[0].exact && keyframe[0].target === record.versions[2].fingerprint, 'the keyframe ends the chain at version 3 exactly');

  // At the agreement itself: kept.
  await twoVersions('kf-at');
  const at = await add('kf-at', 3, '--keyframe-below', String(agreement - 1e-9));
  assert.equal(at.code, 0, at.err);
  assert.match(at.out, /after a chain of 2 lossy payloads, at or above/);

  // Without --keyframe-below, the default threshold is used and printed.
  assert.equal((await ndiff('release', 'add', '--release', join(work, 'kf-default'), '--model', versions[0], '--model-id', 'clf', '--key', key)).code, 0);
  const dflt = await add('kf-default', 2);
  assert.equal(dflt.code, 0, dflt.err);
  assert.match(dflt.out, /keyframe threshold: 98\.00% top-1 agreement with the new version/);
  assert.match(dflt.out, /v2-from-v1: devices agree with version 2 on [\d.]+% of the --eval inputs after one lossy payload/);
});

test('--keyframe-below needs --eval and an agreement from 0 to 1', async () => {
  const r = await ndiff('release', 'add', '--release', join(work, 'nothing'), '--model', join(work, 'nothing'), '--model-id', 'x', '--key', join(work, 'none.pem'), '--method', 'topk', '--budget', '1%', '--keyframe-below', '0.9');
  assert.equal(r.code, 2);
  assert.match(r.err, /--keyframe-below is the least agreement .* add --eval INPUTS/);
});
