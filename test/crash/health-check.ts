/**
 * `ndiff update` killed (SIGKILL) while its health check runs (issue 61, finding 1), for a
 * `.tflite` file, an `.onnx` file and a TF.js folder, by an ordinary (value) payload and by a
 * structural one: the child of child.ts runs `updateModel` against a release served over HTTP,
 * with a health check that kills the process after the switch. Then the next commands, as the
 * library's `updateModel` (what `ndiff update` runs):
 *
 * 1. the kill left the new version switched in, its previous version and journal beside it;
 * 2. an update without a health check refuses (ND_PENDING_UPDATE), the model untouched;
 * 3. an update killed again during the health check it runs on that switch: still the same
 *    unconfirmed switch (a double kill);
 * 4. an update whose health check passes confirms it (`pendingUpdate`), up to date, nothing left;
 * 5. on a copy of the state after the kill, one whose health check fails rolls it back (and then
 *    fails the payload and the full model with the same check): the old version, nothing left.
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { updateModel } from '../../src/io/updater/node-updater.ts';
import { addVersion } from '../../src/release/add.ts';
import { generateKeyPair, loadPrivateKey } from '../../src/sign/node-keys.ts';
import { serveRelease } from '../helpers/release-server.ts';
import { structuralPair, valuePair, type PairFormat, type StructuralPair } from '../helpers/structural-pairs.ts';
import { fingerprintOf, writeModel } from '../helpers/model-on-disk.ts';
import { bundleChild } from './bundle.ts';

export interface HealthCheckKillSummary {
  /** Format and release kind of each case run. */
  cases: string[];
  /** Kills (the first, during the update's health check, and the second, during the next update's). */
  kills: number;
  /** Unconfirmed switches the next update without a health check refused, confirmed with one, rolled back with a failing one. */
  refused: number;
  confirmed: number;
  rolledBack: number;
  bad: string[];
}

/** The kept previous version and the journal an unconfirmed switch leaves beside the model. */
async function kept(model: string, format: PairFormat): Promise<string[]> {
  if (format === 'tfjs') return (await readdir(model)).filter((n) => n === 'model.json.prev' || n === '.ndiff-journal.json').sort();
  const prefix = `${model.slice(dirname(model).length + 1)}.`;
  return (await readdir(dirname(model))).filter((n) => n === `${prefix}ndiff-prev` || n === `${prefix}ndiff-update.json`).map((n) => n.slice(prefix.length - 1)).sort();
}

function runChild(childFile: string, job: Record<string, unknown>): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childFile, JSON.stringify(job)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** Run every case (module doc); `formats` and `kinds` narrow them. */
export async function crashDuringHealthCheck(options: { formats?: readonly PairFormat[]; structural?: readonly boolean[] } = {}): Promise<HealthCheckKillSummary> {
  const root = await mkdtemp(join(tmpdir(), 'ndiff-crash-health-'));
  const summary: HealthCheckKillSummary = { cases: [], kills: 0, refused: 0, confirmed: 0, rolledBack: 0, bad: [] };
  const server = await serveRelease(join(root, 'sites'));
  try {
    const child = await bundleChild(root);
    const key = generateKeyPair();
    const publicKey = join(root, 'release.public.pem');
    await writeFile(publicKey, key.publicKeyPem);
    const trustedKeys = [key.publicKeyPem];
    for (const format of options.formats ?? (['tflite', 'onnx', 'tfjs'] as const)) {
      for (const structural of options.structural ?? [false, true]) {
        const name = `${format}-${structural ? 'structural' : 'values'}`;
        summary.cases.push(name);
        const bad = (what: string) => summary.bad.push(`${name}: ${what}`);
        const pair = structural ? structuralPair(format, 2) : valuePair(format, 2);
        const file = format === 'tfjs' ? 'model' : `model.${format}`;
        const [v1, v2] = ['v1', 'v2'].map((v) => join(root, name, v, file));
        await writeModel(v1, pair, 'base');
        await writeModel(v2, pair, 'target');
        const [fp1, fp2] = [await fingerprintOf(v1, format), await fingerprintOf(v2, format)];
        const site = join(root, 'sites', name);
        for (const v of [v1, v2]) await addVersion(site, v, { modelId: 'm', key: loadPrivateKey(key.privateKeyPem), expiresAt: Math.floor(Date.now() / 1000) + 86400 });
        const url = `${server.url}${name}/`;
        const device = join(root, name, 'a', file);
        await writeModel(device, pair, 'base');
        const update = (model: string, healthCheck?: () => boolean) => updateModel({ model, modelId: 'm', urls: [url], trustedKeys, ...(healthCheck ? { healthCheck } : {}) });
        const killed = (model: string) => runChild(child, { mode: 'update', dir: model, payload: url, publicKey, health: 'kill' });

        // 1. killed during the health check
        const first = await killed(device);
        if (first.signal !== 'SIGKILL') {
          bad(`the update was not killed (exit ${first.code}): ${first.stderr.slice(0, 300)}`);
          continue;
        }
        summary.kills++;
        const leftovers = format === 'tfjs' ? ['.ndiff-journal.json', 'model.json.prev'] : ['.ndiff-prev', '.ndiff-update.json'];
        const unconfirmed = async (when: string) => {
          if ((await fingerprintOf(device, format)) !== fp2) bad(`${when}: the device is not the switched-in v2`);
          const left = await kept(device, format);
          if (JSON.stringify(left) !== JSON.stringify(leftovers)) bad(`${when}: beside the model ${JSON.stringify(left)}, expected ${JSON.stringify(leftovers)}`);
        };
        await unconfirmed('after the kill');
        await cp(join(root, name, 'a'), join(root, name, 'b'), { recursive: true });
        // 2. no health check: refused, untouched
        const plain = await update(device);
        if (plain.status === 'failed' && plain.error?.code === 'ND_PENDING_UPDATE') summary.refused++;
        else bad(`an update without a health check ended ${plain.status} (${plain.error?.code ?? 'no error'})`);
        await unconfirmed('after the update without a health check');
        // 3. killed again, during the health check run on the unconfirmed switch
        const second = await killed(device);
        if (second.signal === 'SIGKILL') summary.kills++;
        else bad(`the second update was not killed (exit ${second.code}): ${second.stderr.slice(0, 300)}`);
        await unconfirmed('after a second kill during the health check of the next update');
        // 4. a passing health check: confirmed
        const passed = await update(device, () => true);
        if (passed.status === 'up-to-date' && passed.pendingUpdate?.outcome === 'confirmed') summary.confirmed++;
        else bad(`an update whose health check passes ended ${passed.status}, ${JSON.stringify(passed.pendingUpdate)}`);
        if ((await fingerprintOf(device, format)) !== fp2) bad('confirmed, but the device is not v2');
        if ((await kept(device, format)).length) bad(`left after the confirmation: ${(await kept(device, format)).join(', ')}`);
        // 5. a failing health check, on the copy: rolled back
        const copy = join(root, name, 'b', file);
        const failed = await update(copy, () => false);
        if (failed.pendingUpdate?.outcome === 'rolled-back' && failed.pendingUpdate.healthCheck === 'failed') summary.rolledBack++;
        else bad(`an update whose health check fails ended ${JSON.stringify(failed.pendingUpdate)}`);
        if ((await fingerprintOf(copy, format)) !== fp1) bad('rolled back, but the device is not v1');
        if ((await kept(copy, format)).length) bad(`left after the rollback: ${(await kept(copy, format)).join(', ')}`);
      }
    }
  } finally {
    await server.close();
    await rm(root, { recursive: true, force: true });
  }
  return summary;
}
