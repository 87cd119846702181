/**
 * The payloads of a new version, as jobs: one per edge, from a state of each of the last K
 * versions to the new one. A job only computes (it needs the release folder, not the signing
 * key), so a CI matrix or a batch system can run them anywhere; it leaves an unsigned payload
 * and a result in `jobs/`, which `publish` signs and lists.
 *
 * States: each version, and each state a lossy payload (`--method topk`) reached, since a
 * device that applied one holds that, not the version. Lossy payloads are made from versions
 * and along a lossy chain of one-step updates (at most K payloads long, see {@link planJobs});
 * from any other lossy state the payload is exact, so every chain ends at a version exactly.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { PayloadFormatError, UsageError } from '../core/errors.ts';
import { getHasher } from '../core/hasher.ts';
import { exactDiff } from '../diff/exact.ts';
import { checkOnnxPair, checkStoredGrids, diffOnnxModels } from '../diff/onnx.ts';
import { modelDelta } from '../diff/delta.ts';
import { topkDiff, topkFromDeltas } from '../topk-diff/encoder.ts';
import { parseBudget } from '../diff/budget.ts';
import { checkTopkPayload, TopkCheckError } from './topk-check.ts';
import { makeDirs, writeFileAtomically } from '../io/durable/durable.ts';
import { releaseSubdir } from './folder.ts';
import { packageBytes, type ManifestPayload } from '../updater/manifest.ts';
import { sha256Of } from './blobs.ts';
import { openState, writeState } from './package.ts';
import { applyToState, payloadHeaderOf, structuralEdge } from './structural.ts';
import { isStructuralPayload } from '../apply/rebuild.ts';
import { applyGgufJobPayload, buildGgufJobPayload } from './gguf.ts';
import { learnedIdSuffix, type LearnedCloseness } from './learned.ts';
import { JOB_ID, JOBS_DIR, lossyChain, recordVersion, type EdgePolicy, type JobResult, type ReleaseJob, type ReleaseRecord } from './record.ts';

/**
 * The jobs that make the payloads into version `to` (already in the record). From each of the
 * last K versions a payload by `policy`. From a state a lossy payload reached: exact, except
 * along a lossy chain: a state of the previous version reached by a one-step payload (from the
 * version before it, or from a state of it) whose chain is shorter than K payloads gets a
 * payload by `policy` too, made from that state (closed loop: what the device holds, rebuilt by
 * applying the chain's payloads), so devices that take every update keep taking small ones. The
 * chain ends at a version exactly after K lossy payloads, or earlier at a keyframe (`release
 * add` with a threshold ships the exact payload when the chain's state drifts below it).
 */
export function planJobs(record: ReleaseRecord, to: number, policy: EdgePolicy): ReleaseJob[] {
  const target = recordVersion(record, to);
  const jobs: ReleaseJob[] = [];
  const seen = new Set<string>([target.fingerprint]);
  const sources = record.versions.filter((v) => v.version < to && v.version >= to - record.history).sort((a, b) => b.version - a.version);
  for (const v of sources) {
    if (!seen.has(v.fingerprint)) {
      seen.add(v.fingerprint);
      jobs.push({ id: `v${to}-from-v${v.version}${learnedSuffix(policy)}`, fromVersion: v.version, toVersion: to, base: v.fingerprint, policy });
    }
    for (const p of record.payloads.filter((x) => !x.exact && x.toVersion === v.version)) {
      if (seen.has(p.target)) continue;
      seen.add(p.target);
      const chained = policy.method !== 'exact' && v.version === to - 1 && p.fromVersion === v.version - 1 && lossyChain(record, p.sha256).length < record.history;
      jobs.push({ id: `v${to}-from-v${v.version}-${p.target.slice(0, 8)}${chained ? learnedSuffix(policy) : ''}`, fromVersion: v.version, toVersion: to, base: p.target, via: p.sha256, policy: chained ? policy : { method: 'exact' } });
    }
  }
  return jobs;
}

/** What a learned job's id ends with (its method: `-train-sparse`); nothing for another job. */
function learnedSuffix(policy: EdgePolicy): string {
  return policy.method === 'learned' && policy.learned ? learnedIdSuffix(policy.learned.method) : '';
}

/** Files a job leaves in `jobs/`. */
export function jobFiles(releaseDir: string, id: string): { result: string; payload: string } {
  if (!JOB_ID.test(id)) throw new UsageError(`job id ${JSON.stringify(id)} is not one \`ndiff release add --plan\` prints (v<to>-from-v<from>, v<to>-from-v<from>-train-<method>)`);
  return { result: path.join(releaseDir, JOBS_DIR, `${id}.json`), payload: path.join(releaseDir, JOBS_DIR, `${id}.ndiff`) };
}

