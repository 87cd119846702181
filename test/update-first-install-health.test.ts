/**
 * A device with no model yet installs the full model, and the health check rejects it. There is
 * no previous version to go back to: the device goes back to holding no model (as before the
 * run), and the run says the update failed (exit 5), never "up to date" over a model that failed
 * its health check, in this run or the next. Killed while that health check runs, the install is
 * found unconfirmed by the next commands, as one over a previous model is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { join } from 'node:path';
import { runNdiff as ndiff, ndiffProcess } from './helpers/ndiff-run.ts';
import { writeFile } from 'node:fs/promises';
import { updateModel } from '../src/io/updater/node-updater.ts';
import { releaseChain } from './helpers/release-chain.ts';
import { serveRelease } from './helpers/release-server.ts';

const exists = async (p: string) => (await stat(p).catch(() => undefined)) !== undefined;

test('a first install that fails its health check: no model is left, and the run failed, this time and the next', async () => {
  const chain = await releaseChain(2);
  const server = await serveRelease(chain.releaseDir);
  try {
    const model = join(chain.work, 'fresh', 'model');
    await mkdir(join(model, '..'), { recursive: true });
    const common = { model, modelId: 'kws', urls: [server.url], trustedKeys: [chain.keys.publicKeyPem], timeoutMs: 5000 };
    const r = await updateModel({ ...common, healthCheck: () => false });
    assert.deepEqual(r.steps.map((s) => [s.kind, s.outcome]), [['full', 'health-check-failed']]);
    assert.match(r.steps[0].error?.message ?? '', /no model before/);
    assert.equal(r.status, 'failed', 'never up to date over a model that failed its health check');
    // It failed in this run, not "on this device before".
    assert.match(r.error?.message ?? '', /1 way\(s\) failed one in this run and are not tried again/);
    assert.doesNotMatch(r.error?.message ?? '', /before/);
    assert.equal(r.fingerprint, undefined);
    assert.equal(await exists(model), false, 'no model left, as before the run');

    // The CLI, on a fresh path: exit 5, and the next run says why nothing is tried.
    const pub = join(chain.work, 'release.public.pem');
    await writeFile(pub, chain.keys.publicKeyPem);
    const device = join(chain.work, 'fresh-cli', 'model');
    const from = ['--model', device, '--from', server.url, '--public-key', pub, '--model-id', 'kws'];
    const first = await ndiff('update', ...from, '--health-check', 'false');
    assert.equal(first.code, 5, first.out + first.err);
    assert.doesNotMatch(first.out, /up to date/);
    assert.equal(await exists(device), false);
    const next = await ndiff('update', ...from);
    assert.equal(next.code, 5, next.out + next.err);
    assert.match(next.err, /failed a health check on this device before/);
    assert.equal(await exists(device), false);
  } finally {
    await server.close();
    await rm(chain.work, { recursive: true, force: true });
  }
});

test('a first install killed while its health check runs: the next commands find it unconfirmed, and say so', { timeout: 120_000 }, async () => {
  const chain = await releaseChain(2);
  const server = await serveRelease(chain.releaseDir);
  try {
    const pub = join(chain.work, 'release.public.pem');
    await writeFile(pub, chain.keys.publicKeyPem);
    const device = join(chain.work, 'killed', 'model');
    const from = ['--model', device, '--from', server.url, '--public-key', pub, '--model-id', 'kws'];
    const killed = (await ndiffProcess(['update', ...from, '--health-check', 'kill -9 $PPID'])).signal;
    assert.equal(killed, 'SIGKILL');
    assert.equal(await exists(device), true, 'killed after the switch: the new model is in place');

    const check = await ndiff('update', ...from, '--check', '--json');
    assert.equal(check.code, 0, check.err);
    assert.equal((JSON.parse(check.out) as { pendingUpdate?: boolean }).pendingUpdate, true, 'the check says an update waits to be finished');
    assert.equal(await exists(device), true, 'the check changes nothing');

    // Without a health check: a full install records no journal: rolled back (to no model), said
    // so, and installed again; never "up to date" over a model no health check passed.
    const plain = await ndiff('update', ...from, '--json');
    assert.equal(plain.code, 0, plain.err);
    const doc = JSON.parse(plain.out) as { status: string; pendingUpdate?: { outcome: string }; steps: { outcome: string }[] };
    assert.equal(doc.pendingUpdate?.outcome, 'rolled-back');
    assert.match(plain.err, /never confirmed/);
    assert.equal(doc.status, 'updated');
    assert.deepEqual(doc.steps.map((s) => s.outcome), ['installed']);
  } finally {
    await server.close();
    await rm(chain.work, { recursive: true, force: true });
  }
});

test('a model folder given with a trailing slash (as a shell completes it) takes a full install, first or over a model', { timeout: 120_000 }, async () => {
  const chain = await releaseChain(2);
  const server = await serveRelease(chain.releaseDir);
  try {
    const pub = join(chain.work, 'release.public.pem');
    await writeFile(pub, chain.keys.publicKeyPem);
    for (const held of [undefined, chain.versions[0]]) {
      const device = join(chain.work, held ? 'over' : 'first', 'model');
      await mkdir(join(device, '..'), { recursive: true });
      if (held) await cp(held, device, { recursive: true });
      // Over a model: its payload fails the health check, so the full model is installed.
      const r = await ndiff('update', '--model', `${device}/`, '--from', server.url, '--public-key', pub, '--model-id', 'kws', '--json', ...(held ? ['--health-check', 'test ! -e "$NDIFF_MODEL/.ndiff-journal.json"'] : []));
      assert.equal(r.code, 0, r.out + r.err);
      if (held) assert.deepEqual((JSON.parse(r.out) as { steps: { kind: string; outcome: string }[] }).steps.map((s) => [s.kind, s.outcome]), [['payload', 'health-check-failed'], ['full', 'installed']]);
      assert.equal((JSON.parse(r.out) as { status: string }).status, 'updated');
      assert.equal(await fingerprintStore(await getHasher(), await openTfjsModelDir(device)).fingerprint, chain.fingerprints[1]);
      assert.deepEqual((await readdir(device)).filter((n) => /ndiff-(previous|incoming|first|retired)/.test(n)), [], 'nothing of the install left inside the model folder');
      assert.deepEqual((await readdir(join(device, '..'))).filter((n) => /ndiff-(previous|incoming|first|retired)/.test(n)), []);
    }
  } finally {
    await server.close();
    await rm(chain.work, { recursive: true, force: true });
  }
});
