/**
 * Fuzzing the release folder (issue 44): a folder with versions 1 and 2 published and version 3
 * planned with its jobs run, then one of its build-server files poisoned (release.json, a job's
 * result or payload: a field set to a hostile value or dropped, or bytes flipped, cut or
 * inserted), then `ndiff release publish` and `show`. The oracle:
 *
 * - every command ends in success or a typed refusal (a NeuralDiffError or a usage error), never
 *   a crash of another kind;
 * - whatever publish signs, a device accepts whole: the manifest verifies with the publisher's key,
 *   every file it names is in blobs/ with its hash, every version's files open as its fingerprint,
 *   and every payload, signed, applies to its base and reaches the target the manifest lists;
 * - a refused publish leaves manifest.json byte for byte.
 */
import fc from 'fast-check';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NeuralDiffError } from '../../src/core/errors.ts';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { applyPayload } from '../../src/apply/apply.ts';
import { openTfjsModelDir } from '../../src/io/tfjs/index.ts';
import { addVersion } from '../../src/release/add.ts';
import { runJob } from '../../src/release/jobs.ts';
import { readBlob } from '../../src/release/blobs.ts';
import { publishReleaseFolder } from '../../src/release/publish.ts';
import { readRecord } from '../../src/release/record.ts';
import { openTrustedRelease } from '../../src/updater/trust.ts';
import type { ReleaseManifest } from '../../src/updater/manifest.ts';
import { generateKeyPair, loadPrivateKey } from '../../src/sign/node-keys.ts';
import { baseAndTarget } from '../helpers/models.ts';
import { perturbed } from '../helpers/perturb.ts';
import { writeStore } from '../helpers/dirs.ts';

/** One poisoning of a file of the folder. */
export type Poison =
  | { file: 'record' | 'result'; kind: 'set'; path: number; value: number }
  | { file: 'record' | 'result'; kind: 'drop'; path: number }
  | { file: 'record' | 'result' | 'payload'; kind: 'bytes'; at: number; op: 'flip' | 'cut' | 'insert'; byte: number };

/** Hostile values a field is set to. */
const VALUES: unknown[] = [-5, 0, 1, 2, 3, 2 ** 53, -0.5, 1e308, '', 'x', 'face', '../../etc/passwd', 'blobs/../release.json', '0123456789abcdef', 'f'.repeat(64), 'a'.repeat(5000), null, true, [], {}, [1, 2], { version: 1 }, 'exact', 'topk', 'sparse'];

export const poisonArb: fc.Arbitrary<Poison> = fc.oneof(
  fc.record({ file: fc.constantFrom('record' as const, 'result' as const), kind: fc.constant('set' as const), path: fc.nat(), value: fc.nat({ max: VALUES.length - 1 }) }),
  fc.record({ file: fc.constantFrom('record' as const, 'result' as const), kind: fc.constant('drop' as const), path: fc.nat() }),
  fc.record({ file: fc.constantFrom('record' as const, 'result' as const, 'payload' as const), kind: fc.constant('bytes' as const), at: fc.nat(), op: fc.constantFrom('flip' as const, 'cut' as const, 'insert' as const), byte: fc.nat({ max: 255 }) }),
);

/** Every path (keys and indexes) to a value in `doc`, in a fixed order. */
function paths(doc: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (at.length) out.push(at);
  if (Array.isArray(doc)) doc.forEach((v, i) => paths(v, [...at, i], out));
  else if (doc && typeof doc === 'object') for (const k of Object.keys(doc)) paths((doc as Record<string, unknown>)[k], [...at, k], out);
  return out;
}

