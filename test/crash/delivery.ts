/**
 * Crash injection on the delivery path (the child of child.ts, killed before its N-th mutating
 * file operation): `ndiff update`'s full install of a model folder, and `ndiff release add` on a
 * release folder. After every kill:
 *
 * - full install: a loader reading the folder sees the old model or the new one, or, only when the
 *   kill fell between the install's two renames (docs/SECURITY.md), no folder; after the
 *   updater's recovery (run before it reads the model) always the old or the new one, with the
 *   files the folder held beside the model (labels.json) in place. Installing again ends at the
 *   new model with nothing left over;
 * - release add: the served manifest.json verifies (the publisher's key, release 1 or 2) and every
 *   file it names is in blobs/ with its hash; the record reads back (validated). Adding again (after
 *   `ndiff release cancel` when the kill left the version pending) publishes version 2.
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { openTfjsModelDir } from '../../src/io/tfjs/index.ts';
import { INCOMING_SUFFIX, PREVIOUS_SUFFIX, RETIRED_SUFFIX, recoverFullInstall, tfjsFolderTarget } from '../../src/io/updater/targets.ts';
import { addVersion, cancelPending } from '../../src/release/add.ts';
import { readRecord } from '../../src/release/record.ts';
import { publishReleaseFolder } from '../../src/release/publish.ts';
import { readBlob } from '../../src/release/blobs.ts';
import { openTrustedRelease } from '../../src/updater/trust.ts';
import { generateKeyPair } from '../../src/sign/node-keys.ts';
import { loadPrivateKey } from '../../src/sign/node-keys.ts';
import { baseAndTarget } from '../helpers/models.ts';
import { perturbed } from '../helpers/perturb.ts';
import { writeStore } from '../helpers/dirs.ts';
import { bundleChild } from './bundle.ts';
import { spread } from './harness.ts';

export interface DeliveryFixture {
  root: string;
  child: string;
  v1: string;
  v2: string;
  old: string;
  new: string;
  /** A release folder with version 1 published. */
  release: string;
  privateKey: string;
  publicKeyPem: string;
}

export interface DeliverySummary {
  operations: number;
  kills: number;
  sawOld: number;
  sawNew: number;
  /** Kills between the full install's two renames, where the folder is briefly absent. */
  sawGap: number;
  bad: string[];
}

const LABELS = '["yes","no","silence"]';

export async function buildDeliveryFixture(): Promise<DeliveryFixture> {
  const root = await mkdtemp(join(tmpdir(), 'ndiff-crash-delivery-'));
  const child = await bundleChild(root);
  const v1 = join(root, 'v1');
  const v2 = join(root, 'v2');
  const { base } = baseAndTarget(81);
  await writeStore(v1, base);
  await writeStore(v2, perturbed(base, 0.2, 82));
  const hasher = await getHasher();
  const fp = async (d: string) => fingerprintStore(hasher, await openTfjsModelDir(d)).fingerprint;
  const key = generateKeyPair();
  const privateKey = join(root, 'release.private.pem');
  await writeFile(privateKey, key.privateKeyPem, { mode: 0o600 });
  const release = join(root, 'release');
  await addVersion(release, v1, { modelId: 'kws', key: loadPrivateKey(key.privateKeyPem), expiresAt: Math.floor(Date.now() / 1000) + 86400 });
  return { root, child, v1, v2, old: await fp(v1), new: await fp(v2), release, privateKey, publicKeyPem: key.publicKeyPem };
}

function runChild(childFile: string, job: Record<string, unknown>, env: Record<string, string>): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [childFile, JSON.stringify(job)], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

async function operations(fx: DeliveryFixture, job: Record<string, unknown>, name: string): Promise<string[]> {
  const log = join(fx.root, `${name}.ops`);
  const r = await runChild(fx.child, job, { NDIFF_CRASH_AT: '0', NDIFF_CRASH_LOG: log });
  if (r.code !== 0) throw new Error(`${name}: the uninterrupted run exited ${r.code} (${r.signal}): ${r.stderr}`);
  return (await readFile(log, 'utf8')).split('\n').filter(Boolean);
}

