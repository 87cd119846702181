/**
 * Lossy chains in a release folder (issue #64, deliverable 3): how far devices that take every
 * update drift from the versions, with and without error feedback, and what keyframes cost.
 *
 * Five versions of the MNIST MLP of examples/lib/mnist-task.ts (14x14, 196-128-64-10): version 1
 * trained on digits 0-6, each later one fully fine-tuned from the one before on another slice of
 * all ten digits (every weight moves, as a retrain does). Each policy releases the five versions
 * into its own folder with `--history 4` and top-k payloads within the budget:
 * - `no error feedback`: along a chain, the payload carries the version's own change only;
 * - `error feedback` (the default): the payload goes from the state devices hold toward the version;
 * - `keyframes 0.98`: the same through `ndiff release add --eval CALIB --keyframe-below 0.98`, the
 *   calibration inputs 500 unlabeled training images.
 * For each starting version s, the devices that held it and took every update since are followed
 * through the release's own payloads (each state rebuilt by applying them, as devices do), and
 * measured on 1,800 held-out images: top-1 agreement with the version, and the share of images the
 * model at s got right that it now gets wrong (newly wrong). Rows for `ndiff report` are written
 * to bench/results/chains.json (there version 1 is the starting model, 0, and update u leads to
 * version u + 1).
 *
 *   node --conditions=neural-diff-source --import tsx bench/chains.ts
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../cli/ndiff.ts';
import { initBackend } from '../src/engine/backend.ts';
import { mnistModel, mnistSplits } from '../examples/lib/mnist-task.ts';
import { modelToStore } from '../src/engine/model-weights.ts';
import { trainDiff } from '../src/train/train-diff.ts';
import { fileSystemIO } from '../src/io/tfjs/index.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { addVersion } from '../src/release/add.ts';
import { writeState } from '../src/release/package.ts';
import { readRecord, type EdgePolicy, type ReleaseRecord } from '../src/release/record.ts';
import type { ManifestPayload } from '../src/updater/manifest.ts';

await initBackend('wasm');
const work = await mkdtemp(join(tmpdir(), 'nd-bench-chains-'));
const VERSIONS = 5;
const splits = mnistSplits(6000);
const model = mnistModel(1);
await trainDiff(model, splits.baseTrain, { method: 'full', budgetBytes: 0, epochs: 4, seed: 1, tune: 'off', validation: 0, threads: 1 });
const versionDirs: string[] = [];
const updateN = splits.updateTrain.y.length;
const slice = Math.floor(updateN / (VERSIONS - 1));
for (let v = 1; v <= VERSIONS; v++) {
  if (v > 1) {
    const from = (v - 2) * slice;
    const data = { x: splits.updateTrain.x.slice([from, 0], [slice, 196]), y: splits.updateTrain.y.slice(from, from + slice) };
    await trainDiff(model, data, { method: 'full', budgetBytes: 0, epochs: 2, seed: v, tune: 'off', validation: 0, base: modelToStore(model), threads: 1 });
    data.x.dispose();
  }
  versionDirs.push(join(work, 'versions', `v${v}`));
  await model.save(fileSystemIO(versionDirs[v - 1]));
}
const calib = join(work, 'calib');
await mkdir(calib, { recursive: true });
saveNpy(join(calib, 'x.npy'), splits.updateTrain.x.slice([0, 0], [500, 196]).dataSync() as Float32Array, [500, 196]);
const held = splits.eval;

/** Top-1 predictions of a TF.js folder's model on the held-out images. */
async function predictions(dir: string): Promise<Int32Array> {
  const m = await tf.loadLayersModel(fileSystemIO(dir));
  const p = tf.tidy(() => (m.predict(held.x) as tf.Tensor).argMax(-1));
  const out = Int32Array.from(p.dataSync());
  p.dispose();
  m.dispose();
  return out;
}
const versionPreds = await Promise.all(versionDirs.map(predictions));
const accuracy = (p: Int32Array) => p.reduce((n, c, i) => n + (c === held.y[i] ? 1 : 0), 0) / p.length;

const { privateKey } = generateKeyPairSync('ed25519');
const keyFile = join(work, 'key');
const quiet = { out: () => {}, err: () => {}, progress: () => {} };
if ((await main(['keygen', '--out', keyFile], quiet)) !== 0) throw new Error('keygen failed');

