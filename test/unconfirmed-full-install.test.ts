/**
 * A full install switched in and left unconfirmed: `ndiff update --health-check CMD` is killed
 * (SIGKILL) while its health check runs on the full model it just switched in (the device held a
 * model no payload starts from). The device runs the new version, the previous one kept beside it
 * (`<model>.ndiff-previous`). A check (`ndiff update --check`, `Updater.check()`) changes nothing:
 * it says an update waits to be finished, and leaves the model and the kept version as they are.
 * `ndiff apply` and `ndiff update` finish it first, with their health check, and say which way.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNdiff as run, ndiffProcess } from './helpers/ndiff-run.ts';
import { validateManifest } from '../src/updater/manifest.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { valuePair } from './helpers/structural-pairs.ts';
import { fingerprintOf, writeModel } from './helpers/model-on-disk.ts';

const exists = async (p: string) => (await stat(p).catch(() => undefined)) !== undefined;

describe('a full install left unconfirmed by a kill during its health check', () => {
  let work: string;
  let server: ReleaseServer;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'nd-unconfirmed-full-'));
    await mkdir(join(work, 'sites'));
    assert.equal((await run('keygen', '--out', join(work, 'k'))).code, 0);
    server = await serveRelease(join(work, 'sites'));
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const format of ['tfjs', 'onnx'] as const) {
    test(`${format === 'tfjs' ? 'a TF.js folder' : 'an .onnx file'}: ndiff update --check says so and changes nothing; ndiff apply and ndiff update finish it first`, { timeout: 300_000 }, async () => {
      const pair = valuePair(format, 1);
      const file = format === 'tfjs' ? '' : 'model.onnx';
      const [v1, v2] = ['v1', 'v2'].map((v) => join(work, format, v, file));
      await writeModel(v1, pair, 'base');
      await writeModel(v2, pair, 'target');
      const fp2 = await fingerprintOf(v2, format);
      const site = join(work, 'sites', format);
      const pub = join(work, 'k.public.pem');
      for (const [v, extra] of [[v1, ['--model-id', 'm']], [v2, []]] as const) {
        const add = await run('release', 'add', '--release', site, '--model', v, ...extra, '--key', join(work, 'k.private.pem'), '--expires', '30d');
        assert.equal(add.code, 0, add.err);
      }
      assert.equal(validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed).payloads.length, 1);

      // The device holds a model no payload starts from: the update installs the full model, and
      // is killed while the health check runs on it.
      const stranger = valuePair(format, 2);
      const device = join(work, format, 'device', format === 'tfjs' ? 'model' : file);
      await writeModel(device, stranger, 'base');
      const fp0 = await fingerprintOf(device, format);
      const from = ['--model', device, '--from', `${server.url}${format}/`, '--public-key', pub, '--model-id', 'm'];
      const killed = await ndiffProcess(['update', ...from, '--health-check', 'kill -9 $PPID']);
      assert.equal(killed.signal, 'SIGKILL', killed.stderr);
      assert.equal(await fingerprintOf(device, format), fp2, 'killed after the switch: the device runs v2');
      assert.ok(await exists(device + '.ndiff-previous'), 'the previous model is kept beside it');
      assert.equal(await fingerprintOf(device + '.ndiff-previous', format), fp0);

      // A check changes nothing: it says an update waits, the model and the kept version stay.
      const check = await run('update', ...from, '--check', '--json');
      assert.equal(check.code, 0, check.err);
      const doc = JSON.parse(check.out) as { fingerprint?: string; pendingUpdate?: boolean };
      assert.equal(doc.pendingUpdate, true, 'the check says an update waits to be finished');
      assert.equal(doc.fingerprint, fp2, 'the check reads the version in place');
      assert.equal(await fingerprintOf(device, format), fp2, 'no rollback by a check');
      assert.ok(await exists(device + '.ndiff-previous'), 'the kept version is still there');
      const words = await run('update', ...from, '--check');
      assert.equal(words.code, 0, words.err);
      assert.match(words.out, /never confirmed .*a full install \(which records no journal\) is rolled back and installed again/);

      // ndiff apply finishes it first, as an update does: its health check fails on the version
      // in place, so the full install is rolled back, and said so (then the payload, for version 1,
      // does not fit the model put back).
      const other = join(work, format, 'device-apply');
      await cp(join(work, format, 'device'), other, { recursive: true });
      const otherModel = join(other, format === 'tfjs' ? 'model' : file);
      const payload = join(site, validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed).payloads[0].file);
      const applied = await run('apply', '--model', otherModel, '--patch', payload, '--public-key', pub, '--health-check', 'false', '--json');
      assert.match(applied.err, /a full install was interrupted after its switch .*the health check failed .*rolled back to the previous version/);
      assert.equal(await fingerprintOf(otherModel, format), fp0, 'rolled back to the model before the install');
      assert.equal(await exists(otherModel + '.ndiff-previous'), false);
      assert.equal(applied.code, 4, applied.err);

      // The next update with a health check finishes it, and says so.
      const confirmed = await run('update', ...from, '--health-check', 'true', '--json');
      assert.equal(confirmed.code, 0, confirmed.err);
      const result = JSON.parse(confirmed.out) as { status: string; pendingUpdate?: { outcome: string } };
      assert.equal(result.pendingUpdate?.outcome, 'confirmed');
      assert.equal(result.status, 'up-to-date');
      assert.equal(await fingerprintOf(device, format), fp2);
      assert.equal(await exists(device + '.ndiff-previous'), false);
    });
  }
});

describe('ndiff apply while an update\'s full install runs its health check', () => {
  let work: string;
  let server: ReleaseServer;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'nd-install-race-'));
    await mkdir(join(work, 'sites'));
    assert.equal((await run('keygen', '--out', join(work, 'k'))).code, 0);
    server = await serveRelease(join(work, 'sites'));
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const format of ['tfjs', 'onnx'] as const) {
    test(`${format === 'tfjs' ? 'a TF.js folder' : 'an .onnx file'}: the apply is refused as another writer, and the install finishes`, { timeout: 300_000 }, async () => {
      const pair = valuePair(format, 1);
      const file = format === 'tfjs' ? '' : 'model.onnx';
      const [v1, v2] = ['v1', 'v2'].map((v) => join(work, format, v, file));
      await writeModel(v1, pair, 'base');
      await writeModel(v2, pair, 'target');
      const fp2 = await fingerprintOf(v2, format);
      const site = join(work, 'sites', format);
      const pub = join(work, 'k.public.pem');
      for (const [v, extra] of [[v1, ['--model-id', 'm']], [v2, []]] as const) {
        const add = await run('release', 'add', '--release', site, '--model', v, ...extra, '--key', join(work, 'k.private.pem'), '--expires', '30d');
        assert.equal(add.code, 0, add.err);
      }
      const payload = join(site, validateManifest((JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: unknown }).signed).payloads[0].file);
      const device = join(work, format, 'device', format === 'tfjs' ? 'model' : file);
      await writeModel(device, valuePair(format, 2), 'base');
      const go = join(work, format, 'go');
      const update = ndiffProcess(['update', '--model', device, '--from', `${server.url}${format}/`, '--public-key', pub, '--model-id', 'm', '--health-check', `while [ ! -e '${go}' ]; do sleep 0.1; done`]);
      let applied: Awaited<ReturnType<typeof run>>;
      let seen: boolean;
      try {
        // The install switched in and waits in its health check.
        while (!(await exists(device + '.ndiff-previous'))) await new Promise((r) => setTimeout(r, 100));
        applied = await run('apply', '--model', device, '--patch', payload, '--public-key', pub, '--health-check', 'false');
        seen = await exists(device + '.ndiff-previous');
      } finally {
        await writeFile(go, '');
      }
      assert.equal(applied.code, 7, applied.err);
      assert.match(applied.err, /another apply or update \(pid \d+\) is updating/);
      assert.ok(seen, 'the running install is left alone');
      const done = await update;
      assert.equal(done.code, 0, done.stderr);
      assert.equal(await fingerprintOf(device, format), fp2);
      assert.equal(await exists(device + '.ndiff-previous'), false);
    });
  }
});
