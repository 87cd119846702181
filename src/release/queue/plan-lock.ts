/**
 * The lock in Redis that lets one plan of a release run at a time (`ndiff release run`): taken
 * with the run's own token, renewed only while the stored token is still that token (one Lua
 * script: compare and extend), and let go the same way. A run whose lock lapsed (the process
 * stalled, the network parted) and was taken by another run finds out at its next renewal and is
 * stopped ({@link PlanLockLostError}) without touching the other run's token; a run that cannot
 * renew for more than half the lock's life is stopped too, before the lock can lapse under it.
 */
import { UsageError } from '../../core/errors.ts';
import type { RedisClient } from './engine.ts';

/** Seconds a plan's lock lasts without renewal when none is given. */
export const DEFAULT_PLAN_LOCK_SECONDS = 30;

/** Extend the lock's life only while it holds this run's token: 1 when extended, 0 when it is another's or gone. */
const RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
/** Delete the lock only while it holds this run's token. */
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/**
 * A run of a plan lost its lock: another run of the release holds it now (`details.holder`), or
 * the lock could not be renewed for more than half its life (`details.lock: 'unrenewed'`). The
 * run stopped without signing anything; the plan's jobs stay on the queue for the run that holds
 * the lock (or the next one: jobs done are not run again).
 */
export class PlanLockLostError extends UsageError {}

/** A plan lock held by this run. */
export class PlanLock {
  /** Settles (rejects with {@link PlanLockLostError}) once the lock is lost; never resolves. */
  readonly lost: Promise<never>;
  private timer: NodeJS.Timeout | undefined;
  private renewedAt: number;
  private renewing = false;
  private failure: PlanLockLostError | undefined;
  private fail!: (e: PlanLockLostError) => void;

  private constructor(private readonly redis: RedisClient, private readonly key: string, private readonly holder: string, private readonly lifetimeMs: number, private readonly what: { plan: string; release: string; queue: string }) {
    this.renewedAt = performance.now();
    this.lost = new Promise<never>((_, reject) => { this.fail = reject; });
    this.lost.catch(() => {}); // read by whoever races it; a lock lost after the run ended is no one's error
    this.timer = setInterval(() => { void this.tick(); }, Math.max(50, Math.floor(lifetimeMs / 3)));
  }

  /**
   * Take the lock `key` for `holder` (the run's JSON, with a random token), or return the
   * holder that has it now. Renewed every third of `lifetimeMs` from then on.
   */
  static async take(redis: RedisClient, key: string, holder: string, lifetimeMs: number, what: { plan: string; release: string; queue: string }): Promise<PlanLock | { heldBy: string | null }> {
    if ((await redis.set(key, holder, 'PX', lifetimeMs, 'NX')) !== 'OK') return { heldBy: await redis.get(key) };
    return new PlanLock(redis, key, holder, lifetimeMs, what);
  }

  /** Renew now and throw {@link PlanLockLostError} unless the lock is still this run's (before signing). */
  async assertHeld(): Promise<void> {
    if (this.failure) throw this.failure;
    await this.renew();
    if (this.failure) throw this.failure;
  }

  /** Stop renewing and delete the lock if it is still this run's. */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.redis.eval(RELEASE, 1, this.key, this.holder).catch(() => {});
  }

  private async tick(): Promise<void> {
    if (this.failure) return;
    const unrenewed = (why: string) => {
      const since = performance.now() - this.renewedAt;
      // No renewal answered for over half the lock's life: it may lapse before the next one does.
      if (since > this.lifetimeMs / 2) this.lose('unrenewed', null, `its lock in Redis could not be renewed for ${(since / 1000).toFixed(1)} s, more than half its life (${this.lifetimeMs / 1000} s; ${why}), and another run may take the plan`);
    };
    if (this.renewing) return unrenewed('the queue did not answer');
    await this.renew().catch((e: Error) => unrenewed(e.message.split('\n')[0]));
  }

  private async renew(): Promise<void> {
    this.renewing = true;
    const sent = performance.now();
    try {
      const extended = await this.redis.eval(RENEW, 1, this.key, this.holder, String(this.lifetimeMs));
      if (this.failure) return;
      if (extended === 1) {
        // The lock lives `lifetimeMs` from when the renewal was sent at the latest.
        this.renewedAt = sent;
        return;
      }
      const now = await this.redis.get(this.key).catch(() => null);
      this.lose('taken', now, now
        ? `its lock in Redis lapsed (this process was stalled or the queue did not answer for over ${this.lifetimeMs / 1000} s) and another run holds it now (${now})`
        : `its lock in Redis lapsed (this process was stalled or the queue did not answer for over ${this.lifetimeMs / 1000} s), so another run may have taken the plan meanwhile`);
    } finally {
      this.renewing = false;
    }
  }

  private lose(lock: 'taken' | 'unrenewed', holder: string | null, why: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const { plan, release, queue } = this.what;
    this.failure = new PlanLockLostError(`plan ${plan} stopped: ${why}; nothing was signed by this run, and the lock was left as it is. Expected one run of a plan at a time: see which run holds it (ndiff release status --release ${release} --queue ${queue}) and let it finish; if none does, run the plan again (jobs done are not run again)`, { plan, lock, holder });
    this.fail(this.failure);
  }
}
