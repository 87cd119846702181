/**
 * The library's `release` calls (neural-diff) against `ndiff release`: the same steps, one by the
 * command, one by the library, on two release folders, leave byte-identical folders (every file:
 * the record, the blobs, the job files, the signed manifest; the clock fixed so that the times
 * the record and the manifest hold match), and the library's results hold the fields
 * `ndiff release ... --json` prints. A refusal is the typed error the command maps to its exit
 * code, the folder untouched, its message naming the library's option beside the command's flag.
 */
import { test, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { release, UsageError, type ReleaseJobExport, type ReleaseMeasurement, type RunJobResult } from 'neural-diff';
import { main } from '../cli/ndiff.ts';
import { inCliWords, type CliIO } from '../cli/common.ts';
import { loadPrivateKey } from '../src/sign/node-keys.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { baseAndTarget } from './helpers/models.ts';
import { perturbed } from './helpers/perturb.ts';
import { tempDir, treeBytes, writeStore } from './helpers/dirs.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { cnn, images } from './helpers/onnx-models.ts';

/** `ndiff` in this process; with `--json`, `doc` is the document it printed. */
async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  const out = stdout.join('\n');
  return { code, out, err: stderr.join('\n'), doc: (argv.includes('--json') ? JSON.parse(out) : undefined) as Record<string, unknown> };
}

/** The --json document as JSON reads it back (undefined fields dropped). */
const asJson = (x: unknown) => JSON.parse(JSON.stringify(x)) as unknown;

const EXPIRES = '2031-01-01T00:00:00.000Z';
const work = await tempDir('nd-lib-release-');
after(() => rm(work, { recursive: true, force: true }));
assert.equal((await ndiff('keygen', '--out', join(work, 'release'))).code, 0);
const keyFile = join(work, 'release.private.pem');

/** Versions 1..3 of the test model as TF.js folders. */
const versions: string[] = [];
{
  let model = baseAndTarget(1).base;
  for (let n = 1; n <= 3; n++) {
    if (n > 1) model = perturbed(model, 0.05, n);
    const dir = join(work, `v${n}`);
    await writeStore(dir, model);
    versions.push(dir);
  }
}

/** Both folders, every file by relative path, equal byte for byte. */
async function assertSameFolders(cliDir: string, libDir: string): Promise<void> {
  const [a, b] = [await treeBytes(cliDir), await treeBytes(libDir)];
  assert.deepEqual([...b.keys()], [...a.keys()], 'the same files');
  for (const [name, bytes] of a) assert.equal(b.get(name), bytes, `${name}: the same bytes`);
  assert.ok(a.has('manifest.json') && a.has('release.json'), 'a published release');
}

/** The clock fixed for the duration of `fn`: the record's addedAt and the manifest's createdAt are then the same in both runs. */
async function atFixedTime<T>(fn: () => Promise<T>): Promise<T> {
  mock.timers.enable({ apis: ['Date'], now: new Date('2030-06-01T12:00:00.000Z') });
  try {
    return await fn();
  } finally {
    mock.timers.reset();
  }
}

test('release.add, exact then top-k within a budget: the folder ndiff release add leaves, and its --json fields', async () => {
  const [cliDir, libDir] = [join(work, 'add', 'cli'), join(work, 'add', 'lib')];
  // The key as a path for the first version, as a KeyObject for the second.
  const key = loadPrivateKey(await readFile(keyFile, 'utf8'));
  const first = await atFixedTime(async () => [
    await ndiff('release', 'add', '--release', cliDir, '--model', versions[0], '--model-id', 'kws', '--key', keyFile, '--expires', EXPIRES, '--json'),
    await release.add({ release: libDir, model: versions[0], modelId: 'kws', key: keyFile, expires: EXPIRES }),
  ] as const);
  assert.equal(first[0].code, 0, first[0].err);
  await assertSameFolders(cliDir, libDir);
  const { warnings, ...doc } = first[1];
  assert.deepEqual(warnings, []);
  // The --json document is the result, its warnings in the command line's words.
  assert.deepEqual(asJson({ ...doc, warnings }), asJson(first[0].doc));
  assert.equal(doc.version, 1);

  const progress: string[] = [];
  const second = await atFixedTime(async () => [
    await ndiff('release', 'add', '--release', cliDir, '--model', versions[1], '--method', 'topk', '--budget', '2%', '--key', keyFile, '--expires', EXPIRES, '--json'),
    await release.add({ release: libDir, model: versions[1], method: 'topk', budget: '2%', key, expires: new Date(EXPIRES), onProgress: (l) => progress.push(l) }),
  ] as const);
  assert.equal(second[0].code, 0, second[0].err);
  await assertSameFolders(cliDir, libDir);
  const { warnings: lossy, ...doc2 } = second[1];
  assert.deepEqual(asJson({ ...doc2, warnings: lossy.map(inCliWords) }), asJson(second[0].doc));
  assert.equal(doc2.added, 1);
  // The warning the command prints on stderr, returned.
  assert.equal(lossy.length, 1);
  assert.match(lossy[0], /^payload v2-from-v1 is lossy \(top-k within 2%\): it carries [\d.]+% of the weight change/);
  // The library names its option (eval) with the flag beside it; the command shows the flag alone.
  assert.match(lossy[0], /add with eval \(--eval INPUTS\)/);
  assert.ok(second[0].err.includes(`warning: ${inCliWords(lossy[0])}`), second[0].err);
  assert.match(second[0].err, /add with --eval INPUTS/);
  assert.ok(progress.some((l) => l.startsWith('version 2 (')), progress.join('\n'));
});

