/**
 * An update killed during its health check is finished by the next `ndiff update
 * --health-check`: when the check fails on it now, it is rolled back, and that version is then
 * what a failed health check makes of any update: remembered, never applied again by the same run
 * (which would run the failing check on it a second time) nor by later ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNdiff as run, ndiffProcess } from './helpers/ndiff-run.ts';
import { serveRelease } from './helpers/release-server.ts';
import { valuePair } from './helpers/structural-pairs.ts';
import { fingerprintOf, writeModel } from './helpers/model-on-disk.ts';

test('a health check that fails on an unconfirmed update now: rolled back, and that update not applied again', { timeout: 120_000 }, async () => {
  const work = await mkdtemp(join(tmpdir(), 'nd-pending-failed-'));
  const server = await serveRelease(join(work, 'site'));
  try {
    assert.equal((await run('keygen', '--out', join(work, 'k'))).code, 0);
    const pair = valuePair('tfjs', 4);
    await writeModel(join(work, 'v1'), pair, 'base');
    await writeModel(join(work, 'v2'), pair, 'target');
    for (const [v, extra] of [['v1', ['--model-id', 'm']], ['v2', []]] as const) {
      const add = await run('release', 'add', '--release', join(work, 'site'), '--model', join(work, v), ...extra, '--key', join(work, 'k.private.pem'), '--expires', '30d');
      assert.equal(add.code, 0, add.err);
    }
    const device = join(work, 'device', 'model');
    await mkdir(join(device, '..'), { recursive: true });
    await writeModel(device, pair, 'base');
    const fp1 = await fingerprintOf(device, 'tfjs');
    const from = ['--model', device, '--from', server.url, '--public-key', join(work, 'k.public.pem'), '--model-id', 'm'];
    const killed = (await ndiffProcess(['update', ...from, '--health-check', 'kill -9 $PPID'])).signal;
    assert.equal(killed, 'SIGKILL');

    // Each run of the health check leaves a line: the version it checked.
    const log = join(work, 'checks.log');
    const r = await run('update', ...from, '--json', '--health-check', `echo "$NDIFF_VERSION $NDIFF_FINGERPRINT" >> '${log}'; exit 1`);
    assert.equal(r.code, 5, r.out + r.err);
    const doc = JSON.parse(r.out) as { result: { pendingUpdate?: { outcome: string; healthCheck: string }; steps: { kind: string; outcome: string }[] } };
    assert.deepEqual([doc.result.pendingUpdate?.outcome, doc.result.pendingUpdate?.healthCheck], ['rolled-back', 'failed']);
    // The payload (exact) and the full model both lead to the version that just failed: neither is tried.
    assert.deepEqual(doc.result.steps, [], 'the version that just failed is not applied again');
    // Both failed in this run (the unconfirmed update's check), not "on this device before".
    assert.match(r.err, /2 way\(s\) failed one in this run and are not tried again/);
    assert.doesNotMatch(r.err, /on this device before/);
    const checks = (await readFile(log, 'utf8')).trim().split('\n');
    assert.equal(checks.length, 1, `the failing check ran once, on the unconfirmed update: ${checks.join(' | ')}`);
    assert.equal(await fingerprintOf(device, 'tfjs'), fp1);
  } finally {
    await server.close();
    await rm(work, { recursive: true, force: true });
  }
});

test('the health check finishing an unconfirmed lossy update is told the version the payload reached, not 0', { timeout: 120_000 }, async () => {
  const work = await mkdtemp(join(tmpdir(), 'nd-pending-lossy-'));
  const server = await serveRelease(join(work, 'site'));
  try {
    assert.equal((await run('keygen', '--out', join(work, 'k'))).code, 0);
    const pair = valuePair('tfjs', 4);
    await writeModel(join(work, 'v1'), pair, 'base');
    await writeModel(join(work, 'v2'), pair, 'target');
    for (const [v, extra] of [['v1', ['--model-id', 'm']], ['v2', ['--method', 'topk', '--budget', '200']]] as const) {
      const add = await run('release', 'add', '--release', join(work, 'site'), '--model', join(work, v), ...extra, '--key', join(work, 'k.private.pem'), '--expires', '30d');
      assert.equal(add.code, 0, add.err);
    }
    const manifest = JSON.parse(await readFile(join(work, 'site', 'manifest.json'), 'utf8')) as { signed: { payloads: { exact: boolean; toVersion: number }[] } };
    assert.deepEqual(manifest.signed.payloads.map((p) => [p.exact, p.toVersion]), [[false, 2]], 'one lossy payload to version 2');
    const device = join(work, 'device', 'model');
    await mkdir(join(device, '..'), { recursive: true });
    await writeModel(device, pair, 'base');
    const from = ['--model', device, '--from', server.url, '--public-key', join(work, 'k.public.pem'), '--model-id', 'm'];
    const killed = (await ndiffProcess(['update', ...from, '--health-check', 'kill -9 $PPID'])).signal;
    assert.equal(killed, 'SIGKILL');
    const log = join(work, 'checks.log');
    const r = await run('update', ...from, '--json', '--health-check', `echo "$NDIFF_VERSION" >> '${log}'`);
    assert.equal(r.code, 0, r.out + r.err);
    const doc = JSON.parse(r.out) as { pendingUpdate?: { outcome: string; healthCheck: string } };
    assert.equal(doc.pendingUpdate?.healthCheck, 'passed', r.out);
    assert.deepEqual((await readFile(log, 'utf8')).trim().split('\n'), ['2'], 'version 2, as the manifest lists the lossy payload');
  } finally {
    await server.close();
    await rm(work, { recursive: true, force: true });
  }
});
