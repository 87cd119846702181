/**
 * Learned (training) jobs on the job engine: `release add --plan --method sparse --train DATA
 * --eval INPUTS` plans a job per edge whose data, eval inputs and teacher are named by content; a
 * real `ndiff worker` trains it with `ndiff train`'s front and reports each epoch as the job's
 * progress (`release status` shows it); `release run` measures the payload on the eval inputs
 * itself before signing. A worker killed mid-training: the job is taken again and the release
 * publishes the very bytes `ndiff train` writes on one machine with the same options and seed. A
 * forged result (its closeness claim inflated, or its payload swapped for a worse one under the
 * same claim) is refused by the run's check and by publish. A real `redis-server`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { seededRandom } from '../src/core/random.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { sha256Of } from '../src/release/blobs.ts';
import { readPrivateKeyFile, signPayload } from '../src/sign/node-keys.ts';
import { runPlanOnQueue } from '../src/release/queue/plan.ts';
import { checkResult } from '../src/release/queue/check-process.ts';
import { bullConnection, JOBS_QUEUE, loadBullmq } from '../src/release/queue/engine.ts';
import { jobFiles } from '../src/release/jobs.ts';
import { checkTicket, runTicket } from '../src/release/ticket.ts';
import { publishReleaseFolder } from '../src/release/publish.ts';
import type { JobResult } from '../src/release/record.ts';
import { initBackend } from '../src/engine/backend.ts';
import { tempDir } from './helpers/dirs.ts';
import { inAnHour } from './helpers/release-chain.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { killGroup, startWorker, type NdiffChild } from './helpers/queue-processes.ts';
import { ENGINE_TEST_TIMEOUT, orTestEnd, until } from './helpers/waits.ts';

const EPOCHS = '6';
const TRAIN = ['--method', 'sparse', '--budget', '10%', '--epochs', EPOCHS, '--tune', 'off', '--seed', '3'];

/** A small classifier, v2 every weight moved (a retrain); training and held-out eval inputs. */
async function models(dir: string): Promise<void> {
  const make = () => tf.sequential({ layers: [tf.layers.dense({ inputShape: [16], units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }), tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) })] });
  const v1 = make();
  await v1.save(fileSystemIO(join(dir, 'v1')));
  const r = seededRandom(7);
  v1.setWeights(v1.getWeights().map((w) => tf.tidy(() => w.add(tf.tensor(Float32Array.from({ length: w.size }, () => (r() - 0.5) * 0.3), w.shape)))));
  await v1.save(fileSystemIO(join(dir, 'v2')));
  await saveNpy(join(dir, 'inputs', 'x.npy'), Float32Array.from({ length: 400 * 16 }, () => r() * 2 - 1), [400, 16]);
  await saveNpy(join(dir, 'held-out', 'x.npy'), Float32Array.from({ length: 200 * 16 }, () => r() * 2 - 1), [200, 16]);
}

