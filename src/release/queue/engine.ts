/**
 * The job engine behind `ndiff release run`, `ndiff worker` and `ndiff release status`: BullMQ on
 * Redis, an optional peer dependency loaded here only, by a dynamic `import()` (nothing else of
 * neural-diff loads it, and no device entry can reach this folder). What lives in Redis: one
 * queue of payload jobs every worker serves (`ndiff-release-jobs`), one queue per plan holding
 * its publish job (the parent of the plan's jobs in a BullMQ flow, run by `release run` itself,
 * which holds the release folder and the key), the lock that lets one plan of a release run at a
 * time, and the reasons publish's checks refused a worker's result.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { MissingDependencyError, UsageError } from '../../core/errors.ts';
import type { ReleaseRecord } from '../record.ts';

/** The queue every worker takes payload jobs from. */
export const JOBS_QUEUE = 'ndiff-release-jobs';

export type Bullmq = typeof import('bullmq');
export type RedisClient = InstanceType<typeof import('ioredis').Redis>;

const install = 'npm install bullmq ioredis';

/** Import BullMQ, or say what to install (an optional peer dependency of neural-diff: device apps never install it). */
export async function loadBullmq(): Promise<Bullmq> {
  try {
    return await import('bullmq');
  } catch (e) {
    throw missing('bullmq', e);
  }
}

/** A Redis connection of our own (the plan lock, refusals), with ioredis (what BullMQ uses). */
export async function connectRedis(queueUrl: string): Promise<RedisClient> {
  let Redis: typeof import('ioredis').Redis;
  try {
    ({ Redis } = await import('ioredis'));
  } catch (e) {
    throw missing('ioredis', e);
  }
  // Commands wait through a Redis restart instead of failing (BullMQ asks the same of its clients).
  const client = new Redis(queueUrl, { maxRetriesPerRequest: null });
  client.on('error', () => {}); // it reconnects by itself; a command that cannot wait says why
  return client;
}

/**
 * A Redis connection that answers now, or a UsageError saying none answers at `queueUrl`
 * (`unchanged`: what the caller left as it was): for commands that change the queue once and
 * must not wait forever on a wrong URL (`ndiff release cancel --queue`).
 */