/**
 * Run one job: open its base state and the new version, build the payload by its policy, and
 * leave it (unsigned) with its result in `jobs/`. A payload not smaller than the new version's
 * full package is not kept (a device is better off with the package).
 */
export async function runJob(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, onProgress: (line: string) => void = () => {}): Promise<RunJobResult> {
  const to = recordVersion(record, job.toVersion);
  if (job.policy.method === 'learned') {
    // Trained as `ndiff train` trains (tfjs loaded only now), measured on the job's eval inputs.
    const { trainLearnedJob } = await import('./learned-train.ts');
    const learned = await trainLearnedJob(releaseDir, record, job, onProgress);
    return keepJobResult(releaseDir, job, to, learned.bytes, learned.method, onProgress, job.policy, undefined, learned.closeness);
  }
  const built = await buildJobPayload(releaseDir, record, job, job.policy, onProgress);
  const result = await keepJobResult(releaseDir, job, to, built.bytes, built.method, onProgress, job.policy, built.skip);
  return result.payload && built.carried !== undefined ? { ...result, carried: built.carried } : result;
}

/**
 * What {@link runJob} did: the job's result (as written to `jobs/`) and, for a lossy top-k
 * payload, the share of the weight change from the job's base to the version it carries
 * (`1 - |version - (base + payload)|² / |version - base|²`, over every weight). Not written to
 * the result file: publish computes what it signs from the payload, never from a worker's claims.
 */
export interface RunJobResult extends JobResult {
  carried?: number;
}

/**
 * Build the payload of `job` by `policy` (exact, or top-k within its budget; an exact payload
 * under the budget is used instead). Deterministic: the same release folder and policy give the
 * same bytes, which is how `publish` checks a chain's payload made without error feedback
 * without trusting it (other top-k payloads are checked in one pass: src/release/topk-check.ts).
 */
async function buildJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, policy: EdgePolicy, onProgress: (line: string) => void): Promise<{ bytes: Uint8Array; method: string; carried?: number; skip?: string }> {
  if (record.modelKind === 'gguf') return buildGgufJobPayload(releaseDir, record, job, policy);
  const to = recordVersion(record, job.toVersion);
  const base = await openState(releaseDir, record, job.fromVersion, job.base, job.via);
  const target = await openState(releaseDir, record, to.version, to.fingerprint).catch(async (e) => {
    await base.dispose();
    throw e;
  });
  try {
    const hasher = await getHasher();
    const header = { modelId: record.modelId, sequence: to.version, store: 'stored' as const };
    // Another structure than the base's: the file rebuilt, exactly, whatever the policy.
    const structural = await structuralEdge(record.modelKind, hasher, base, target, header);
    if (structural && 'skip' in structural) return { bytes: new Uint8Array(0), method: 'exact', skip: structural.skip };
    if (structural) {
      onProgress(`  ${job.id}: the structure changed (${structural.reason}): a structural payload (format v7) rebuilds the file`);
      return { bytes: structural.bytes, method: 'exact' };
    }
    // .onnx and .tflite files keep their dtypes (diffOnnxModels); TF.js and safetensors weights are diffed as float32.
    const keepsDtypes = record.modelKind === 'onnx' || record.modelKind === 'tflite';
    const exact = () => (keepsDtypes
      ? diffOnnxModels(hasher, base.store, target.store, { ...header, mode: 'all', budgetBytes: 0 })
      : exactDiff(hasher, base.store, target.store, header));
    const built = exact();
    if (policy.method === 'topk') {
      const budgetBytes = parseBudget(policy.budget ?? '', base.weightBytes);
      // Under the budget already: the exact payload is both smaller and exact.
      if (built.bytes.length > budgetBytes) {
        const options = { ...header, budgetBytes, codec: 'auto' as const, onProgress: (m: string) => onProgress(`  ${job.id}: ${m}`) };
        if (job.via && policy.errorFeedback === false) {
          // Without error feedback: the version's own change, from the version before, onto the state.
          if (keepsDtypes) throw new UsageError(`job ${job.id}: a chain without error feedback is made for TF.js models and .safetensors files only; leave errorFeedback out (error feedback is the default)`);
          const from = await openState(releaseDir, record, job.fromVersion, recordVersion(record, job.fromVersion).fingerprint);
          try {
            const res = topkFromDeltas(hasher, base.store, modelDelta(from.store, target.store), options, 'topk');
            return { bytes: res.bytes, method: 'topk' };
          } finally {
            await from.dispose();
          }
        }
        const diff = keepsDtypes ? diffOnnxModels : topkDiff;
        const res = diff(hasher, base.store, target.store, options);
        const carried = res.changeSquared ? Math.max(0, 1 - res.squaredError / res.changeSquared) : undefined;
        return { bytes: res.bytes, method: 'topk', ...(carried !== undefined ? { carried } : {}) };
      }
    }
    return { bytes: built.bytes, method: 'exact' };
  } finally {
    await base.dispose();
    await target.dispose();
  }
}

