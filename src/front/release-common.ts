/**
 * What the release calls (src/front/release.ts, release-jobs.ts, release-queue.ts) share: the
 * folder option, a job's line as the plan prints it, keys and expiries as options give them, and
 * the words for a lossy payload.
 */
import type { KeyObject } from 'node:crypto';
import { UsageError } from '../core/errors.ts';
import type { RunJobResult } from '../release/jobs.ts';
import type { PublishResult } from '../release/publish.ts';
import { readRecord, type ReleaseJob, type ReleaseRecord } from '../release/record.ts';
import { ticketsOf } from '../release/ticket.ts';
import { learnedBlobs, type LearnedMethod } from '../release/learned.ts';
import { readPrivateKeyFile } from '../sign/node-keys.ts';
import { parseExpiry } from '../core/expiry.ts';

/** The option every release call takes. */
export interface ReleaseDirOptions {
  /** The release folder. */
  release: string;
}

/** A planned job as `ndiff release add --plan` prints it, one per line. */
export interface ReleaseJobLine {
  id: string;
  fromVersion: number;
  toVersion: number;
  /** The fingerprint of the job's base. */
  base: string;
  /** When the base is a state a lossy payload reached: that payload's SHA-256. */
  via?: string;
  /** `exact`, `topk`, or a learned job's training method (`sparse`, `lowbit`, `auto`...). */
  method: 'exact' | 'topk' | LearnedMethod;
  budget?: string;
  /** The command that runs the job. */
  command: string;
  /**
   * The files of the release folder the job reads besides `release.json` (`blobs/<sha256>`: its
   * base's and target's files, and a lossy chain's payloads), so a CI job can be given just these.
   */
  inputs: string[];
}

/** The record of a release folder; a UsageError when it holds none. */
export async function readExisting(dir: string): Promise<ReleaseRecord> {
  const record = await readRecord(dir);
  if (!record) throw new UsageError(`${dir} holds no release (no release.json): create it with release.add (\`ndiff release add --release ${dir} --model PATH --model-id ID --key private.pem\`)`, { release: dir });
  return record;
}

/** The default manifest expiry of `add`, `publish` and `run`: 30 days from now. */
export const DEFAULT_RELEASE_EXPIRES = '30d';

/** The lines of the pending plan's jobs as `ndiff release add --plan` prints them (none when nothing is pending). */
export function jobLines(dir: string, record: ReleaseRecord): ReleaseJobLine[] {
  return ticketsOf(record).map(({ job, versions, via, chain }) => {
    const inputs = [...new Set([...versions.flatMap((v) => v.files.map((f) => f.file)), ...(chain ?? []).map((p) => p.file), ...(via ? [via.file] : []), ...learnedBlobs(job.policy.learned).map((f) => f.file)])];
    return { id: job.id, fromVersion: job.fromVersion, toVersion: job.toVersion, base: job.base, ...(job.via ? { via: job.via } : {}), method: job.policy.learned?.method ?? (job.policy.method === 'learned' ? 'auto' : job.policy.method), ...(job.policy.budget ? { budget: job.policy.budget } : {}), command: `ndiff release job --release ${dir} --id ${job.id}`, inputs };
  });
}

/** A private key from a path (with the warning a key others can read gets) or as given. */
export async function privateKeyOf(key: string | KeyObject, warnings: string[]): Promise<KeyObject> {
  return typeof key === 'string' ? readPrivateKeyFile(key, (l) => warnings.push(l.replace(/^warning: /, ''))) : key;
}

/** An expiry option (a Date, an ISO date or a duration) in seconds since 1970. */
export function expiryOf(expires: string | Date | undefined): number {
  if (expires instanceof Date) {
    if (Number.isNaN(expires.getTime())) throw new UsageError('expires (--expires) is an invalid Date: give a valid Date, an ISO date or a duration such as 30d');
    return Math.floor(expires.getTime() / 1000);
  }
  return parseExpiry(expires ?? DEFAULT_RELEASE_EXPIRES);
}

/** What a lossy payload is, in words: how much of the change it carries and where devices end. */
export function lossyText(job: ReleaseJob, result: RunJobResult): string {
  const c = result.closeness;
  if (job.policy.method === 'learned' && c) {
    const close = c.metric === 'top1' && c.agreement !== null ? `top-1 agreement ${(100 * c.agreement).toFixed(2)}%` : `mean |output − teacher| ${c.meanAbsDiff.toPrecision(3)}`;
    return `payload ${job.id} is lossy (learned within ${job.policy.budget}): it reaches ${result.payload?.target}, not version ${job.toVersion}; on the plan's ${c.examples} eval inputs base + payload has ${close} with the teacher (publish measures it again before signing)`;
  }
  if (result.payload?.method === 'ongrid') {
    return `payload ${job.id} is on-grid (within ${job.policy.budget}): devices that take it hold a valid GGUF file in which each changed block is ${job.via ? 'the state\'s' : `version ${job.fromVersion}'s`} or version ${job.toVersion}'s (${result.payload.target}, not version ${job.toVersion} byte for byte)`;
  }
  const share = result.carried !== undefined ? `it carries ${(100 * result.carried).toFixed(1)}% of the weight change from version ${job.fromVersion} to ${job.toVersion} (by squared size)` : `it reaches ${result.payload?.target}, not version ${job.toVersion}`;
  return `payload ${job.id} is lossy (top-k within ${job.policy.budget}): ${share}; devices that take it hold a model near version ${job.toVersion}, not version ${job.toVersion}, and for a retrained version, whose weights all moved a little, its outputs can be far from version ${job.toVersion}'s`;
}

/**
 * The warnings for the lossy payloads a publication signed from jobs' results (`release publish`,
 * `release run`; `release add` says it of the payloads it makes itself): where devices that take
 * each one end, and that it was planned exact when a job gave its edge a budget of its own.
 */
export function lossySignedWarnings(published: Pick<PublishResult, 'lossy'>): string[] {
  return published.lossy.map(({ id, payload, planned, built }) => {
    // A learned job's payload was measured before signing (its closeness to the teacher, on the plan's eval inputs).
    if (planned.method === 'learned') return `payload ${id} was signed lossy (${payload.method} learned within ${planned.budget}): devices that take it hold a model near version ${payload.toVersion}, not version ${payload.toVersion}, measured on the plan's eval inputs before signing`;
    const how = built?.budget ? `${payload.method} within ${built.budget}` : payload.method;
    const plannedExact = planned.method === 'exact' ? `, though version ${payload.toVersion} was planned with exact payloads (its job gave the edge a budget of its own)` : '';
    return `payload ${id} was signed lossy (${how})${plannedExact}: devices that take it hold a model near version ${payload.toVersion}, not version ${payload.toVersion}, and nothing measured it on inputs; measure a job's payload before publishing (ndiff release job --export DIR, then ndiff diff --base DIR/base --target DIR/target --eval INPUTS), or keep the edge exact`;
  });
}

/** A budget option as the record keeps it: a string, or undefined when none is given. */
export function budgetOf(budget: string | number | undefined): string | undefined {
  return budget !== undefined && budget !== '' ? String(budget) : undefined;
}