test('release.add with plan, release.job (run, export, a payload taken back), release.publish: the folders ndiff leaves', async () => {
  const [cliDir, libDir] = [join(work, 'jobs', 'cli'), join(work, 'jobs', 'lib')];
  await atFixedTime(async () => {
    for (const [n, extra] of [[0, ['--model-id', 'kws']], [1, []]] as const) {
      assert.equal((await ndiff('release', 'add', '--release', cliDir, '--model', versions[n], ...extra, '--key', keyFile, '--expires', EXPIRES)).code, 0);
      await release.add({ release: libDir, model: versions[n], ...(extra.length ? { modelId: 'kws' } : {}), key: keyFile, expires: EXPIRES });
    }
    const plan = await ndiff('release', 'add', '--release', cliDir, '--model', versions[2], '--plan', '--json');
    assert.equal(plan.code, 0, plan.err);
    const planned = await release.add({ release: libDir, model: versions[2], plan: true });
    const { warnings: planWarnings, ...planDoc } = planned;
    // The job lines name the folder they were planned in.
    assert.deepEqual(asJson({ ...planDoc, warnings: planWarnings.map(inCliWords) }), JSON.parse(JSON.stringify(plan.doc).replaceAll(JSON.stringify(cliDir).slice(1, -1), JSON.stringify(libDir).slice(1, -1))));
    assert.deepEqual(planned.jobs?.map((j) => j.id), ['v3-from-v2', 'v3-from-v1']);

    // The first job run by its index with a budget of its own.
    const ran = await ndiff('release', 'job', '--release', cliDir, '--index', '0', '--budget', '3%', '--json');
    assert.equal(ran.code, 0, ran.err);
    const job = await release.job({ release: libDir, index: 0, budget: '3%' });
    const { job: planJob, warnings, ...jobDoc } = job;
    assert.deepEqual(asJson({ ...jobDoc, warnings: warnings.map(inCliWords) }), asJson(ran.doc));
    assert.equal(planJob.id, 'v3-from-v2');
    assert.equal((job as RunJobResult).payload?.exact, false);
    assert.equal(warnings.length, 1);
    assert.ok(ran.err.includes(`warning: ${warnings[0]}`));

    // The second exported, then its exact diff taken back as a trained payload would be.
    const [cliOut, libOut] = [join(work, 'jobs', 'export-cli'), join(work, 'jobs', 'export-lib')];
    const exported = await ndiff('release', 'job', '--release', cliDir, '--id', 'v3-from-v1', '--export', cliOut, '--json');
    assert.equal(exported.code, 0, exported.err);
    const ex = (await release.job({ release: libDir, id: 'v3-from-v1', export: libOut })) as ReleaseJobExport & { warnings: string[] };
    assert.deepEqual({ modelId: ex.modelId, sequence: ex.sequence, id: ex.id }, { modelId: 'kws', sequence: 3, id: 'v3-from-v1' });
    assert.deepEqual({ ...exported.doc, base: ex.base, teacher: ex.teacher }, asJson({ id: ex.id, base: ex.base, teacher: ex.teacher, modelId: ex.modelId, sequence: ex.sequence, warnings: ex.warnings.map(inCliWords) }));
    assert.deepEqual(await treeBytes(libOut), await treeBytes(cliOut), 'the same models exported');
    const payload = join(work, 'jobs', 'v3-from-v1.ndiff');
    const made = await ndiff('diff', '--base', ex.base, '--target', ex.teacher, '--budget', 'all', '--model-id', 'kws', '--sequence', '3', '--out', payload);
    assert.equal(made.code, 0, made.err);
    const taken = await ndiff('release', 'job', '--release', cliDir, '--id', 'v3-from-v1', '--payload', payload, '--json');
    assert.equal(taken.code, 0, taken.err);
    // The payload as bytes.
    const adopted = await release.job({ release: libDir, id: 'v3-from-v1', payload: new Uint8Array(await readFile(payload)) });
    const { job: _j, warnings: adoptedWarnings, ...adoptedDoc } = adopted;
    assert.deepEqual(asJson({ ...adoptedDoc, warnings: adoptedWarnings.map(inCliWords) }), asJson(taken.doc));

    const published = await ndiff('release', 'publish', '--release', cliDir, '--key', keyFile, '--expires', EXPIRES, '--json');
    assert.equal(published.code, 0, published.err);
    const pub = await release.publish({ release: libDir, key: keyFile, expires: EXPIRES });
    const { warnings: pubWarnings, ...pubDoc } = pub;
    assert.deepEqual(asJson({ ...pubDoc, warnings: pubWarnings.map(inCliWords) }), asJson(published.doc));
    assert.equal(pub.added, 2);
    assert.equal(pub.expiresAt, Date.parse(EXPIRES) / 1000);
  });
  await assertSameFolders(cliDir, libDir);
  assert.deepEqual(await release.show({ release: libDir }), JSON.parse(await readFile(join(libDir, 'release.json'), 'utf8')));
});

