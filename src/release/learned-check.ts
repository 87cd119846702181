/**
 * Measuring a learned job's payload on the job's eval inputs: base + payload against the teacher
 * (the job's target version, or the teacher the plan named), beside the unpatched base. A worker
 * reports this figure with its result; `release run` and `publish` measure it again themselves,
 * from the release folder's own blobs, and refuse a result whose measured closeness is worse than
 * the worker claimed beyond {@link LEARNED_CLOSENESS_TOLERANCE}, or that takes the model further
 * from the teacher than not updating. tfjs loads only when a measurement runs
 * (src/front/measure/).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { NeuralDiffError, UsageError } from '../core/errors.ts';
import type { PayloadCloseness } from '../diff/closeness.ts';
import { measurePayload } from '../front/measure/payload-eval.ts';
import { layOutFiles, LEARNED_CLOSENESS_TOLERANCE, teacherPath, type LearnedCloseness } from './learned.ts';
import { openState, writeState } from './package.ts';
import { parseBudget } from '../diff/budget.ts';
import { isStructuralPayload } from '../apply/rebuild.ts';
import { recordVersion, type JobResult, type ReleaseJob, type ReleaseRecord } from './record.ts';

/** A measurement as a result carries it: NaN agreement (outputs that are not classes) as null. */
export function closenessOf(m: PayloadCloseness): LearnedCloseness & { movesAway: boolean; baseAgreement: number | null; baseMeanAbsDiff: number } {
  const num = (x: number) => (Number.isNaN(x) ? null : x);
  return { examples: m.examples, metric: m.metric, agreement: num(m.patched.agreement), meanAbsDiff: m.patched.meanAbsDiff, movesAway: m.movesAway, baseAgreement: num(m.base.agreement), baseMeanAbsDiff: m.base.meanAbsDiff };
}

/**
 * Measure `bytes` as job `job`'s payload: its base (the version, or the state its lossy chain
 * reached), the teacher and the eval inputs written from the release folder's blobs into a
 * temporary folder, then base + payload run on the inputs beside the teacher.
 */