export async function reachRedis(queueUrl: string, unchanged: string, timeoutMs = 5000): Promise<RedisClient> {
  let Redis: typeof import('ioredis').Redis;
  try {
    ({ Redis } = await import('ioredis'));
  } catch (e) {
    throw missing('ioredis', e);
  }
  const client = new Redis(queueUrl, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  let last: Error | undefined;
  client.on('error', (e: Error) => { last = e; });
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch (e) {
    client.disconnect();
    const why = (last ?? (e as Error)).message.split('\n')[0];
    throw new UsageError(`queue (--queue) ${queueUrl}: no Redis answered there (${why}); expected the job queue the plan ran on (the URL ndiff release run was given): check the URL and that Redis is up, then cancel again; ${unchanged}`, { expected: 'a Redis answering at the URL', found: why, queue: queueUrl });
  }
}

function missing(pkg: string, e: unknown): MissingDependencyError {
  return new MissingDependencyError(`the job engine needs the npm package ${pkg}, which is not installed (${(e as Error).message.split('\n')[0]}): run \`${install}\` beside neural-diff (they are optional dependencies, used by ndiff release run, ndiff worker, ndiff release status and ndiff release cancel --queue only)`, { install, package: pkg });
}

/** Check a `--queue` URL (redis:// or rediss://) and return it. */
export function queueUrlOf(queue: string): string {
  let url: URL;
  try {
    url = new URL(queue);
  } catch {
    throw new UsageError(`queue (--queue) ${JSON.stringify(queue)}: expected a Redis URL, e.g. redis://127.0.0.1:6379 (rediss:// for TLS)`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new UsageError(`queue (--queue) ${JSON.stringify(queue)}: expected a redis:// or rediss:// URL, found ${url.protocol}`);
  return queue;
}

/** The connection options BullMQ gets (workers must keep waiting through a Redis restart). */
export function bullConnection(queueUrl: string): { url: string; maxRetriesPerRequest: null } {
  return { url: queueUrl, maxRetriesPerRequest: null };
}

/** The name of one release in Redis keys: readable, and unique per model id. */
function releaseKey(modelId: string): string {
  const slug = modelId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40);
  return `${slug}-${createHash('sha256').update(modelId).digest('hex').slice(0, 8)}`;
}

/**
 * The name of one release folder in Redis keys: its last path segment, readable, and a digest of
 * its absolute path, so that two folders of one model (staging and production) on one queue are
 * two plans, each with its own lock.
 */
function folderKey(releaseDir: string): string {
  const at = path.resolve(releaseDir);
  const slug = (path.basename(at) || 'root').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 24);
  return `${slug}-${createHash('sha256').update(at).digest('hex').slice(0, 8)}`;
}

/** The names one plan (the pending version of a release) has in Redis. */
export interface PlanNames {
  /** `kws-1a2b3c4d-release-0a1b2c3d-v4-9f8e7d6c`: the model, the release folder, the version and its fingerprint. */
  planId: string;
  /** The plan's own queue, holding its publish job. */
  publishQueue: string;
  /** The publish job's id (the flow's parent). */
  parentId: string;
  /** The BullMQ job id of payload job `id` (`v4-from-v2`). */
  childId: (id: string) => string;
  /** The lock one plan of the release holds while it runs. */
  lockKey: string;
  /** Why publish's checks refused a job's result (a hash: job id -> reason). */
  refusedKey: string;
}

/**
 * The Redis names of the plan of `version` (default: the pending one) of the release in
 * `releaseDir`. Without `releaseDir`: the names an earlier neural-diff gave a plan, which named
 * the model only (read to resume, show or cancel a plan queued before an upgrade:
 * {@link namesOnQueue}).
 */
export function planNames(record: ReleaseRecord, releaseDir?: string, version = record.pending?.version): PlanNames {
  if (version === undefined) throw new UsageError(`release ${JSON.stringify(record.modelId)} has no pending version: plan one first (ndiff release add --release DIR --model PATH --plan)`);
  const fingerprint = record.versions.find((v) => v.version === version)?.fingerprint;
  const release = releaseDir === undefined ? releaseKey(record.modelId) : `${releaseKey(record.modelId)}-${folderKey(releaseDir)}`;
  const planId = `${release}-v${version}-${fingerprint?.slice(0, 8) ?? 'unknown'}`;
  return {
    planId,
    publishQueue: `ndiff-release-publish-${planId}`,
    parentId: `${planId}-publish`,
    childId: (id) => `${planId}-${id}`,
    lockKey: `ndiff:release-lock:${release}`,
    refusedKey: `ndiff:release-refused:${planId}`,
  };
}

/** A BullMQ queue whose connection errors are not thrown (it reconnects by itself; its callers say when the queue does not answer). */
export function quietQueue(bull: Bullmq, name: string, connection: ReturnType<typeof bullConnection>): import('bullmq').Queue {
  const queue = new bull.Queue(name, { connection });
  queue.on('error', () => {});
  return queue;
}

/** What {@link namesOnQueue} asks of BullMQ. */
interface PublishJobLookup {
  getJobState(id: string): Promise<string>;
  getJob(id: string): Promise<{ data?: unknown } | undefined>;
  close(): Promise<void>;
}

/**
 * The names of the pending plan of the release in `releaseDir` on the queue: this folder's
 * ({@link planNames}), unless only a plan queued by an earlier neural-diff (named after the model
 * alone) of this very folder is on the queue, unfinished: then its names, so that plan is resumed,
 * shown or cancelled rather than run a second time beside it.
 */
export async function namesOnQueue(record: ReleaseRecord, releaseDir: string, publishQueueOf: (name: string) => PublishJobLookup): Promise<PlanNames & { legacy: boolean }> {
  const names = planNames(record, releaseDir);
  const legacy = planNames(record);
  const own = publishQueueOf(names.publishQueue);
  const old = publishQueueOf(legacy.publishQueue);
  try {
    if ((await own.getJobState(names.parentId)) !== 'unknown') return { ...names, legacy: false };
    const state = await old.getJobState(legacy.parentId);
    if (state === 'unknown' || state === 'completed' || state === 'failed') return { ...names, legacy: false };
    // Another folder of the same model had the same old name: only this folder's plan is taken.
    const data = (await old.getJob(legacy.parentId))?.data as { release?: unknown } | undefined;
    return data?.release === path.resolve(releaseDir) ? { ...legacy, legacy: true } : { ...names, legacy: false };
  } finally {
    await Promise.allSettled([own.close(), old.close()]);
  }
}
