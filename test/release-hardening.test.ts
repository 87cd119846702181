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
import { spawn } from 'node:child_process';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { fingerprintStore } from '../src/core/fingerprint.ts';
import { getHasher } from '../src/core/hasher.ts';
import { openTfjsModelDir } from '../src/io/tfjs/index.ts';
import { decodePayload } from '../src/core/format.ts';
import { sha256Of } from '../src/release/blobs.ts';
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
    // Refused as lossy and not rebuildable, or (where its result names the job's top-k policy) by the
    // one-pass top-k check, which finds weights the version never moved.
    await refusedUntouched(/reaches [0-9a-f]{16}, not version 2 .*could make devices hold any weights|is not the top-k payload of budget [^:]+: it keeps "[^"]+" at \d+, where the weight does not change/);
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

  const list = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).sort();

  test('case 5: one writer at a time: a second add is refused, no version is lost, no release number signed twice', async () => {
    const site = join(work, 'site', 'race');
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q')).code, 0);
    // In one process: deterministic, the second is refused by the lock.
    const [a, b] = await Promise.all([
      ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--key', priv, '-q'),
      ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v3'), '--key', priv, '-q'),
    ]);
    assert.deepEqual([a.code, b.code].sort(), [0, 7], a.err + b.err);
    assert.match(a.err + b.err, /ndiff release command .*already running|another ndiff release command/);
    let record = JSON.parse(await readFile(join(site, 'release.json'), 'utf8')) as { versions: unknown[]; release: number };
    assert.deepEqual([record.versions.length, record.release], [2, 2]);
    // Two processes: whatever the timing, every add that reported success is in the record, with its own release number.
    const cli = join(import.meta.dirname, '..', 'cli', 'ndiff.mjs');
    const run = (v: string) => new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [cli, 'release', 'add', '--release', site, '--model', join(work, 'models', v), '--key', priv, '-q'], { stdio: 'ignore' });
      child.on('exit', (code) => resolve(code ?? -1));
    });
    // Two models no version holds yet: which of v2 and v3 won above is up to the scheduler, and an
    // add of the newest version's own model is refused as a usage error (exit 2), not by the lock.
    await writeStore(join(work, 'models', 'v4'), perturbed(baseAndTarget(3).base, 0.05, 77));
    await writeStore(join(work, 'models', 'v5'), perturbed(baseAndTarget(3).base, 0.05, 78));
    const codes = await Promise.all([run('v4'), run('v5')]);
    assert.ok(codes.every((c) => c === 0 || c === 7), `exit codes ${codes}`);
    record = JSON.parse(await readFile(join(site, 'release.json'), 'utf8'));
    const won = codes.filter((c) => c === 0).length;
    assert.ok(won >= 1);
    assert.deepEqual([record.versions.length, record.release], [2 + won, 2 + won], 'each add that exited 0 is a version and a release of its own');
  });

  test('case 6: a shard linked out of the model folder is refused; a failed add leaves nothing; a pending version can be cancelled', async () => {
    const site = join(work, 'site', 'links');
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q')).code, 0);
    const snapshot = async () => ({ record: await readFile(join(site, 'release.json')), blobs: await list(join(site, 'blobs')), jobs: await list(join(site, 'jobs')) });
    const before = await snapshot();
    // A shard replaced by a link to a secret of the same size.
    const model = join(work, 'linked');
    await cp(join(work, 'models', 'v2'), model, { recursive: true });
    const shard = (await readdir(model)).find((n) => n.endsWith('.bin')) as string;
    const secret = join(work, 'secret.bin');
    await writeFile(secret, (await readFile(join(model, shard))).map((b) => b ^ 0x5a));
    await rm(join(model, shard));
    await symlink(secret, join(model, shard));
    let r = await ndiff('release', 'add', '--release', site, '--model', model, '--key', priv);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /is a link to .*secret\.bin, outside the model folder/);
    assert.deepEqual(await snapshot(), before, 'nothing written');
    // A failure after the first blob was stored (the shard's blob name is taken by a folder): undone.
    const v2shard = (await readdir(join(work, 'models', 'v2'))).find((n) => n.endsWith('.bin')) as string;
    const blocker = join(site, 'blobs', sha256Of(new Uint8Array(await readFile(join(work, 'models', 'v2', v2shard)))));
    await mkdir(blocker);
    const blocked = await snapshot();
    r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--key', priv, '-q');
    assert.notEqual(r.code, 0);
    assert.deepEqual(await snapshot(), blocked, 'the failed add left no blob, no record change');
    await rm(blocker, { recursive: true });
    // Planned, then cancelled: the folder as before; adding works again.
    r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--plan', '-q');
    assert.equal(r.code, 0, r.err);
    assert.equal((await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1', '-q')).code, 0);
    r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v3'), '--key', priv, '-q');
    assert.equal(r.code, 2);
    assert.match(r.err, /ndiff release cancel/);
    r = await ndiff('release', 'cancel', '--release', site);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /version 2 dropped/);
    assert.deepEqual(await snapshot(), before, 'cancel leaves the folder as before the plan');
    assert.equal((await ndiff('release', 'cancel', '--release', site)).code, 2, 'nothing pending: refused');
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--key', priv, '-q')).code, 0);
  });

  test('a result a `release run` writes after its plan was cancelled is not taken for the plan made next under the same job ids', async () => {
    const site = join(work, 'site', 'late-result');
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q')).code, 0);
    // v2 planned top-k, its job done: the result and payload a run takes in from a worker.
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--plan', '--method', 'topk', '--budget', '2%', '-q')).code, 0);
    assert.equal((await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1', '-q')).code, 0);
    const late = { result: await readFile(join(site, 'jobs', 'v2-from-v1.json')), payload: await readFile(join(site, 'jobs', 'v2-from-v1.ndiff')) };
    assert.equal((await ndiff('release', 'cancel', '--release', site)).code, 0);
    // A `release run` still live at the cancel writes the result it was taking in (src/release/queue/plan.ts).
    await writeFile(join(site, 'jobs', 'v2-from-v1.json'), late.result);
    await writeFile(join(site, 'jobs', 'v2-from-v1.ndiff'), late.payload);
    // v2 planned again, exact this time: the late top-k result is no result of this plan.
    const r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--plan', '-q');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await list(join(site, 'jobs')), [], 'the late result is cleared when the plan is made');
    const published = await ndiff('release', 'publish', '--release', site, '--key', priv, '--json');
    assert.doesNotMatch(published.err, /lossy|top-k/, 'nothing lossy signed into a version planned exact');
    const manifest = JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')) as { signed: { payloads: { exact: boolean }[] } };
    assert.ok(manifest.signed.payloads.every((p) => p.exact), JSON.stringify(manifest.signed.payloads));
  });

  test('case 7: blobs/ or jobs/ a link to another folder: refused, nothing written there', async () => {
    const site = join(work, 'site', 'blobs-link');
    const elsewhere = join(work, 'elsewhere');
    await mkdir(site, { recursive: true });
    await mkdir(elsewhere, { recursive: true });
    await symlink(elsewhere, join(site, 'blobs'));
    let r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv);
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, /blobs\/ is a symbolic link/);
    assert.deepEqual(await list(elsewhere), []);
    assert.equal(existsSync(join(site, 'release.json')), false);
    await rm(join(site, 'blobs'));
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q')).code, 0);
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v2'), '--plan', '-q')).code, 0);
    await symlink(elsewhere, join(site, 'jobs'));
    r = await ndiff('release', 'job', '--release', site, '--id', 'v2-from-v1');
    assert.equal(r.code, 7, r.err);
    assert.deepEqual(await list(elsewhere), []);
  });

  test('case 8: a poisoned release.json is refused by every command, never signed', async () => {
    const site = join(work, 'site', 'poisoned');
    assert.equal((await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q')).code, 0);
    const good = await readFile(join(site, 'release.json'), 'utf8');
    const manifest = await readFile(join(site, 'manifest.json'));
    for (const [edit, why] of [
      [(d: Record<string, unknown>) => ({ ...d, modelId: 'face' }), /names model "face", the manifest this folder serves is for "kws"/],
      [(d: Record<string, unknown>) => ({ ...d, release: -5 }), /expected release to be a whole number >= 0/],
      [(d: Record<string, unknown>) => ({ ...d, release: 0 }), /says release 0, the manifest this folder serves is release 1/],
      [(d: Record<string, unknown>) => ({ ...d, versions: (d.versions as { version: number }[]).map((v) => ({ ...v, version: 3 })) }), /versions\[0\]\.version to be 1/],
      [(d: Record<string, unknown>) => ({ ...d, versions: (d.versions as { files: { file: string }[] }[]).map((v) => ({ ...v, files: v.files.map((f) => ({ ...f, file: '../../etc/passwd' })) })) }), /what a manifest may list/],
    ] as const) {
      await writeFile(join(site, 'release.json'), JSON.stringify(edit(JSON.parse(good))));
      for (const cmd of [['publish', '--key', priv], ['add', '--model', join(work, 'models', 'v2'), '--key', priv], ['show']]) {
        const r = await ndiff('release', cmd[0], '--release', site, ...cmd.slice(1));
        assert.equal(r.code, 7, `${cmd[0]}: ${r.err}`);
        assert.match(r.err, why);
      }
      assert.deepEqual(await readFile(join(site, 'manifest.json')), manifest);
    }
  });

  test('case 12: a private key others can read is warned about; a public key file with text around its PEM block is refused', async () => {
    const site = join(work, 'site', 'keys');
    await chmod(priv, 0o644);
    try {
      const r = await ndiff('release', 'add', '--release', site, '--model', join(work, 'models', 'v1'), '--model-id', 'kws', '--key', priv, '-q');
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /warning: the private key .* can be read by other users \(mode 0644\).*chmod 600/);
    } finally {
      await chmod(priv, 0o600);
    }
    const quiet = await ndiff('release', 'publish', '--release', site, '--key', priv, '-q');
    assert.doesNotMatch(quiet.err, /warning/);
    const pem = await readFile(join(work, 'release.public.pem'), 'utf8');
    for (const text of [`Here is our key:\n${pem}`, `${pem}\n-- \nsent from my phone`]) {
      await writeFile(join(work, 'wrapped.pem'), text);
      const r = await ndiff('update', '--model', join(work, 'device'), '--from', 'http://127.0.0.1:9/', '--public-key', join(work, 'wrapped.pem'), '--model-id', 'kws');
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, /holds text besides one PUBLIC KEY block/);
    }
  });
});
