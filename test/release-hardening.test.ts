/**
 * What an attack on release folders tried (issue 44, docs/SECURITY.md "Round four"), each case as
 * the attacker did it, in-process through the CLI: a keyless job worker's forged results, two
 * `release add` at once, symlinks in the model folder and as `blobs/`, a poisoned release.json, a
 * failed add (nothing left behind, a pending version cancelled), key files.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { decodePayload } from '../src/core/format.ts';
import { sha256Of } from '../src/release/blobs.ts';
import { baseAndTarget } from './helpers/models.ts';
import { perturbed } from './helpers/perturb.ts';
import { folderBytes, tempDir, writeStore } from './helpers/dirs.ts';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

const folderFingerprint = async (dir: string) => fingerprintStore(await getHasher(), await openTfjsModelDir(dir)).fingerprint;

describe('release folders under attack', () => {
  let work: string;
  let priv: string;
  before(async () => {
    work = await tempDir('nd-release-hard-');
    assert.equal((await ndiff('keygen', '--out', join(work, 'release'))).code, 0);
    priv = join(work, 'release.private.pem');
    let m = baseAndTarget(3).base;
    for (let v = 1; v <= 3; v++) {
      await writeStore(join(work, 'models', `v${v}`), m);
      m = perturbed(m, 0.05, 30 + v);
    }
    // Weights of the attacker's choice, same architecture.
    await writeStore(join(work, 'models', 'evil'), perturbed(baseAndTarget(3).base, 0.5, 99));
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A release of v1 (published) with v2 planned; returns the folder and the planned job ids. */
  async function planned(name: string, ...extra: string[]): Promise<{ site: string; jobs: string[] }> {
    const site = join(work, 'site', name);
    let r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q');
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--plan', '-q', ...extra);
    assert.equal(r.code, 0, r.err);
    return { site, jobs: r.out.split('\n').map((l) => (JSON.parse(l) as { id: string }).id) };
  }

  /** What a keyless worker writes as the job's result: its own payload and its own claims. */
  async function forge(site: string, id: string, payloadFile: string, claims: Record<string, unknown> = {}): Promise<void> {
    const bytes = new Uint8Array(await readFile(payloadFile));
    const h = decodePayload(bytes).header;
    await mkdir(join(site, 'jobs'), { recursive: true });
    await writeFile(join(site, 'jobs', `${id}.ndiff`), bytes);
    const payload = { file: `blobs/${sha256Of(bytes)}`, length: bytes.length, sha256: sha256Of(bytes), base: h.baseFingerprint, target: h.targetFingerprint, sequence: h.sequence, fromVersion: 1, toVersion: 2, method: 'topk', exact: false, ...claims };
    await writeFile(join(site, 'jobs', `${id}.json`), JSON.stringify({ id, payload }));
  }

  test('case 1: publish signs nothing a keyless job worker forged', async () => {
    const { site, jobs } = await planned('forged');
    assert.deepEqual(jobs, ['v2-from-v1']);
    const manifestBefore = await readFile(join(site, 'manifest.json'));
    const recordBefore = await readFile(join(site, 'release.json'));
    const refusedUntouched = async (why: RegExp, ...extra: string[]) => {
      const r = await ndiff('release', 'publish', '--release', site, '--key', priv, ...extra);
      assert.equal(r.code, 3, r.err);
      assert.match(r.err, why);
      assert.match(r.err, /nothing was signed/);
      assert.deepEqual(await readFile(join(site, 'manifest.json')), manifestBefore, 'the manifest is untouched');
      assert.deepEqual(await readFile(join(site, 'release.json')), recordBefore, 'the record is untouched');
    };
    const evil = join(work, 'evil.ndiff');
    // The attack as reported: a valid payload from v1 to weights of the worker's choice, claimed lossy.
    let r = await ndiff('diff', '--base', join(work, 'models', 'v1'), '--target', join(work, 'models', 'evil'), '--budget', 'all', '--model-id', 'kws', '--sequence', '2', '--out', evil, '-q');
    assert.equal(r.code, 0, r.err);
    await forge(site, 'v2-from-v1', evil);
    await refusedUntouched(/reaches [0-9a-f]{16}, not version 2 .*could make devices hold any weights/);
    // Claimed exact: the claim is checked against the version.
    await forge(site, 'v2-from-v1', evil, { exact: true });
    await refusedUntouched(/not version 2/);
    // A top-k policy named in the result: publish rebuilds the top-k payload and compares.
    const evilTopk = join(work, 'evil-topk.ndiff');
    r = await ndiff('diff', '--base', join(work, 'models', 'v1'), '--target', join(work, 'models', 'evil'), '--budget', '2%', '--model-id', 'kws', '--sequence', '2', '--out', evilTopk, '-q');
    assert.equal(r.code, 0, r.err);
    await forge(site, 'v2-from-v1', evilTopk);
    const res = JSON.parse(await readFile(join(site, 'jobs', 'v2-from-v1.json'), 'utf8'));
    await writeFile(join(site, 'jobs', 'v2-from-v1.json'), JSON.stringify({ ...res, policy: { method: 'topk', budget: '2%' } }));
    await refusedUntouched(/is not the top-k payload of budget 2%/);
    // A header without a model id, another sequence, another model id.
    for (const [args, why] of [
      [['--model-id', 'face', '--sequence', '2'], /for model "face", this release is "kws"/],
      [['--model-id', 'kws', '--sequence', '7'], /sequence 7, version 2 needs sequence 2/],
    ] as const) {
      r = await ndiff('diff', '--base', join(work, 'models', 'v1'), '--target', join(work, 'models', 'v2'), '--budget', 'all', ...args, '--out', evil, '-q');
      assert.equal(r.code, 0, r.err);
      await forge(site, 'v2-from-v1', evil, { exact: true });
      await refusedUntouched(why);
    }
    // An honest exact payload with a lying result file (another target claimed).
    const honest = join(work, 'honest.ndiff');
    r = await ndiff('diff', '--base', join(work, 'models', 'v1'), '--target', join(work, 'models', 'v2'), '--budget', 'all', '--model-id', 'kws', '--sequence', '2', '--out', honest, '-q');
    assert.equal(r.code, 0, r.err);
    await forge(site, 'v2-from-v1', honest, { exact: false, fromVersion: 3 });
    await refusedUntouched(/claims exact false, the payload is true|claims fromVersion 3/);
    // A payload of the attacker's choice the key holder never vouched for: --accept names other bytes.
    r = await ndiff('diff', '--base', join(work, 'models', 'v1'), '--target', join(work, 'models', 'evil'), '--budget', 'all', '--model-id', 'kws', '--sequence', '2', '--out', evil, '-q');
    assert.equal(r.code, 0, r.err);
    await forge(site, 'v2-from-v1', evil);
    await refusedUntouched(/--accept/, '--accept', 'ab'.repeat(8));

    // The honest job, run as the docs say: signed, and the manifest's entry is the checked payload's.
    r = await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1', '-q');
    assert.equal(r.code, 0, r.err);
    r = await ndiff('release', 'publish', '--release', site, '--key', priv, '-q');
    assert.equal(r.code, 0, r.err);
    const record = JSON.parse(await readFile(join(site, 'release.json'), 'utf8')) as { payloads: { target: string; exact: boolean }[] };
    assert.deepEqual(record.payloads.map((p) => [p.target, p.exact]), [[await folderFingerprint(join(work, 'models', 'v2')), true]]);
  });
});

void [chmod, cp, readdir, symlink, existsSync, folderBytes];