/**
 * Leave a job's payload (unsigned) and its result in `jobs/`. A payload not smaller than the new
 * version's full package is not kept (a device is better off with the package).
 */
async function keepJobResult(releaseDir: string, job: ReleaseJob, to: ReturnType<typeof recordVersion>, bytes: Uint8Array, method: string, onProgress: (line: string) => void, policy?: EdgePolicy, skip?: string, closeness?: LearnedCloseness): Promise<JobResult> {
  const full = packageBytes(to);
  const { result: resultFile, payload: payloadFile } = jobFiles(releaseDir, job.id);
  await releaseSubdir(releaseDir, JOBS_DIR);
  let result: JobResult;
  if (skip) {
    result = { id: job.id, skipped: skip };
  } else if (bytes.length >= full) {
    result = { id: job.id, skipped: `the payload (${bytes.length} bytes) is not smaller than version ${to.version}'s full package (${full} bytes): devices holding ${job.base} get the package` };
  } else {
    const h = await payloadHeaderOf(bytes);
    const payload: ManifestPayload = {
      file: `blobs/${sha256Of(bytes)}`, // replaced by the signed blob's name when published
      length: bytes.length,
      sha256: sha256Of(bytes),
      base: h.baseFingerprint,
      target: h.targetFingerprint,
      sequence: h.sequence,
      fromVersion: job.fromVersion,
      toVersion: to.version,
      method,
      exact: h.targetFingerprint === to.fingerprint,
      ...(isStructuralPayload(bytes) ? { structural: true as const } : {}),
    };
    await writeFileAtomically(payloadFile, bytes);
    result = { id: job.id, payload, ...(policy ? { policy } : {}), ...(closeness ? { closeness } : {}) };
  }
  await writeFileAtomically(resultFile, new TextEncoder().encode(JSON.stringify(result, null, 2) + '\n'));
  onProgress(`${job.id}: ${result.payload ? `${result.payload.length} bytes (${method}${result.payload.exact ? '' : ', lossy'}), full package ${full} bytes` : result.skipped}`);
  return result;
}

/**
 * Write a job's base and its target version as model files under `outDir` (`base/` and
 * `target/`: TF.js folders, or folders holding the .onnx file), so a payload can be learned
 * elsewhere, e.g. `ndiff train --base OUT/base --teacher OUT/target --train inputs/` (a teacher
 * diff), then taken back with {@link adoptJobPayload}. A job along a lossy chain exports the
 * state its devices hold as the base (the chain's payloads applied to its first version), so a
 * learned chain stays closed-loop; a job that ends a chain (exact) is refused.
 * @returns the paths to pass as the base and the teacher.
 */
export async function exportJob(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, outDir: string): Promise<{ base: string; target: string }> {
  if (record.modelKind === 'gguf') throw new UsageError(`job ${job.id} is a GGUF job: its payload is a block payload (exact, or on-grid within the plan's budget), made by the job itself (ndiff release job --id ${job.id}); nothing is learned for a GGUF release`);
  if (job.via && job.policy.method === 'exact') throw new UsageError(`job ${job.id} starts from a state a lossy payload reached and ends its chain: its payload is exact (so that the chain ends at version ${job.toVersion} exactly), so there is nothing to learn; run it as it is (ndiff release job --id ${job.id})`);
  const out = { base: '', target: '' };
  for (const [side, version, fingerprint, via] of [['base', job.fromVersion, job.base, job.via], ['target', job.toVersion, recordVersion(record, job.toVersion).fingerprint, undefined]] as const) {
    const dir = path.join(outDir, side);
    await makeDirs(dir);
    // A chain's state is rebuilt by applying its payloads (closed loop: the model devices hold).
    out[side] = await writeState(releaseDir, record, version, fingerprint, via, dir);
  }
  return out;
}