test('release.add with eval on an .onnx model: a refused lossy payload measured and reported as it is, a keyframe; the folders ndiff leaves', async () => {
  const [v1, v2] = [join(work, 'cnn-v1.onnx'), join(work, 'cnn-v2.onnx')];
  await writeFile(v1, cnn());
  await writeFile(v2, cnn(0.5, 60));
  const inputs = join(work, 'cnn-inputs');
  await mkdir(inputs);
  saveNpy(join(inputs, 'x.npy'), images(200, 2).inputs.x.values as Float32Array, [200, 1, 8, 8]);
  const [cliDir, libDir] = [join(work, 'eval', 'cli'), join(work, 'eval', 'lib')];
  const measured: string[] = [];
  const onMeasured = (m: ReleaseMeasurement) => measured.push(`${m.job.id} ${m.closeness.examples} ${m.keyframeBelow} ${m.closeness.movesAway}`);
  const [cli, lib] = await atFixedTime(async () => {
    assert.equal((await ndiff('release', 'add', '--release', cliDir, '--model', v1, '--model-id', 'cnn', '--key', keyFile, '--expires', EXPIRES)).code, 0);
    await release.add({ release: libDir, model: v1, modelId: 'cnn', key: keyFile, expires: EXPIRES });
    const before = await treeBytes(libDir);
    // Keyframes off: the lossy payload is measured (reported as it is), found further from v2 than v1 is, and refused.
    const away = await ndiff('release', 'add', '--release', cliDir, '--model', v2, '--method', 'topk', '--budget', '300', '--eval', inputs, '--keyframe-below', '0', '--key', keyFile, '--expires', EXPIRES);
    assert.equal(away.code, 2, away.err);
    await assert.rejects(release.add({ release: libDir, model: v2, method: 'topk', budget: 300, eval: inputs, keyframeBelow: 0, key: keyFile, expires: EXPIRES, onMeasured }), (e: unknown) => e instanceof UsageError && /nothing was published .* takes the model further from version 2/.test(e.message));
    assert.deepEqual(measured, ['v2-from-v1 200 0 true']);
    assert.deepEqual(await treeBytes(libDir), before, 'the folder as it was');
    measured.length = 0;
    return [
      await ndiff('release', 'add', '--release', cliDir, '--model', v2, '--method', 'topk', '--budget', '300', '--eval', inputs, '--key', keyFile, '--expires', EXPIRES, '--json'),
      await release.add({ release: libDir, model: v2, method: 'topk', budget: 300, eval: inputs, key: keyFile, expires: EXPIRES, onMeasured }),
    ] as const;
  });
  assert.equal(cli.code, 0, cli.err);
  await assertSameFolders(cliDir, libDir);
  const { warnings, ...doc } = lib;
  assert.deepEqual(asJson({ ...doc, warnings: warnings.map(inCliWords) }), asJson(cli.doc));
  // Below the default 98% agreement the chain got its keyframe, the exact payload: no lossy payload left to measure before signing.
  assert.equal(lib.keyframeBelow, 0.98);
  assert.equal(lib.drift?.[0].keyframe, true);
  assert.deepEqual(measured, []);
});