/** True for a lock file whose process is gone. */
function ownedByDead(name: string): boolean {
  const pid = Number(/^\.ndiff-apply\.lock-(\d+)-/.exec(name)?.[1]);
  if (!pid || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** Kill points: every one, or `count` spread over them. */
function pointsOf(n: number, count?: number): number[] {
  return spread(n, count ?? n);
}

/** The full install of v2 over a folder holding v1 and labels.json, killed at each point. */
export async function crashFullInstall(fx: DeliveryFixture, count?: number): Promise<DeliverySummary> {
  const hasher = await getHasher();
  const sees = async (dir: string) => {
    if (!existsSync(dir)) return 'gap';
    try {
      const fp = fingerprintStore(hasher, await openTfjsModelDir(dir)).fingerprint;
      return fp === fx.old ? 'old' : fp === fx.new ? 'new' : `neither (${fp})`;
    } catch (e) {
      return `unloadable: ${(e as Error).message.slice(0, 160)}`;
    }
  };
  const pristine = join(fx.root, 'device');
  await cp(fx.v1, pristine, { recursive: true });
  await writeFile(join(pristine, 'labels.json'), LABELS);
  const jobFor = (dir: string) => ({ mode: 'install', dir, payload: fx.v2, fingerprint: fx.new });
  const countDir = join(fx.root, 'count-install', 'model');
  await cp(pristine, countDir, { recursive: true });
  const ops = await operations(fx, jobFor(countDir), 'install');
  const firstRename = ops.findIndex((o) => o.startsWith('rename(model -> model' + PREVIOUS_SUFFIX));
  const secondRename = ops.findIndex((o) => o.startsWith(`rename(model${INCOMING_SUFFIX} -> model)`));
  const out: DeliverySummary = { operations: ops.length, kills: 0, sawOld: 0, sawNew: 0, sawGap: 0, bad: [] };
  if (firstRename < 0 || secondRename < firstRename) out.bad.push(`the install's renames are not in the order documented:\n${ops.join('\n')}`);
  for (const at of pointsOf(ops.length, count)) {
    const dir = join(fx.root, 'runs-install', String(at), 'model');
    await mkdir(join(dir, '..'), { recursive: true });
    await cp(pristine, dir, { recursive: true });
    const r = await runChild(fx.child, jobFor(dir), { NDIFF_CRASH_AT: String(at) });
    const where = `install killed before op ${at} (${ops[at - 1]})`;
    if (r.signal !== 'SIGKILL') {
      out.bad.push(`${where}: not killed (exit ${r.code}) ${r.stderr.slice(0, 200)}`);
      continue;
    }
    out.kills++;
    const seen = await sees(dir);
    // Op numbers are 1-based: a kill before op k means ops 1..k-1 ran.
    const inGap = at - 1 > firstRename && at - 1 <= secondRename;
    if (seen === 'old') out.sawOld++;
    else if (seen === 'new') out.sawNew++;
    else if (seen === 'gap' && inGap) out.sawGap++;
    else out.bad.push(`${where}: a loader sees ${seen}`);
    // What the updater does first on its next run.
    await recoverFullInstall(dir);
    const recovered = await sees(dir);
    if (recovered !== 'old' && recovered !== 'new') out.bad.push(`${where}: after recovery the loader sees ${recovered}`);
    else if ((await readFile(join(dir, 'labels.json'), 'utf8').catch(() => 'missing')) !== LABELS) out.bad.push(`${where}: labels.json lost (${recovered})`);
    // Installing again finishes.
    try {
      const files = await Promise.all((await readdir(fx.v2)).sort().map(async (n) => ({ path: n, bytes: new Uint8Array(await readFile(join(fx.v2, n))) })));
      if ((await tfjsFolderTarget(dir).fingerprint()) !== fx.new) await tfjsFolderTarget(dir).installPackage(files, { modelId: 'kws', fingerprint: fx.new });
      const end = await sees(dir);
      const left = (await readdir(join(dir, '..'))).filter((n) => n !== 'model');
      // A lock file of the killed process may be left: stale (its pid is gone), the next writer deletes it.
      const locks = (await readdir(dir)).filter((n) => n.startsWith('.ndiff-apply.lock') && !ownedByDead(n));
      if (end !== 'new') out.bad.push(`${where}: installing again ends at ${end}`);
      else if (left.length || locks.length) out.bad.push(`${where}: left over after installing again: ${[...left, ...locks].join(', ')}`);
      else if ((await readFile(join(dir, 'labels.json'), 'utf8').catch(() => 'missing')) !== LABELS) out.bad.push(`${where}: labels.json lost by installing again`);
    } catch (e) {
      out.bad.push(`${where}: installing again threw ${(e as Error).message.slice(0, 200)}`);
    }
    await rm(join(dir, '..'), { recursive: true, force: true });
  }
  void RETIRED_SUFFIX;
  return out;
}

/** `ndiff release add` of v2 to a release folder holding v1, killed at each point. */
export async function crashReleaseAdd(fx: DeliveryFixture, count?: number): Promise<DeliverySummary> {
  const jobFor = (dir: string) => ({ mode: 'release-add', dir, payload: fx.v2, key: fx.privateKey });
  const countDir = join(fx.root, 'count-release');
  await cp(fx.release, countDir, { recursive: true });
  const ops = await operations(fx, jobFor(countDir), 'release-add');
  const out: DeliverySummary = { operations: ops.length, kills: 0, sawOld: 0, sawNew: 0, sawGap: 0, bad: [] };
  /** The served state: 'old' (release 1) or 'new' (release 2, version 2), or what is wrong. */
  const served = async (dir: string): Promise<string> => {
    try {
      const trusted = await openTrustedRelease(new Uint8Array(await readFile(join(dir, 'manifest.json'))), { trustedKeys: [fx.publicKeyPem], modelId: 'kws' });
      const m = trusted.manifest;
      for (const f of [...m.versions.flatMap((v) => v.files), ...m.payloads]) await readBlob(dir, f);
      const record = await readRecord(dir);
      if (!record) return 'no record';
      if (m.release === 1 && m.latest === 1) return 'old';
      if (m.release >= 2 && m.latest === 2 && m.payloads.length === 1) return 'new';
      return `release ${m.release}, latest ${m.latest}`;
    } catch (e) {
      return `broken: ${(e as Error).message.slice(0, 200)}`;
    }
  };
  const key = loadPrivateKey(await readFile(fx.privateKey, 'utf8'));
  for (const at of pointsOf(ops.length, count)) {
    const dir = join(fx.root, 'runs-release', String(at));
    await cp(fx.release, dir, { recursive: true });
    const r = await runChild(fx.child, jobFor(dir), { NDIFF_CRASH_AT: String(at) });
    const where = `release add killed before op ${at} (${ops[at - 1]})`;
    if (r.signal !== 'SIGKILL') {
      out.bad.push(`${where}: not killed (exit ${r.code}) ${r.stderr.slice(0, 200)}`);
      continue;
    }
    out.kills++;
    const seen = await served(dir);
    if (seen === 'old') out.sawOld++;
    else if (seen === 'new') out.sawNew++;
    else out.bad.push(`${where}: the folder serves ${seen}`);
    try {
      if (seen === 'old') {
        // A version left pending by the kill is cancelled, as the refusal says, then added again;
        // one recorded but not yet in the manifest is published again, as the refusal says.
        const record = await readRecord(dir);
        if (record?.pending) await cancelPending(dir);
        if (record && !record.pending && record.versions.length === 2) await publishReleaseFolder(dir, { key, expiresAt: Math.floor(Date.now() / 1000) + 86400 });
        else await addVersion(dir, fx.v2, { key, expiresAt: Math.floor(Date.now() / 1000) + 86400 });
      }
      const end = await served(dir);
      if (end !== 'new') out.bad.push(`${where}: adding again ends with ${end}`);
    } catch (e) {
      out.bad.push(`${where}: adding again threw ${(e as Error).message.slice(0, 200)}`);
    }
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}
