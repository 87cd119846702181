/**
 * A worker's job processes each get a temporary folder of their own (their TMPDIR) inside the
 * worker's folder, removed when the process exits: a job killed mid-way (handed back, or its
 * process killed) used to leave what it had made in the machine's /tmp (a version's files copied
 * out, a learned job's whole training folder) for good. Checked on the pool itself
 * (src/release/queue/sandbox.ts) with a small job process that writes into its temporary folder and
 * waits to be stopped, as a long job does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { JobProcesses, JobStoppedError } from '../src/release/queue/sandbox.ts';
import { tempDir } from './helpers/dirs.ts';

/** Speaks the job processes' protocol: ready, then for a job, a file in os.tmpdir() reported as progress, and no end. */
const JOB = `
import { useJobTemp } from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'release', 'queue', 'sandbox.ts'))};
import { tmpdir } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
useJobTemp();
process.on('message', (m) => {
  if (m?.type !== 'run') return;
  const file = join(tmpdir(), 'half-done.bin');
  writeFileSync(file, Buffer.alloc(1024));
  process.send({ type: 'progress', value: { tmp: tmpdir(), file, env: [process.env.TMPDIR, process.env.TMP, process.env.TEMP] } });
});
process.on('disconnect', () => process.exit(0));
process.send({ type: 'ready' });
`;

/** The job processes' loader, as a worker run from the sources gives them (processorFile). */
const TSX = ['--import', 'tsx', '--conditions=neural-diff-source'];

/** A fresh folder with {@link JOB} written in it as job.mjs. */
async function jobFile(): Promise<{ work: string; file: string }> {
  const work = await tempDir('ndiff-job-temp-');
  const file = join(work, 'job.mjs');
  await writeFile(file, JOB);
  return { work, file };
}

test('each job process has a temporary folder of its own in the worker\'s, removed with the process when a job is stopped mid-way', async () => {
  const { work, file } = await jobFile();
  const tempIn = join(work, 'worker');
  await mkdir(tempIn);
  const pool = new JobProcesses({ file, execArgv: TSX, env: process.env, tempIn });
  const seen: { tmp: string; file: string; env: string[] }[] = [];
  for (let i = 0; i < 2; i++) {
    const stop = new AbortController();
    const run = pool.run({}, (value) => {
      seen.push(value as (typeof seen)[number]);
      assert.ok(existsSync(seen.at(-1)!.file), 'the job wrote into its temporary folder');
      assert.deepEqual(readdirSync(seen.at(-1)!.tmp), ['half-done.bin'], 'the loader kept its cache in the shared temporary folder');
      stop.abort();
    }, stop.signal);
    await assert.rejects(run, JobStoppedError);
  }
  await pool.close();
  assert.equal(seen.length, 2);
  for (const s of seen) {
    const inside = relative(tempIn, s.tmp);
    assert.ok(inside && !inside.startsWith('..') && !isAbsolute(inside), `${s.tmp} is inside ${tempIn}`);
    assert.deepEqual(s.env, [s.tmp, s.tmp, s.tmp]);
  }
  assert.notEqual(seen[0].tmp, seen[1].tmp, 'a new process, a new folder');
  // Both processes were killed mid-job: nothing of theirs is left.
  assert.deepEqual(await readdir(tempIn), []);
});

test('without tempIn, a job process keeps the environment it was given', async () => {
  const { work, file } = await jobFile();
  const pool = new JobProcesses({ file, execArgv: TSX, env: { ...process.env, TMPDIR: work } });
  const stop = new AbortController();
  let tmp = '';
  const run = pool.run({}, (value) => {
    tmp = (value as { tmp: string }).tmp;
    stop.abort();
  }, stop.signal);
  await assert.rejects(run, JobStoppedError);
  await pool.close();
  assert.equal(tmp, work);
});
