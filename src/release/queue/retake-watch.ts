/**
 * What `ndiff release run` says of its jobs' workers as it watches the plan: a job found stalled
 * (its worker stopped renewing the job's lock: killed, or its machine lost) and put back on the
 * queue, and a job started again (taken again after a stall, or tried again after a failure),
 * with the worker that took it and the attempt number. Read from three fields of each job's hash
 * in Redis (starts, stalls, worker), all jobs in one round trip: never the job itself, whose
 * return value holds a whole payload.
 */
import type { RedisClient } from './engine.ts';

/** Starts and stalls of one job, as last seen. */
interface Seen {
  starts: number;
  stalls: number;
}

/** Watches the plan's jobs for stalls and new starts, one look at a time. */
export class RetakeWatch {
  private readonly seen = new Map<string, Seen>();

  /**
   * @param redis - a connection of the run's own
   * @param jobKey - the Redis key of a payload job's hash, by the job's id in the plan
   * @param ids - the plan's job ids
   * @param say - a progress line
   */
  constructor(private readonly redis: RedisClient, private readonly jobKey: (id: string) => string, private readonly ids: string[], private readonly say: (line: string) => void) {}

  /** Look once: print what changed since the last look (the first look only takes note). */
  async look(): Promise<void> {
    const pipeline = this.redis.pipeline();
    for (const id of this.ids) pipeline.hmget(this.jobKey(id), 'ats', 'stc', 'pb');
    const replies = (await pipeline.exec()) ?? [];
    for (const [i, id] of this.ids.entries()) {
      const [err, fields] = replies[i] ?? [];
      if (err || !Array.isArray(fields)) continue;
      const [ats, stc, pb] = fields as (string | null)[];
      const now: Seen = { starts: Number(ats ?? 0), stalls: Number(stc ?? 0) };
      const before = this.seen.get(id);
      this.seen.set(id, now);
      if (!before) continue;
      const worker = pb ? `worker ${pb}` : 'a worker';
      if (now.stalls > before.stalls) {
        this.say(`${id}: stalled: its worker stopped renewing the job's lock (killed, or its machine lost), so the job went back on the queue for a live worker (stall ${now.stalls})`);
      }
      if (now.starts > before.starts && now.starts > 1) this.say(`${id}: started again by ${worker} (attempt ${now.starts})`);
    }
  }
}