/**
 * Take a payload made elsewhere (a learned diff trained on the files {@link exportJob} wrote) as
 * the job's result. It must be this job's: the release's model id, the job's base fingerprint
 * and the new version's sequence; and it must apply to the job's base and reach the target its
 * header names (checked by applying it to a copy, as a device would). It is then kept like any
 * job's payload: exact when it reaches the version, else lossy (the next version gets exact
 * payloads from the state it reaches).
 */
export async function adoptJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, bytes: Uint8Array, onProgress: (line: string) => void = () => {}): Promise<JobResult> {
  const to = recordVersion(record, job.toVersion);
  let header;
  try {
    header = await payloadHeaderOf(bytes);
  } catch (e) {
    throw new UsageError(`the payload given for job ${job.id} cannot be read (${(e as Error).message}): expected an unsigned payload from ndiff train or ndiff diff (publish signs it)`);
  }
  const fix = `make it with modelId ${JSON.stringify(record.modelId)} and sequence ${to.version} (--model-id ${record.modelId} --sequence ${to.version}) from the base \`ndiff release job --id ${job.id} --export DIR\` writes`;
  if (header.modelId !== record.modelId) throw new UsageError(`the payload given for job ${job.id} is for model ${JSON.stringify(header.modelId)}, this release is ${JSON.stringify(record.modelId)}: ${fix}`);
  if (header.baseFingerprint !== job.base) throw new UsageError(`the payload given for job ${job.id} patches base ${header.baseFingerprint}, the job's base is ${job.base} (version ${job.fromVersion}): ${fix}`);
  if (header.sequence !== to.version) throw new UsageError(`the payload given for job ${job.id} has sequence ${header.sequence}, version ${to.version} needs sequence ${to.version}: ${fix}`);
  if (record.modelKind === 'gguf') {
    // Throws when the payload does not reach the target its header names.
    const reached = await applyGgufJobPayload(releaseDir, record, job, bytes);
    return keepJobResult(releaseDir, job, to, bytes, reached === to.fingerprint ? 'exact' : 'ongrid', onProgress);
  }
  const base = await openState(releaseDir, record, job.fromVersion, job.base, job.via);
  try {
    // Throws when the payload does not reach the target its header names.
    await applyToState(record.modelKind, base, bytes, await getHasher());
  } finally {
    await base.dispose();
  }
  return keepJobResult(releaseDir, job, to, bytes, header.method, onProgress);
}

/**
 * Check a finished job's result before anything is signed. Jobs run without the key (a CI
 * matrix, a batch system), so their files are claims: this is where they become facts. The
 * payload must carry this release's model id, the job's base and the new version's sequence; it
 * must apply to the job's base (opened from the release's own blobs) and reach the target its
 * header names. An exact payload must reach the version. A lossy one is signed only if it is the
 * top-k payload of the policy the result names (checked in one pass, src/release/topk-check.ts;
 * rebuilt byte for byte for a chain without error feedback) or its SHA-256 is in `accepted` (a learned payload the key holder took in with `release job
 * --payload` and vouches for). The result file's claims must be what the payload is.
 * @returns the manifest entry, computed from the checked payload (never copied from the result).
 */