export async function measureLearned(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, bytes: Uint8Array, progress: (line: string) => void = () => {}): Promise<ReturnType<typeof closenessOf>> {
  const spec = job.policy.learned;
  if (job.policy.method !== 'learned' || !spec) throw new UsageError(`job ${job.id} is not a learned job (its policy is ${job.policy.method})`);
  const work = await mkdtemp(path.join(tmpdir(), 'ndiff-learned-measure-'));
  try {
    const base = await writeState(releaseDir, record, job.fromVersion, job.base, job.via, await mkdirIn(work, 'base'));
    const teacher = spec.teacher
      ? teacherPath(await layOutFiles(releaseDir, spec.teacher.files, path.join(work, 'teacher')), spec.teacher.files, record.modelKind)
      : await writeState(releaseDir, record, job.toVersion, recordVersion(record, job.toVersion).fingerprint, undefined, await mkdirIn(work, 'target'));
    const evalDir = await layOutFiles(releaseDir, spec.eval, path.join(work, 'eval'));
    const labels = { base: `${job.id}'s base`, target: spec.teacher ? 'the job\'s teacher' : `version ${job.toVersion}` };
    return closenessOf(await measurePayload({ base, target: teacher, eval: evalDir, state: [], labels }, bytes, progress));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A new folder `name` in `dir`. */
async function mkdirIn(dir: string, name: string): Promise<string> {
  const at = path.join(dir, name);
  await mkdir(at, { recursive: true });
  return at;
}

/** Whether `c` is a closeness a result may claim. */
function isCloseness(c: unknown): c is LearnedCloseness {
  const l = c as LearnedCloseness;
  return typeof l === 'object' && l !== null && Number.isSafeInteger(l.examples) && (l.metric === 'top1' || l.metric === 'mae')
    && (l.agreement === null || (typeof l.agreement === 'number' && Number.isFinite(l.agreement))) && typeof l.meanAbsDiff === 'number' && Number.isFinite(l.meanAbsDiff);
}

/**
 * Publish's check of a learned job's payload (the payload's header, base and sequence are
 * checked before, by `verifyJobResult`): measured here on the job's eval inputs, never taken from
 * the worker. Refused (`refuse`) when the payload is over the plan's budget, when the result claims no closeness, when the measurement is
 * worse than the claim beyond {@link LEARNED_CLOSENESS_TOLERANCE}, or when base + payload is
 * further from the teacher than the unpatched base.
 */
export async function checkLearnedPayload(releaseDir: string, record: ReleaseRecord, job: ReleaseJob, result: JobResult, bytes: Uint8Array, refuse: (why: string, details?: Record<string, unknown>) => Error): Promise<LearnedCloseness> {
  const claim = result.closeness;
  if (!isCloseness(claim)) throw refuse(`its result names no closeness to the teacher (a learned job's result carries the closeness its worker measured on the job's eval inputs), found ${JSON.stringify(claim ?? null)}`, { expected: 'closeness', found: claim ?? null });
  // Within the plan's budget (of the base as stored, as `ndiff train` reads it); a full fine-tune
  // has none, and a structural payload's rebuild comes on top of its learned part.
  if (job.policy.learned?.method !== 'full' && !isStructuralPayload(bytes)) {
    const base = await openState(releaseDir, record, job.fromVersion, job.base, job.via);
    const budgetBytes = await Promise.resolve().then(() => parseBudget(job.policy.budget ?? '', base.weightBytes)).finally(() => base.dispose());
    if (bytes.length > budgetBytes) throw refuse(`its payload is ${bytes.length} bytes, over the plan's budget of ${budgetBytes} bytes (${job.policy.budget} of the base as stored)`, { expected: budgetBytes, found: bytes.length });
  }
  let m;
  try {
    m = await measureLearned(releaseDir, record, job, bytes);
  } catch (e) {
    if (!(e instanceof NeuralDiffError)) throw e;
    throw refuse(`its payload cannot be measured on the job's eval inputs (${e.message})`);
  }
  const words = (c: LearnedCloseness) => (c.metric === 'top1' ? `top-1 agreement ${(100 * (c.agreement ?? NaN)).toFixed(2)}%` : `mean |output − teacher| ${c.meanAbsDiff.toPrecision(4)}`);
  if (claim.examples !== m.examples || claim.metric !== m.metric) throw refuse(`its result claims a closeness on ${claim.examples} inputs by ${claim.metric}, the job's eval inputs are ${m.examples}, measured by ${m.metric}`, { expected: { examples: m.examples, metric: m.metric }, found: { examples: claim.examples, metric: claim.metric } });
  const tol = LEARNED_CLOSENESS_TOLERANCE;
  const worse = m.metric === 'top1'
    ? (m.agreement ?? 0) < (claim.agreement ?? 0) - tol.agreement
    : m.meanAbsDiff > claim.meanAbsDiff * (1 + tol.meanAbsDiffRatio);
  if (worse) {
    const margin = m.metric === 'top1' ? `${100 * tol.agreement} points of agreement` : `${100 * tol.meanAbsDiffRatio}% of the mean difference`;
    throw refuse(`its result claims ${words(claim)} with the teacher on the job's ${m.examples} eval inputs, publish measured ${words(m)}: worse than claimed by more than ${margin}`, { claimed: claim, measured: { agreement: m.agreement, meanAbsDiff: m.meanAbsDiff } });
  }
  if (m.movesAway) {
    const base = { ...m, agreement: m.baseAgreement, meanAbsDiff: m.baseMeanAbsDiff };
    throw refuse(`base + payload is further from the teacher than the unpatched base on the job's eval inputs (${words(m)}, the base ${words(base)})`, { measured: m });
  }
  return { examples: m.examples, metric: m.metric, agreement: m.agreement, meanAbsDiff: m.meanAbsDiff };
}
