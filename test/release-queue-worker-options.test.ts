/**
 * `ndiff worker --lock-seconds` (the library's `lockSeconds`): how long a dead worker's job stays
 * locked before another worker takes it again. A deployment with short jobs lowers it to find a
 * dead worker sooner (the job-engine tests run their workers at 2 s); a value that is not a whole
 * number of seconds from 1 to 3600 is refused with a usage error before the worker starts
 * anything. A real `redis-server` (skipped with a message where it is not installed), so that a
 * value taken by mistake starts a real worker, which the test then stops.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { UsageError } from '../src/core/errors.ts';
import { DEFAULT_LOCK_SECONDS, startQueueWorker, type QueueWorkerOptions } from '../src/release/queue/worker.ts';
import { redisSkip, startRedis } from './helpers/redis.ts';
import { runNdiff } from './helpers/ndiff-run.ts';
import { ENGINE_TEST_TIMEOUT } from './helpers/waits.ts';

/** This process's worker folders in the temporary folder (a worker that started made one). */
async function ownWorkerFolders(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => n.startsWith(`ndiff-worker-${process.pid}-`));
}

test('a lock or stall count that is not a whole number in range is refused with a usage error naming it, before a worker starts', { skip: redisSkip, timeout: ENGINE_TEST_TIMEOUT }, async (t) => {
  const redis = await startRedis({ signal: t.signal });
  try {
    const bad: [QueueWorkerOptions, RegExp][] = [
      [{ lockSeconds: 0 }, /lockSeconds \(--lock-seconds\) must be a whole number of seconds from 1 to 3600, found 0: give e\.g\. 10 \(the default\)/],
      [{ lockSeconds: -5 }, /found -5/],
      [{ lockSeconds: 1.5 }, /lockSeconds \(--lock-seconds\) must be a whole number .*found 1\.5/],
      [{ lockSeconds: Number.NaN }, /found NaN/],
      [{ lockSeconds: 3601 }, /from 1 to 3600, found 3601/],
      [{ maxStalls: -1 }, /maxStalls must be a whole number from 0 to 1000, found -1: give e\.g\. 5/],
      [{ maxStalls: 2.5 }, /maxStalls must be a whole number .*found 2\.5/],
    ];
    for (const [options, message] of bad) {
      const before = await ownWorkerFolders();
      const outcome = await startQueueWorker(redis.url, options).then(async (w) => {
        const folders = await ownWorkerFolders();
        await w.close();
        return { started: folders.filter((f) => !before.includes(f)) };
      }, (e: unknown) => e);
      assert.ok(outcome instanceof UsageError, `${JSON.stringify(options)}: expected a usage error, the worker started: ${JSON.stringify(outcome)}`);
      assert.match(outcome.message, message);
      assert.deepEqual(await ownWorkerFolders(), before, `${JSON.stringify(options)}: nothing was started`);
    }
    // The shortest lock is taken, and the worker runs.
    const worker = await startQueueWorker(redis.url, { lockSeconds: 1, maxStalls: 0 });
    await worker.close();
  } finally {
    await redis.close();
  }
});

test('ndiff worker --lock-seconds: said in --help with its default and what a kill costs (on one line; docs/cli/worker.md has the whole of it); a value out of range is a usage error (exit 2)', { timeout: ENGINE_TEST_TIMEOUT }, async () => {
  assert.equal(DEFAULT_LOCK_SECONDS, 10, 'a third of BullMQ\'s own: a kill costs seconds, not a minute (docs/cli/worker.md)');
  // yargs prints --help with console.log.
  const printed: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => { printed.push(parts.map(String).join(' ')); };
  try {
    assert.equal((await runNdiff('worker', '--help')).code, 0);
  } finally {
    console.log = log;
  }
  const help = printed.join('\n');
  const line = /--lock-seconds[\s\S]*?\[default: (\d+)\]/.exec(help)?.[0] ?? '';
  assert.match(line.replace(/\s+/g, ' '), /seconds a dead worker holds its job .*a kill costs one to two/, help);
  assert.match(line, /\[default: 10\]$/);
  const refused: [string, RegExp][] = [
    ['0', /--lock-seconds must be a whole number of seconds from 1 to 3600, found 0: give e\.g\. 10/],
    ['1.5', /--lock-seconds must be a whole number of seconds from 1 to 3600, found 1\.5: give e\.g\. 10/],
    ['soon', /--lock-seconds expects a number, found "soon"/],
  ];
  for (const [value, message] of refused) {
    const res = await runNdiff('worker', '--queue', 'redis://127.0.0.1:1', '--lock-seconds', value);
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, message);
  }
});