interface Setting { label: string; budget: string; policy?: EdgePolicy; keyframes?: number }
const settings: Setting[] = [];
for (const budget of ['5%', '10%']) {
  settings.push({ label: 'no error feedback', budget, policy: { method: 'topk', budget, errorFeedback: false } });
  settings.push({ label: 'error feedback', budget, policy: { method: 'topk', budget } });
  settings.push({ label: 'keyframes 0.98', budget, keyframes: 0.98 });
}

/** Release every version into a folder by `s`. */
async function release(s: Setting): Promise<{ site: string; record: ReleaseRecord }> {
  const site = join(work, 'sites', `${s.budget}-${s.label}`.replace(/[^a-z0-9.-]+/gi, '-'));
  for (const [i, dir] of versionDirs.entries()) {
    if (s.policy) {
      await addVersion(site, dir, { modelId: 'digits', history: 4, policy: i === 0 ? { method: 'exact' } : s.policy, key: privateKey, expiresAt: Math.floor(Date.now() / 1000) + 3600 });
      continue;
    }
    const argv = ['release', 'add', '--release', site, '--model', dir, '--model-id', 'digits', '--history', '4', '--key', `${keyFile}.private.pem`];
    if (i > 0) argv.push('--method', 'topk', '--budget', s.budget, '--eval', calib, '--keyframe-below', String(s.keyframes));
    const lines: string[] = [];
    const code = await main(argv, { out: (l) => lines.push(l), err: (l) => lines.push(l), progress: () => {} });
    if (code !== 0) throw new Error(`release add of version ${i + 1} failed:\n${lines.join('\n')}`);
  }
  return { site, record: (await readRecord(site))! };
}

const rows: Record<string, unknown>[] = [];
let packageBytes = 0;
const table: string[] = [];
for (const s of settings) {
  const t0 = performance.now();
  const { site, record } = await release(s);
  packageBytes = record.versions[0].files.reduce((n, f) => n + f.length, 0);
  for (let start = 1; start < VERSIONS; start++) {
    const startPreds = versionPreds[start - 1];
    let at = record.versions[start - 1].fingerprint;
    let via: string | undefined;
    let bytes = 0;
    let keyframes = 0;
    const cells: string[] = [];
    for (let v = start + 1; v <= VERSIONS; v++) {
      const step: ManifestPayload | undefined = record.payloads.find((p) => p.base === at && p.toVersion === v);
      if (!step) throw new Error(`${site}: no payload from ${at} into version ${v}`);
      bytes += step.length;
      if (step.exact) keyframes++;
      at = step.target;
      via = step.exact ? undefined : step.sha256;
      const dir = join(work, 'states', `${s.budget}-${s.label}-${start}-${v}`.replace(/[^a-z0-9.-]+/gi, '-'));
      await mkdir(dir, { recursive: true });
      await writeState(site, record, v, at, via, dir);
      const p = await predictions(dir);
      const target = versionPreds[v - 1];
      let agree = 0;
      let newlyWrong = 0;
      for (let i = 0; i < p.length; i++) {
        if (p[i] === target[i]) agree++;
        if (startPreds[i] === held.y[i] && p[i] !== held.y[i]) newlyWrong++;
      }
      const row = { update: v - 1, start: start - 1, method: 'topk', postHoc: true, budget: `${s.budget}, ${s.label}`, budgetPct: Number(s.budget.replace('%', '')), bytes: step.length, accAll: accuracy(p), agreement: agree / p.length, newlyWrong: newlyWrong / p.length, exact: step.exact };
      rows.push(row);
      cells.push(`${(100 * row.agreement).toFixed(1)} / ${(100 * row.newlyWrong).toFixed(1)}${step.exact ? ' (exact)' : ''}`);
    }
    table.push(`| ${s.budget} | ${s.label} | v${start} | ${cells.join(' | ')}${' | '.repeat(VERSIONS - 1 - cells.length)} | ${bytes} | ${keyframes} |`);
  }
  console.error(`${s.budget} ${s.label}: released and measured in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
console.log(`versions' accuracy on ${held.y.length} held-out images: ${versionPreds.map((p, i) => `v${i + 1} ${(100 * accuracy(p)).toFixed(1)}%`).join(', ')}; full package ${packageBytes} bytes`);
console.log('| budget | chain | from | after 1 (agr. / newly wrong, %) | after 2 | after 3 | after 4 | bytes downloaded | exact payloads |');
console.log('|---|---|---|---|---|---|---|---:|---:|');
for (const l of table) console.log(l);
await mkdir(join('bench', 'results'), { recursive: true });
await writeFile(join('bench', 'results', 'chains.json'), JSON.stringify(rows, null, 1) + '\n');
await rm(work, { recursive: true, force: true });