function edit(doc: unknown, p: (string | number)[], fn: (parent: Record<string | number, unknown>, key: string | number) => void): void {
  let node = doc as Record<string | number, unknown>;
  for (const k of p.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  fn(node, p[p.length - 1]);
}

export function poisonBytes(bytes: Uint8Array, p: Poison): Uint8Array {
  if (p.kind === 'bytes') {
    const at = bytes.length ? p.at % bytes.length : 0;
    if (p.op === 'flip') {
      const out = bytes.slice();
      if (out.length) out[at] ^= p.byte || 1;
      return out;
    }
    if (p.op === 'cut') return bytes.slice(0, at);
    return new Uint8Array([...bytes.subarray(0, at), p.byte, ...bytes.subarray(at)]);
  }
  const doc = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  const all = paths(doc);
  if (!all.length) return bytes;
  const target = all[p.path % all.length];
  edit(doc, target, (parent, key) => {
    if (p.kind === 'drop') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else parent[key] = structuredClone(VALUES[p.value]);
  });
  return new TextEncoder().encode(JSON.stringify(doc));
}

export interface ReleaseFixture {
  root: string;
  pristine: string;
  key: ReturnType<typeof loadPrivateKey>;
  publicKeyPem: string;
  jobId: string;
}

export async function buildReleaseFixture(): Promise<ReleaseFixture> {
  const root = await mkdtemp(join(tmpdir(), 'ndiff-fuzz-release-'));
  const pair = generateKeyPair();
  const key = loadPrivateKey(pair.privateKeyPem);
  let m = baseAndTarget(91).base;
  for (let v = 1; v <= 3; v++) {
    await writeStore(join(root, `v${v}`), m);
    m = perturbed(m, 0.05, 90 + v);
  }
  const pristine = join(root, 'release');
  const expiresAt = Math.floor(Date.now() / 1000) + 86400;
  await addVersion(pristine, join(root, 'v1'), { modelId: 'kws', key, expiresAt });
  await addVersion(pristine, join(root, 'v2'), { key, expiresAt, policy: { method: 'topk', budget: '2%' } });
  const planned = await addVersion(pristine, join(root, 'v3'), { planOnly: true });
  const record = await readRecord(pristine);
  for (const job of planned.jobs) await runJob(pristine, record!, job);
  return { root, pristine, key, publicKeyPem: pair.publicKeyPem, jobId: planned.jobs[0].id };
}

/** What a device makes of the folder: null when it accepts every part of it, else the problem. */
async function deviceProblem(dir: string, fx: ReleaseFixture): Promise<string | null> {
  let m: ReleaseManifest;
  try {
    m = (await openTrustedRelease(new Uint8Array(await readFile(join(dir, 'manifest.json'))), { trustedKeys: [fx.publicKeyPem], modelId: 'kws' })).manifest;
  } catch (e) {
    return `the signed manifest is refused: ${(e as Error).message}`;
  }
  const hasher = await getHasher();
  const states = new Map<string, string>(); // fingerprint -> folder holding it
  for (const v of m.versions) {
    const at = join(dir, '..', `open-${v.version}-${Math.random().toString(36).slice(2)}`);
    try {
      await mkdir(at, { recursive: true });
      for (const f of v.files) await writeFile(join(at, f.path), await readBlob(dir, f));
      const fp = fingerprintStore(hasher, await openTfjsModelDir(at)).fingerprint;
      if (fp !== v.fingerprint) return `version ${v.version} opens as ${fp}, the manifest says ${v.fingerprint}`;
      states.set(fp, at);
    } catch (e) {
      return `version ${v.version} cannot be opened: ${(e as Error).message}`;
    }
  }
  for (const p of m.payloads) {
    const base = states.get(p.base);
    if (!base) continue; // a lossy state: reached by another payload, checked there
    try {
      // A copy in memory: applying to the folder's store would write the folder.
      const store = MemoryWeightStore.copyOf(await openTfjsModelDir(base));
      const res = await applyPayload(store, await readBlob(dir, p), { hasher, trustedKeys: [fx.publicKeyPem] });
      if (res.targetFingerprint !== p.target) return `payload ${p.fromVersion}->${p.toVersion} reaches ${res.targetFingerprint}, the manifest says ${p.target}`;
      if (p.exact && p.target !== m.versions.find((v) => v.version === p.toVersion)?.fingerprint) return `exact payload ${p.fromVersion}->${p.toVersion} does not reach its version`;
    } catch (e) {
      return `payload ${p.fromVersion}->${p.toVersion} is refused by a device: ${(e as Error).message}`;
    }
  }
  return null;
}

export interface ReleaseFuzzSummary {
  cases: number;
  outcomes: Record<string, number>;
  bad: { poison: Poison; problem: string }[];
}

/** Run `cases` poisonings (seeded). */
export async function fuzzReleaseFolder(fx: ReleaseFixture, options: { cases: number; seed: number }): Promise<ReleaseFuzzSummary> {
  const out: ReleaseFuzzSummary = { cases: 0, outcomes: {}, bad: [] };
  const poisons = fc.sample(poisonArb, { numRuns: options.cases, seed: options.seed });
  for (const [i, poison] of poisons.entries()) {
    const dir = join(fx.root, `case-${i}`, 'release');
    await cp(fx.pristine, dir, { recursive: true });
    const file = poison.file === 'record' ? join(dir, 'release.json') : join(dir, 'jobs', `${fx.jobId}.${poison.file === 'result' ? 'json' : 'ndiff'}`);
    await writeFile(file, poisonBytes(new Uint8Array(await readFile(file)), poison));
    const manifestBefore = await readFile(join(dir, 'manifest.json'));
    let outcome: string;
    try {
      await publishReleaseFolder(dir, { key: fx.key, expiresAt: Math.floor(Date.now() / 1000) + 86400 });
      outcome = 'published';
      const problem = await deviceProblem(dir, fx);
      if (problem) out.bad.push({ poison, problem: `published, but ${problem}` });
    } catch (e) {
      if (e instanceof NeuralDiffError) {
        outcome = `refused:${e.code}`;
        if (!(await readFile(join(dir, 'manifest.json'))).equals(manifestBefore)) out.bad.push({ poison, problem: 'a refused publish changed manifest.json' });
      } else {
        outcome = 'crashed';
        out.bad.push({ poison, problem: `untyped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}` });
      }
    }
    // show reads what publish read: typed refusal or success as well.
    try {
      await readRecord(dir);
    } catch (e) {
      if (!(e instanceof NeuralDiffError)) out.bad.push({ poison, problem: `show: untyped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}` });
    }
    out.cases++;
    out.outcomes[outcome] = (out.outcomes[outcome] ?? 0) + 1;
    await rm(join(dir, '..'), { recursive: true, force: true });
  }
  return out;
}