test('a refused release call throws the typed error naming the option and the flag, the folder untouched', async () => {
  const dir = join(work, 'refused');
  await release.add({ release: dir, model: versions[0], modelId: 'kws', key: keyFile, expires: EXPIRES });
  const before = await treeBytes(dir);
  const refusals: [() => Promise<unknown>, RegExp][] = [
    [() => release.add({ release: dir, model: versions[1], method: 'topk', key: keyFile }), /method topk \(--method topk\) needs budget \(--budget\)/],
    [() => release.add({ release: dir, model: versions[1], budget: '2%', key: keyFile }), /budget \(--budget\) applies to method topk/],
    [() => release.add({ release: dir, model: versions[1] }), /key \(--key\) is needed to publish/],
    [() => release.add({ release: dir, model: versions[1], modelId: 'other', key: keyFile }), /drop modelId \(--model-id\)/],
    [() => release.add({ release: dir, model: versions[1], plan: true, keyframeBelow: 0.5 }), /keyframeBelow \(--keyframe-below\) is the least agreement/],
    [() => release.job({ release: dir, id: 'v2-from-v1', index: 0 }), /name the job with id \(--id v3-from-v1\) or index \(--index/],
    [() => release.publish({ release: dir, key: keyFile, accept: ['zz'] }), /accept \(--accept\) "zz": expected the SHA-256 of a payload/],
    [() => release.run({ release: dir, queue: 'redis://127.0.0.1:1', attempts: 0 }), /attempts \(--attempts\) must be a whole number from 1 to 100, found 0/],
  ];
  for (const [call, message] of refusals) {
    await assert.rejects(call(), (e: unknown) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.equal(e.code, 'ND_USAGE');
      assert.match(e.message, message);
      return true;
    });
  }
  assert.deepEqual(await treeBytes(dir), before, 'the folder as it was');
  // A first add without a model id: the option named first, the flag beside it.
  const fresh = join(work, 'refused-first');
  await assert.rejects(release.add({ release: fresh, model: versions[0], key: keyFile }), (e: unknown) => e instanceof UsageError && /name the model with modelId \(--model-id\)/.test(e.message));
  // The command's message keeps the flag.
  const cli = await ndiff('release', 'add', '--release', fresh, '--model', versions[0], '--key', keyFile);
  assert.equal(cli.code, 2);
  assert.match(cli.err, /name the model with --model-id \(the id every payload carries/);
  assert.doesNotMatch(cli.err, /modelId/);
});

test('release.worker runs a plan\'s jobs from the queue as ndiff worker does: planned, run by release.run, published; its options refused as the flags are', { skip: redisSkip, timeout: 300_000 }, async (t) => {
  await assert.rejects(release.worker({ queue: 'redis://127.0.0.1:1', concurrency: 0 }), (e: unknown) => e instanceof UsageError && /concurrency \(--concurrency\) must be a whole number from 1 to 64, found 0/.test(e.message));
  await assert.rejects(release.worker({ queue: 'http://queue', concurrency: 1 }), (e: unknown) => e instanceof UsageError && /expected a redis:\/\/ or rediss:\/\/ URL/.test(e.message));
  const redis = await startRedis({ signal: t.signal });
  const dir = join(work, 'worker');
  const lines: string[] = [];
  const worker = await release.worker({ queue: redis.url, onProgress: (l) => lines.push(l) });
  try {
    assert.ok(worker.threads >= 1);
    await release.add({ release: dir, model: versions[0], modelId: 'kws', key: keyFile, expires: EXPIRES });
    await release.add({ release: dir, model: versions[1], key: keyFile, expires: EXPIRES });
    const planned = await release.add({ release: dir, model: versions[2], plan: true });
    const ran = await release.run({ release: dir, queue: redis.url, key: keyFile, expires: EXPIRES });
    assert.equal(ran.jobs, planned.jobs?.length);
    assert.equal(ran.release, 3);
    assert.ok(lines.some((l) => l.includes('v3-from-v2')), lines.join('\n'));
    const record = await release.show({ release: dir });
    assert.equal(record.pending, null);
    assert.deepEqual(record.payloads.filter((p) => p.toVersion === 3).map((p) => p.fromVersion).sort(), [1, 2]);
  } finally {
    await worker.close();
    await redis.close();
  }
});
