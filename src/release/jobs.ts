/**
 * The payloads of a new version, as jobs: one per edge, from a state of each of the last K
 * versions to the new one. A job only computes (it needs the release folder, not the signing
 * key), so a CI matrix or a batch system can run them anywhere; it leaves an unsigned payload
 * and a result in `jobs/`, which `publish` signs and lists.
 *
 * States: each version, and each state a lossy payload (`--method topk`) reached, since a
 * device that applied one holds that, not the version. Lossy payloads are made from versions
 * only; from a lossy state the payload is always exact, so the states per version stay at most
 * K + 1 and every chain ends at a version exactly.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { decodePayload } from '../core/format.ts';
import { getHasher } from '../core/hasher.ts';
import { exactDiff } from '../diff/exact.ts';
import { diffOnnxModels } from '../diff/onnx.ts';
import { topkDiff } from '../diff/topk.ts';
import { parseBudget } from '../diff/budget.ts';
import { makeDirs, writeFileAtomically } from '../io/durable/durable.ts';
import { packageBytes, type ManifestPayload } from '../updater/manifest.ts';
import { sha256Of } from './blobs.ts';
import { openState } from './package.ts';
import { JOBS_DIR, recordVersion, type EdgePolicy, type JobResult, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** The jobs that make the payloads into version `to` (already in the record). */
export function planJobs(record: ReleaseRecord, to: number, policy: EdgePolicy): ReleaseJob[] {
  const target = recordVersion(record, to);
  const jobs: ReleaseJob[] = [];
  const seen = new Set<string>([target.fingerprint]);
  const sources = record.versions.filter((v) => v.version < to && v.version >= to - record.history).sort((a, b) => b.version - a.version);
  for (const v of sources) {
    if (!seen.has(v.fingerprint)) {
      seen.add(v.fingerprint);
      jobs.push({ id: `v${to}-from-v${v.version}`, fromVersion: v.version, toVersion: to, base: v.fingerprint, policy });
    }
    for (const p of record.payloads.filter((x) => !x.exact && x.toVersion === v.version)) {
      if (seen.has(p.target)) continue;
      seen.add(p.target);
      jobs.push({ id: `v${to}-from-v${v.version}-${p.target.slice(0, 8)}`, fromVersion: v.version, toVersion: to, base: p.target, via: p.sha256, policy: { method: 'exact' } });
    }
  }
  return jobs;
}

/** Files a job leaves in `jobs/`. */
export function jobFiles(releaseDir: string, id: string): { result: string; payload: string } {
  if (!/^v\d+-from-v\d+(-[0-9a-f]{8})?$/.test(id)) throw new UsageError(`job id ${JSON.stringify(id)} is not one \`ndiff release add --plan\` prints (v<to>-from-v<from>)`);
  return { result: path.join(releaseDir, JOBS_DIR, `${id}.json`), payload: path.join(releaseDir, JOBS_DIR, `${id}.ndiff`) };
}

/**
 * Run one job: open its base state and the new version, build the payload by its policy, and
 * leave it (unsigned) with its result in `jobs/`. A payload not smaller than the new version's
 * full package is not kept (a device is better off with the package).
 */
export async function runJob(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, onProgress: (line: string) => void = () => {}): Promise<JobResult> {
  const to = recordVersion(record, job.toVersion);
  const base = await openState(releaseDir, record, job.fromVersion, job.base, job.via);
  const target = await openState(releaseDir, record, to.version, to.fingerprint).catch(async (e) => {
    await base.dispose();
    throw e;
  });
  try {
    const hasher = await getHasher();
    const header = { modelId: record.modelId, sequence: to.version, store: 'stored' as const };
    const exact = () => (record.modelKind === 'onnx'
      ? diffOnnxModels(hasher, base.store, target.store, { ...header, mode: 'all', budgetBytes: 0 })
      : exactDiff(hasher, base.store, target.store, header));
    let built = exact();
    let method = 'exact';
    if (job.policy.method === 'topk') {
      const budgetBytes = parseBudget(job.policy.budget ?? '', base.weightBytes);
      // Under the budget already: the exact payload is both smaller and exact.
      if (built.bytes.length > budgetBytes) {
        const diff = record.modelKind === 'onnx' ? diffOnnxModels : topkDiff;
        built = diff(hasher, base.store, target.store, { ...header, budgetBytes, codec: 'auto', onProgress: (m) => onProgress(`  ${job.id}: ${m}`) });
        method = 'topk';
      }
    }
    const full = packageBytes(to);
    const { result: resultFile, payload: payloadFile } = jobFiles(releaseDir, job.id);
    await makeDirs(path.dirname(resultFile));
    let result: JobResult;
    if (built.bytes.length >= full) {
      result = { id: job.id, skipped: `the payload (${built.bytes.length} bytes) is not smaller than version ${to.version}'s full package (${full} bytes): devices holding ${job.base} get the package` };
    } else {
      const h = built.payload.header;
      const payload: ManifestPayload = {
        file: `blobs/${sha256Of(built.bytes)}`, // replaced by the signed blob's name when published
        length: built.bytes.length,
        sha256: sha256Of(built.bytes),
        base: h.baseFingerprint,
        target: h.targetFingerprint,
        sequence: h.sequence,
        fromVersion: job.fromVersion,
        toVersion: to.version,
        method,
        exact: h.targetFingerprint === to.fingerprint,
      };
      await writeFileAtomically(payloadFile, built.bytes);
      result = { id: job.id, payload };
    }
    await writeFileAtomically(resultFile, new TextEncoder().encode(JSON.stringify(result, null, 2) + '\n'));
    onProgress(`${job.id}: ${result.payload ? `${result.payload.length} bytes (${method}${result.payload.exact ? '' : ', lossy'}), full package ${full} bytes` : result.skipped}`);
    return result;
  } finally {
    await base.dispose();
    await target.dispose();
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
    throw e;
  }
  if (!result.payload) return { result };
  const payload = new Uint8Array(await readFile(files.payload));
  if (payload.length !== result.payload.length || sha256Of(payload) !== result.payload.sha256) {
    throw new UsageError(`job ${id}: ${files.payload} does not match its result file (length or SHA-256): run the job again (ndiff release job --id ${id})`);
  }
  // The header must say what the result says (a job file from another release is caught here).
  const h = decodePayload(payload).header;
  if (h.modelId !== undefined && (h.baseFingerprint !== result.payload.base || h.targetFingerprint !== result.payload.target || h.sequence !== result.payload.sequence)) {
    throw new UsageError(`job ${id}: the payload's header does not match its result file: run the job again`);
  }
  return { result, payload };
}