/** A release of v1 with v2 planned as learned jobs; the key; and the payload `ndiff train` writes on one machine for the edge. */
async function plannedLearned(oneMachine = true, teacher = false): Promise<{ dir: string; release: string; key: string; job: string; local?: Uint8Array }> {
  await initBackend('wasm');
  const dir = await tempDir('nd-queue-learned-');
  await models(dir);
  const release = join(dir, 'site');
  let r = await runNdiff('keygen', '--out', join(dir, 'k'));
  assert.equal(r.code, 0, r.err);
  const key = join(dir, 'k.private.pem');
  r = await runNdiff('release', 'add', '--release', release, '--model', join(dir, 'v1'), '--model-id', 'clf', '--key', key);
  assert.equal(r.code, 0, r.err);
  r = await runNdiff('release', 'add', '--release', release, '--model', join(dir, 'v2'), '--plan', ...TRAIN, '--train', join(dir, 'inputs'), '--eval', join(dir, 'held-out'), ...(teacher ? ['--teacher', join(dir, 'v2')] : []));
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split('\n').map((l) => JSON.parse(l) as { id: string; method: string; inputs: string[] });
  // The id says what the job is; its inputs name the data by content.
  assert.deepEqual(lines.map((l) => [l.id, l.method]), [['v2-from-v1-train-sparse', 'sparse']]);
  const data = sha256Of(new Uint8Array(await readFile(join(dir, 'inputs', 'x.npy'))));
  const held = sha256Of(new Uint8Array(await readFile(join(dir, 'held-out', 'x.npy'))));
  assert.ok(lines[0].inputs.includes(`blobs/${data}`) && lines[0].inputs.includes(`blobs/${held}`), lines[0].inputs.join(' '));
  if (!oneMachine) return { dir, release, key, job: lines[0].id };
  // One machine: the edge's models exported, and `ndiff train` with the same options and seed.
  const edge = join(dir, 'edge');
  r = await runNdiff('release', 'job', '--release', release, '--id', lines[0].id, '--export', edge);
  assert.equal(r.code, 0, r.err);
  r = await runNdiff('train', '--base', join(edge, 'base'), '--teacher', join(edge, 'target'), '--train', join(dir, 'inputs'), ...TRAIN, '--threads', '1', '--model-id', 'clf', '--sequence', '2', '--out', join(dir, 'local.ndiff'));
  assert.equal(r.code, 0, r.err);
  return { dir, release, key, job: lines[0].id, local: new Uint8Array(await readFile(join(dir, 'local.ndiff'))) };
}

test('a learned job on the queue: a worker killed mid-training, the job taken again, the payload checked and published byte for byte as ndiff train writes it', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const p = await plannedLearned();
  const redis = await startRedis({ signal: t.signal });
  const bull = await loadBullmq();
  const events = new bull.QueueEvents(JOBS_QUEUE, { connection: bullConnection(redis.url) });
  const epochs: string[] = [];
  let firstEpoch!: () => void;
  const epochSeen = new Promise<void>((resolve) => { firstEpoch = resolve; });
  events.on('progress', ({ data }) => {
    const line = (data as { line?: string }).line ?? '';
    if (/: epoch \d+\//.test(line)) {
      epochs.push(line);
      firstEpoch();
    }
  });
  await events.waitUntilReady();
  const lines: string[] = [];
  let first: NdiffChild | undefined;
  let second: NdiffChild | undefined;
  try {
    const run = runPlanOnQueue(p.release, redis.url, { publish: { key: await readPrivateKeyFile(p.key), expiresAt: inAnHour() }, onProgress: (l) => lines.push(l), checkConcurrency: 1 });
    run.catch(() => {});
    first = startWorker(redis.url);
    await orTestEnd(t.signal, 'the first worker to report an epoch', epochSeen);
    await killGroup(first);
    assert.match(epochs[0], new RegExp(`^${p.job}: epoch 1/${EPOCHS}: `), epochs.join('\n'));
    // The epoch is the job's progress on the queue: status shows it while the job is held by the dead worker.
    const status = await runNdiff('release', 'status', '--release', p.release, '--queue', redis.url);
    assert.match(status.out, new RegExp(`^${p.job} +running +1 +${p.job}: epoch \\d+/${EPOCHS}: `, 'm'), status.out);
    second = startWorker(redis.url);
    const res = await orTestEnd(t.signal, () => `the run to publish (run: ${lines.slice(-3).join(' | ')})`, run);
    assert.equal(res.published?.added, 1, lines.join('\n'));
    const said = lines.join('\n');
    assert.match(said, new RegExp(`^${p.job}: started again by worker [^ ]+:${second.pid} \\(attempt 2\\)$`, 'm'), said);
    assert.match(said, new RegExp(`^${p.job}: checked, passes publish's checks$`, 'm'), said);
    const manifest = validateManifest(JSON.parse(await readFile(join(p.release, 'manifest.json'), 'utf8')).signed);
    const learned = manifest.payloads.filter((x) => x.toVersion === 2);
    // Publish signs the unsigned payload into its blob (Ed25519 is deterministic: the same bytes and key, the same envelope).
    const signed = signPayload(p.local!, await readPrivateKeyFile(p.key));
    assert.deepEqual(learned.map((x) => [x.method, x.exact, x.sha256]), [['sparse', false, sha256Of(signed)]], 'the published payload is the one ndiff train writes on one machine');
    assert.deepEqual(new Uint8Array(await readFile(join(p.release, learned[0].file))), signed);
    // The plan's data and eval inputs are not served once it is published (the versions' files are).
    const data = sha256Of(new Uint8Array(await readFile(join(p.dir, 'inputs', 'x.npy'))));
    assert.equal(existsSync(join(p.release, 'blobs', data)), false, 'the training data left the release folder');
  } finally {
    if (first) await killGroup(first);
    if (second) await killGroup(second);
    await events.close();
    await redis.close();
  }
});

