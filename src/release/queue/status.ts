/**
 * What `release.status` reports of each job of a plan on the queue, and what `release.cancel`
 * took off it: types with no import, so the
 * `neural-diff` entry's declarations name it without reaching the job engine's module, whose types
 * come from the optional `bullmq` and `ioredis` (a project without them still type-checks).
 */

/** One job of the pending plan, as `ndiff release status` lists it. */
export interface PlanJobStatus {
  id: string;
  state: 'waiting' | 'running' | 'done' | 'failed' | 'refused' | 'not queued';
  /** Tries so far. */
  attempts: number;
  /** The last progress line a worker reported, whole. */
  progress?: string;
  /** A running job: the worker that took it (`HOST:PID`, as `ndiff worker` names itself). */
  worker?: string;
  /** A running job: milliseconds since its worker last reported progress (the worker's clock against this machine's). */
  progressAgeMs?: number;
  /**
   * A running job: milliseconds until its lock in Redis lapses unless its worker renews it (every
   * half of `--lock-seconds`); 0 when it has lapsed: its worker is gone, and a live worker takes
   * the job again at its next look for stalled jobs.
   */
  lockExpiresInMs?: number;
  /** Why it failed (a worker's error) or was refused (publish's checks). */
  reason?: string;
}

/** What cancelling a plan on the queue did. */
export interface QueueCancel {
  /** The plan's id on the queue. */
  plan: string;
  /** Payload jobs taken off the queue before any worker started them (waiting, delayed or retrying). */
  waiting: number;
  /** Results of finished jobs (done or failed) dropped from the queue. */
  finished: number;
  /** Jobs a worker is running: left to finish; their results are discarded. */
  running: string[];
  /** Whether the plan's publish job was on the queue (it is removed). */
  publish: boolean;
  /** Whether a run of the plan held the release's lock on the queue (it is let go). */
  lock: boolean;
}