export async function verifyJobResult(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, result: JobResult, bytes: Uint8Array, accepted: readonly string[] = []): Promise<ManifestPayload> {
  const to = recordVersion(record, job.toVersion);
  const refuse = (why: string, details: Record<string, unknown> = {}) => new PayloadFormatError(`job ${job.id}: ${why}; nothing was signed: run the job again on a machine you trust (ndiff release job --release ${releaseDir} --id ${job.id}), then publish`, { job: job.id, ...details });
  let header;
  try {
    header = await payloadHeaderOf(bytes);
  } catch (e) {
    throw refuse(`its payload cannot be read (${(e as Error).message})`);
  }
  if (header.modelId !== record.modelId) throw refuse(`its payload is for model ${JSON.stringify(header.modelId ?? null)}, this release is ${JSON.stringify(record.modelId)}`, { expected: record.modelId, found: header.modelId ?? null });
  if (header.baseFingerprint !== job.base) throw refuse(`its payload patches base ${header.baseFingerprint}, the job's base is ${job.base} (version ${job.fromVersion})`, { expected: job.base, found: header.baseFingerprint });
  if (header.sequence !== to.version) throw refuse(`its payload has sequence ${header.sequence}, version ${to.version} needs sequence ${to.version}`, { expected: to.version, found: header.sequence });
  // Throws unless the payload reaches the target its header names.
  const applies = async () => {
    if (record.modelKind === 'gguf') {
      await applyGgufJobPayload(releaseDir, record, job, bytes).catch((e: unknown) => {
        throw refuse(`its payload does not apply to the job's base as it claims (${(e as Error).message})`);
      });
      return;
    }
    const base = await openState(releaseDir, record, job.fromVersion, job.base, job.via);
    try {
      await applyToState(record.modelKind, base, bytes, await getHasher());
    } catch (e) {
      throw refuse(`its payload does not apply to the job's base as it claims (${(e as Error).message})`);
    } finally {
      await base.dispose();
    }
  };
  const sha256 = sha256Of(bytes);
  const exact = header.targetFingerprint === to.fingerprint;
  const policy = result.policy;
  const rebuildable = !exact && !accepted.some((a) => sha256.startsWith(a)) && policy?.method === 'topk' && job.policy.method !== 'learned' && (!job.via || job.policy.method === 'topk');
  // A payload to rebuild is checked by its bytes alone: the same bytes as publish's own build
  // apply as that build does, so applying them as well only repeated work.
  if (!rebuildable) await applies();
  let method = header.method as string;
  if (!exact) {
    if (accepted.some((a) => sha256.startsWith(a))) {
      // The key holder vouched for these bytes (for GGUF, an on-grid payload made with ndiff diff --calibrate, say).
    } else if (record.modelKind === 'gguf') {
      // An on-grid payload is the encoder's, which is deterministic: made again here by the policy
      // the result names (the plan's, or the edge's `release job --method topk --budget B`), the
      // bytes must be the same.
      if (policy?.method !== 'topk' || policy.budget === undefined) throw refuse(`its payload reaches ${header.targetFingerprint}, not version ${to.version} (${to.fingerprint}), and its result names no on-grid budget (method topk and a budget) to make it again by`, { found: header.targetFingerprint, expected: to.fingerprint });
      const rebuilt = await buildGgufJobPayload(releaseDir, record, job, policy);
      if (sha256Of(rebuilt.bytes) !== sha256) throw refuse(`its payload reaches ${header.targetFingerprint}, not version ${to.version} (${to.fingerprint}), and is not the on-grid payload of budget ${policy.budget} (publish made it again: ${rebuilt.bytes.length} bytes, another SHA-256)`, { found: header.targetFingerprint, expected: to.fingerprint });
    } else if (job.policy.method === 'learned') {
      // Planned by the key holder: measured here on the job's eval inputs, never taken from the worker.
      const { checkLearnedPayload } = await import('./learned-check.ts');
      await checkLearnedPayload(releaseDir, record, job, result, bytes, refuse);
    } else if (rebuildable && policy && onePassCheckable(job, policy)) {
      await checkTopkJobPayload(releaseDir, record, job, policy, bytes, refuse);
      method = 'topk';
    } else if (rebuildable && policy) {
      const rebuilt = await buildJobPayload(releaseDir, record, job, policy, () => {});
      const same = sha256Of(rebuilt.bytes) === sha256;
      if (!same) await applies(); // a payload that does not even apply is refused as such
      if (!same) throw refuse(`its payload reaches ${header.targetFingerprint}, not version ${to.version} (${to.fingerprint}), and is not the top-k payload of budget ${policy.budget} (publish rebuilt it: ${rebuilt.bytes.length} bytes, another SHA-256)`, { found: header.targetFingerprint, expected: to.fingerprint });
      method = rebuilt.method;
    } else {
      throw refuse(`its payload reaches ${header.targetFingerprint}, not version ${to.version} (${to.fingerprint}): a lossy payload publish cannot rebuild (method ${header.method}) could make devices hold any weights. If you made it (a learned payload taken in with ndiff release job --payload) and checked it (ndiff diff --eval), accept it by its SHA-256: accept (--accept ${sha256.slice(0, 16)}) when publishing`, { found: header.targetFingerprint, expected: to.fingerprint, sha256 });
    }
    // A lossy GGUF block payload is on-grid: its header says `blocks`, as an exact one's does.
    if (record.modelKind === 'gguf') method = 'ongrid';
  } else {
    method = 'exact';
  }
  const entry: ManifestPayload = {
    file: `blobs/${sha256}`,
    length: bytes.length,
    sha256,
    base: header.baseFingerprint,
    target: header.targetFingerprint,
    sequence: header.sequence,
    fromVersion: job.fromVersion,
    toVersion: to.version,
    method,
    exact,
    ...(isStructuralPayload(bytes) ? { structural: true as const } : {}),
  };
  const claimed = result.payload;
  if (claimed) {
    for (const k of ['length', 'sha256', 'base', 'target', 'sequence', 'fromVersion', 'toVersion', 'exact'] as const) {
      if (claimed[k] !== entry[k]) throw refuse(`its result file claims ${k} ${JSON.stringify(claimed[k])}, the payload is ${JSON.stringify(entry[k])}`, { field: k, claimed: claimed[k], found: entry[k] });
    }
  }
  return entry;
}