test('a forged learned result is refused: its closeness claim inflated, its payload swapped for a worse one under the same claim, or for a better one over the plan\'s budget', { timeout: ENGINE_TEST_TIMEOUT }, async () => {
  // The teacher named (the new version again, stored as blobs of its own in the plan): the job trains toward it.
  const p = await plannedLearned(true, true);
  const planned = JSON.parse(await readFile(join(p.release, 'release.json'), 'utf8')) as { pending: { jobs: { policy: { learned?: { teacher?: { files: unknown[] } } } }[] } };
  assert.equal(planned.pending.jobs[0].policy.learned?.teacher?.files.length, 2, 'the teacher\'s files are named in the job');
  // The one-machine path of a release: the job run here, as `release job` runs it.
  let r = await runNdiff('release', 'job', '--release', p.release, '--id', p.job);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /is lossy \(learned within 10%\): .* on the plan's 200 eval inputs base \+ payload has top-1 agreement [\d.]+% with the teacher/);
  const files = jobFiles(p.release, p.job);
  const honest = JSON.parse(await readFile(files.result, 'utf8')) as JobResult;
  const payload = new Uint8Array(await readFile(files.payload));
  assert.deepEqual(payload, p.local!, 'release job trains the bytes ndiff train writes');
  const claim = honest.closeness!;
  assert.equal(claim.metric, 'top1');
  assert.ok(claim.agreement !== null && claim.agreement < 0.99, `the learned payload leaves room to inflate its claim: ${JSON.stringify(claim)}`);
  const verdict = await checkResult({ releaseDir: p.release, job: p.job, accept: [] });
  assert.ok('entry' in verdict, JSON.stringify(verdict));

  // The claim inflated by 1 point (twice the tolerance).
  await writeFile(files.result, JSON.stringify({ ...honest, closeness: { ...claim, agreement: (claim.agreement as number) + 0.01 } }));
  let v = await checkResult({ releaseDir: p.release, job: p.job, accept: [] });
  assert.ok('refused' in v, JSON.stringify(v));
  assert.match(v.refused, /its result claims top-1 agreement [\d.]+% with the teacher on the job's 200 eval inputs, publish measured top-1 agreement [\d.]+%: worse than claimed by more than 0\.5 points of agreement/);
  await assert.rejects(publishReleaseFolder(p.release, { key: await readPrivateKeyFile(p.key), expiresAt: inAnHour() }), /worse than claimed/);

  // The payload swapped for a top-k payload of a smaller budget (a valid payload of the edge), its result rewritten to match, the claim kept.
  r = await runNdiff('diff', '--base', join(p.dir, 'edge', 'base'), '--target', join(p.dir, 'edge', 'target'), '--method', 'topk', '--budget', '5%', '--model-id', 'clf', '--sequence', '2', '--out', join(p.dir, 'worse.ndiff'));
  assert.equal(r.code, 0, r.err);
  const worse = new Uint8Array(await readFile(join(p.dir, 'worse.ndiff')));
  const { decodePayload } = await import('../src/core/format.ts');
  const header = decodePayload(worse).header;
  await writeFile(files.payload, worse);
  await writeFile(files.result, JSON.stringify({ ...honest, payload: { ...honest.payload, length: worse.length, sha256: sha256Of(worse), target: header.targetFingerprint } }));
  v = await checkResult({ releaseDir: p.release, job: p.job, accept: [] });
  assert.ok('refused' in v, JSON.stringify(v));
  assert.match(v.refused, /publish measured top-1 agreement [\d.]+%: worse than claimed/);
  await assert.rejects(publishReleaseFolder(p.release, { key: await readPrivateKeyFile(p.key), expiresAt: inAnHour() }), /worse than claimed/);

  // A better payload over the plan's budget (a top-k payload of 40%), its result rewritten to match, the claim kept: refused by its size.
  r = await runNdiff('diff', '--base', join(p.dir, 'edge', 'base'), '--target', join(p.dir, 'edge', 'target'), '--method', 'topk', '--budget', '40%', '--model-id', 'clf', '--sequence', '2', '--out', join(p.dir, 'larger.ndiff'));
  assert.equal(r.code, 0, r.err);
  const larger = new Uint8Array(await readFile(join(p.dir, 'larger.ndiff')));
  await writeFile(files.payload, larger);
  await writeFile(files.result, JSON.stringify({ ...honest, payload: { ...honest.payload, length: larger.length, sha256: sha256Of(larger), target: decodePayload(larger).header.targetFingerprint } }));
  v = await checkResult({ releaseDir: p.release, job: p.job, accept: [] });
  assert.ok('refused' in v, JSON.stringify(v));
  assert.match(v.refused, /its payload is \d+ bytes, over the plan's budget of \d+ bytes \(10% of the base as stored\)/);
});

test('a forged learned result on the queue: a worker that inflates its closeness claim is refused by the run, and nothing is signed', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const p = await plannedLearned(false);
  const redis = await startRedis({ signal: t.signal });
  const bull = await loadBullmq();
  const cache = await tempDir('nd-queue-forger-');
  // A worker that trains honestly, then claims 5 points more agreement than it measured.
  const forger = new bull.Worker(JOBS_QUEUE, async (job) => {
    const data = job.data as { ticket: unknown; source: string };
    const out = await runTicket(checkTicket(data.ticket), { source: data.source, cacheDir: cache });
    const c = out.result.closeness!;
    return { result: { ...out.result, closeness: { ...c, agreement: (c.agreement as number) + 0.05 } }, payload: Buffer.from(out.payload!).toString('base64') };
  }, { connection: bullConnection(redis.url), lockDuration: 60_000 });
  forger.on('error', () => {});
  const lines: string[] = [];
  try {
    const run = runPlanOnQueue(p.release, redis.url, { publish: { key: await readPrivateKeyFile(p.key), expiresAt: inAnHour() }, onProgress: (l) => lines.push(l), checkConcurrency: 1 });
    await assert.rejects(orTestEnd(t.signal, 'the run to end', run), /refused/);
    assert.match(lines.join('\n'), new RegExp(`^${p.job}: refused by publish's checks: job ${p.job}: its result claims top-1 agreement [\\d.]+% with the teacher on the job's 200 eval inputs, publish measured top-1 agreement [\\d.]+%: worse than claimed`, 'm'), lines.join('\n'));
    const status = await runNdiff('release', 'status', '--release', p.release, '--queue', redis.url);
    assert.match(status.out, new RegExp(`^${p.job} +refused`, 'm'), status.out);
    const manifest = validateManifest(JSON.parse(await readFile(join(p.release, 'manifest.json'), 'utf8')).signed);
    assert.equal(manifest.release, 1, 'nothing was signed');
  } finally {
    await forger.close();
    await redis.close();
  }
});
