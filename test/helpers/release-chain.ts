/**
 * A chain of model versions made by the test helpers (a small TF.js folder, each version moving
 * about 5% of every tensor's weights), and a release folder built from it with `addVersion`.
 */
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { addVersion, type AddVersionOptions } from '../../src/release/add.ts';
import { runJob } from '../../src/release/jobs.ts';
import { publishReleaseFolder } from '../../src/release/publish.ts';
import { readRecord } from '../../src/release/record.ts';
import { generateKeyPair, loadPrivateKey, type GeneratedKeyPair } from '../../src/sign/node-keys.ts';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { baseAndTarget } from './models.ts';
import { perturbed } from './perturb.ts';
import { tempDir, writeStore } from './dirs.ts';

export interface ReleaseChain {
  work: string;
  releaseDir: string;
  /** The folder of each version, index 0 = version 1. */
  versions: string[];
  fingerprints: string[];
  keys: GeneratedKeyPair;
  key: KeyObject;
  /** Write another version (the last one moved again) and add it to the release. */
  addNext(options?: AddVersionOptions): Promise<void>;
}

/** An hour from now, in seconds. */
export const inAnHour = (): number => Math.floor(Date.now() / 1000) + 3600;

/** Versions 1..`count` of the test model, released with `options` (exact payloads by default). */
export async function releaseChain(count: number, options: AddVersionOptions = {}): Promise<ReleaseChain> {
  const work = await tempDir('nd-release-');
  const keys = generateKeyPair();
  const key = loadPrivateKey(keys.privateKeyPem);
  const releaseDir = join(work, 'release');
  let model: MemoryWeightStore = baseAndTarget(1).base;
  const chain: ReleaseChain = {
    work,
    releaseDir,
    versions: [],
    fingerprints: [],
    keys,
    key,
    async addNext(o: AddVersionOptions = {}) {
      const n = chain.versions.length + 1;
      if (n > 1) model = perturbed(model, 0.05, n);
      const dir = join(work, `v${n}`);
      await writeStore(dir, model);
      const r = await addVersion(releaseDir, dir, { modelId: 'kws', key, expiresAt: inAnHour(), ...options, ...o });
      chain.versions.push(dir);
      chain.fingerprints.push(r.fingerprint);
    },
  };
  for (let i = 0; i < count; i++) await chain.addNext();
  return chain;
}

/** A release with `versions` published and the next one planned (exact payloads from the last `history`). */
export async function plannedRelease(versions = 3, history = versions): Promise<ReleaseChain> {
  const chain = await releaseChain(versions, { history });
  await chain.addNext({ planOnly: true });
  return chain;
}

/** The manifest entries the same plan gets on one machine: each job run here, then published. */
export async function localPayloads(chain: ReleaseChain): Promise<string[]> {
  const copy = join(chain.work, 'local');
  await cp(chain.releaseDir, copy, { recursive: true });
  const record = await readRecord(copy);
  for (const job of record?.pending?.jobs ?? []) await runJob(copy, record!, job);
  const r = await publishReleaseFolder(copy, { key: chain.key, expiresAt: inAnHour() });
  return r.manifest.payloads.map((p) => `${p.fromVersion}->${p.toVersion} ${p.sha256}`);
}
