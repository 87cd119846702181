/**
 * Running a learned job (`ndiff worker`, `ndiff release job`): the job's base (the version, or
 * the state its lossy chain reached), its teacher (the target version, or the teacher the plan
 * named) and its data are written from the release folder's blobs into a temporary folder, and
 * the payload is trained there by the same front `ndiff train` runs (`train()`, src/train/front.ts)
 * with the plan's options, so the same options and seed give the same bytes as `ndiff train` on
 * those files. Each epoch is reported as the job's progress; the payload is then measured on the
 * job's eval inputs (learned-check.ts), the figure the result claims.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { UsageError } from '../core/errors.ts';
import { importWithTrainerPeers } from '../train/peer.ts';
import { layOutFiles, teacherPath, type LearnedCloseness } from './learned.ts';
import { measureLearned } from './learned-check.ts';
import { writeState } from './package.ts';
import { recordVersion, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** What a learned job made: the payload, the method written (auto's choice under `auto`), and the closeness it measured. */
export interface LearnedJobPayload {
  bytes: Uint8Array;
  method: string;
  closeness: LearnedCloseness;
}

/** Train job `job`'s payload by its learned policy (see the file's comment). */
export async function trainLearnedJob(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, onProgress: (line: string) => void = () => {}): Promise<LearnedJobPayload> {
  const spec = job.policy.learned;
  if (job.policy.method !== 'learned' || !spec || !job.policy.budget) throw new UsageError(`job ${job.id} is not a learned job (its policy is ${job.policy.method})`);
  const work = await mkdtemp(path.join(tmpdir(), 'ndiff-learned-'));
  try {
    const dir = async (name: string) => { const at = path.join(work, name); await mkdir(at, { recursive: true }); return at; };
    const base = await writeState(releaseDir, record, job.fromVersion, job.base, job.via, await dir('base'));
    const teacher = spec.teacher
      ? teacherPath(await layOutFiles(releaseDir, spec.teacher.files, path.join(work, 'teacher')), spec.teacher.files, record.modelKind)
      : await writeState(releaseDir, record, job.toVersion, recordVersion(record, job.toVersion).fingerprint, undefined, await dir('target'));
    const data = await layOutFiles(releaseDir, spec.train, path.join(work, 'train'));
    // The trainer is loaded by its path at run time, a specifier no bundler follows: the main entry
    // reaches this file, and must carry neither the trainers nor tfjs (a worker loads them here).
    const trainer = new URL(`../train/front${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;
    const { train } = await importWithTrainerPeers(() => import(trainer) as Promise<typeof import('../train/front.ts')>, 'a learned release job');
    onProgress(`${job.id}: training ${spec.method} toward ${spec.teacher ? 'the plan\'s teacher' : `version ${job.toVersion}`} within ${job.policy.budget}, ${spec.epochs} epoch(s), seed ${spec.seed}, ${spec.threads} thread(s)`);
    const res = await train({
      base, teacher, train: data, method: spec.method, budget: job.policy.budget, epochs: spec.epochs, seed: spec.seed, tune: spec.tune, threads: spec.threads,
      backend: 'auto', modelId: record.modelId, sequence: job.toVersion,
      onProgress: (e) => {
        // Batches are left out: an epoch is the job's unit of progress on the queue.
        if (e.kind === 'epoch') onProgress(`${job.id}: epoch ${e.epoch}/${e.epochs}: ${e.text}`);
        else if (e.kind !== 'batch') onProgress(`${job.id}: ${e.text}`);
      },
    });
    onProgress(`${job.id}: trained (${res.method}, ${res.bytes} bytes, backend ${res.backend}); measuring on the job's eval inputs`);
    const m = await measureLearned(releaseDir, record, job, res.payload, (line) => onProgress(`${job.id}: ${line}`));
    const closeness: LearnedCloseness = { examples: m.examples, metric: m.metric, agreement: m.agreement, meanAbsDiff: m.meanAbsDiff };
    return { bytes: res.payload, method: res.method, closeness };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
