/**
 * `ndiff update --health-check CMD` runs the command as `ndiff apply --health-check` does: its
 * output is progress (stderr), never mixed into the one JSON document `--json` prints on stdout,
 * and a command that gives no answer within `--health-check-timeout` seconds is stopped and fails
 * the check (the update rolled back), instead of holding the update (and its lock) for ever.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNdiff as run, ndiffProcess } from './helpers/ndiff-run.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { valuePair } from './helpers/structural-pairs.ts';
import { fingerprintOf, writeModel } from './helpers/model-on-disk.ts';

describe('ndiff update --health-check CMD', () => {
  let work: string;
  let server: ReleaseServer;
  const pair = valuePair('tfjs', 3);
  let fp1: string;
  let fp2: string;
  let from: (device: string) => string[];
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'nd-update-hc-'));
    await mkdir(join(work, 'sites'));
    assert.equal((await run('keygen', '--out', join(work, 'k'))).code, 0);
    await writeModel(join(work, 'v1'), pair, 'base');
    await writeModel(join(work, 'v2'), pair, 'target');
    [fp1, fp2] = [await fingerprintOf(join(work, 'v1'), 'tfjs'), await fingerprintOf(join(work, 'v2'), 'tfjs')];
    for (const [v, extra] of [['v1', ['--model-id', 'm']], ['v2', []]] as const) {
      const add = await run('release', 'add', '--release', join(work, 'sites', 'm'), '--model', join(work, v), ...extra, '--key', join(work, 'k.private.pem'), '--expires', '30d');
      assert.equal(add.code, 0, add.err);
    }
    server = await serveRelease(join(work, 'sites'));
    from = (device) => ['--model', device, '--from', `${server.url}m/`, '--public-key', join(work, 'k.public.pem'), '--model-id', 'm'];
  });
  after(async () => {
    await server?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('--json: stdout is the one JSON document; the command\'s output goes to stderr', { timeout: 120_000 }, async () => {
    const device = join(work, 'device-json');
    await cp(join(work, 'v1'), device, { recursive: true });
    const r = await ndiffProcess(['update', ...from(device), '--json', '--health-check', 'echo the-check-ran; echo "version $NDIFF_VERSION"']);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { status: string };
    assert.equal(doc.status, 'updated');
    assert.match(r.stderr, /the-check-ran/);
    assert.match(r.stderr, /version 2/, 'NDIFF_VERSION is set');
    assert.equal(await fingerprintOf(device, 'tfjs'), fp2);
  });

  test('a command that hangs is stopped after --health-check-timeout: the check fails, the update is rolled back (exit 5)', { timeout: 120_000 }, async () => {
    const device = join(work, 'device-hang');
    await cp(join(work, 'v1'), device, { recursive: true });
    const started = Date.now();
    const r = await run('update', ...from(device), '--health-check', 'sleep 60', '--health-check-timeout', '1');
    assert.equal(r.code, 5, r.err);
    assert.ok(Date.now() - started < 50_000, 'the hanging command was stopped');
    assert.match(r.err, /health check: no answer after 1 s, stopping it/);
    assert.match(r.out, /payload v1 -> v2 .*health-check-failed \(ND_HEALTH_CHECK: .*no answer within healthCheckTimeout \(--health-check-timeout\) 1 s/);
    assert.equal(await fingerprintOf(device, 'tfjs'), fp1, 'rolled back to v1');
    const bad = await run('update', ...from(device), '--health-check', 'true', '--health-check-timeout', '0');
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /--health-check-timeout/);
    assert.equal(await fingerprintOf(device, 'tfjs'), fp1);
  });
});