/**
 * Whether a job's top-k payload is checked in one pass ({@link checkTopkPayload}) rather than
 * rebuilt: the encoder ranked the change from the job's base to the version (`topkDiff`, or
 * `diffOnnxModels` for .onnx and .tflite files). A chain without error feedback (the version's
 * own change, onto the state) keeps the rebuild.
 */
function onePassCheckable(job: ReleaseJob, policy: EdgePolicy): boolean {
  return policy.method === 'topk' && !(job.via && policy.errorFeedback === false);
}

/** Check a top-k payload against the job's base and version in one pass; a refusal is thrown by `refuse`. */
async function checkTopkJobPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, policy: EdgePolicy, bytes: Uint8Array, refuse: (why: string, details?: Record<string, unknown>) => Error): Promise<void> {
  const to = recordVersion(record, job.toVersion);
  const base = await openState(releaseDir, record, job.fromVersion, job.base, job.via);
  try {
    const target = await openState(releaseDir, record, to.version, to.fingerprint);
    try {
      const keepsDtypes = record.modelKind === 'onnx' || record.modelKind === 'tflite';
      // As diffOnnxModels: the same quantization in both files; float16 weights take f32 deltas only.
      if (keepsDtypes) checkOnnxPair(base.store, target.store);
      const halves = keepsDtypes && base.store.list().some((e) => e.patchable !== false && ['FLOAT16', 'BFLOAT16'].includes((e as { dtype?: string }).dtype ?? ''));
      const checked = checkTopkPayload(await getHasher(), base.store, target.store, bytes, { budgetBytes: parseBudget(policy.budget ?? '', base.weightBytes), budgetName: policy.budget, ...(halves ? { codecs: ['f32'] as const } : {}) });
      // Values every stored weight's dtype and the file's byte offsets can hold (devices refuse others).
      if (keepsDtypes) checkStoredGrids(base.store, checked);
    } catch (e) {
      if (e instanceof TopkCheckError) throw refuse(`its payload ${e.message}`, e.details);
      throw refuse(`its payload cannot be checked as a top-k payload (${(e as Error).message})`);
    } finally {
      await target.dispose();
    }
  } finally {
    await base.dispose();
  }
}

/** A finished job's result and unsigned payload; undefined when the job has not run. */
export async function readJobResult(releaseDir: string, id: string): Promise<{ result: JobResult; payload?: Uint8Array } | undefined> {
  const files = jobFiles(releaseDir, id);
  let result: JobResult;
  try {
    result = JSON.parse(await readFile(files.result, 'utf8')) as JobResult;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (e instanceof SyntaxError) throw new PayloadFormatError(`job ${id}: ${files.result} is not JSON (${e.message}): run the job again (ndiff release job --id ${id})`, { job: id });
    throw e;
  }
  if (typeof result !== 'object' || result === null || (result.payload !== undefined && (typeof result.payload !== 'object' || result.payload === null)) || (result.skipped !== undefined && typeof result.skipped !== 'string')) {
    throw new PayloadFormatError(`job ${id}: ${files.result} is not a job result \`ndiff release job\` writes: run the job again (ndiff release job --id ${id})`, { job: id });
  }
  if (!result.payload) return { result };
  const payload = new Uint8Array(await readFile(files.payload));
  if (payload.length !== result.payload.length || sha256Of(payload) !== result.payload.sha256) {
    throw new UsageError(`job ${id}: ${files.payload} does not match its result file (length or SHA-256): run the job again (ndiff release job --id ${id})`);
  }
  // The header must say what the result says (a job file from another release is caught here).
  const h = await payloadHeaderOf(payload);
  if (h.modelId !== undefined && (h.baseFingerprint !== result.payload.base || h.targetFingerprint !== result.payload.target || h.sequence !== result.payload.sequence)) {
    throw new UsageError(`job ${id}: the payload's header does not match its result file: run the job again`);
  }
  return { result, payload };
}
