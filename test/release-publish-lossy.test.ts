/**
 * `ndiff release publish` signs what the jobs left, and jobs run without the key (a CI matrix):
 * a job may give its edge its own policy (`release job --method topk --budget B`), so a version
 * planned exact can come back with a lossy payload. Publish signs it (it rebuilds it byte for
 * byte), and says so: devices that take it hold a model near the version, not the version, and no
 * one measured it on inputs.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { baseAndTarget } from './helpers/models.ts';
import { perturbed } from './helpers/perturb.ts';
import { tempDir, writeStore } from './helpers/dirs.ts';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

describe('ndiff release publish and lossy payloads', () => {
  let work: string;
  before(async () => {
    work = await tempDir('nd-publish-lossy-');
    assert.equal((await ndiff('keygen', '--out', join(work, 'k'))).code, 0);
    let m = baseAndTarget(5).base;
    for (let v = 1; v <= 2; v++) {
      await writeStore(join(work, `v${v}`), m);
      m = perturbed(m, 0.1, 30 + v);
    }
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('a version planned exact whose job came back lossy: publish signs it and warns', async () => {
    const site = join(work, 'site');
    const priv = join(work, 'k.private.pem');
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'v1'), '--model-id', 'kws', '--key', priv, '-q')).code, 0);
    const plan = await ndiff('release', 'add', '--release', site, '--model', join(work, 'v2'), '--plan', '-q');
    assert.equal(plan.code, 0, plan.err);
    const jobs = plan.out.split('\n').map((l) => JSON.parse(l) as { id: string });
    assert.deepEqual(jobs.map((j) => j.id), ['v2-from-v1']);
    // On a machine without the key: the edge given a budget of its own.
    const job = await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1', '--method', 'topk', '--budget', '400', '-q');
    assert.equal(job.code, 0, job.err);
    const published = await ndiff('release', 'publish', '--release', site, '--key', priv, '--json');
    assert.equal(published.code, 0, published.err);
    const doc = JSON.parse(published.out) as { added: number; warnings: string[] };
    assert.equal(doc.added, 1);
    const lossy = doc.warnings.filter((w) => /lossy/.test(w));
    assert.equal(lossy.length, 1, `one warning for the lossy payload signed: ${JSON.stringify(doc.warnings)}`);
    assert.match(lossy[0], /v2-from-v1/);
    assert.match(lossy[0], /planned with exact payloads/);
    assert.match(lossy[0], /near version 2, not version 2/);
    assert.match(published.err, /warning: .*lossy/);

    // Re-signing later (no version pending) signs no new payload: no warning again.
    const again = await ndiff('release', 'publish', '--release', site, '--key', priv, '--json');
    assert.equal(again.code, 0, again.err);
    assert.deepEqual((JSON.parse(again.out) as { warnings: string[] }).warnings.filter((w) => /lossy/.test(w)), []);
  });
});
