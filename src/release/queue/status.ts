/**
 * What `release.status` reports of each job of a plan on the queue: a type with no import, so the
 * `neural-diff` entry's declarations name it without reaching the job engine's module, whose types
 * come from the optional `bullmq` and `ioredis` (a project without them still type-checks).
 */

/** One job of the pending plan, as `ndiff release status` lists it. */
export interface PlanJobStatus {
  id: string;
  state: 'waiting' | 'running' | 'done' | 'failed' | 'refused' | 'not queued';
  /** Tries so far. */
  attempts: number;
  /** The last progress line a worker reported. */
  progress?: string;
  /** Why it failed (a worker's error) or was refused (publish's checks). */
  reason?: string;
}
