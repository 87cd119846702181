/**
 * The examples' child processes (the keyword benchmark's jobs, its data workers) run the parent's
 * sources: they start with the parent's flags plus tsx and the `neural-diff-source` condition, so
 * `neural-diff` resolves to `src/` in them, never to a stale or absent `dist/`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { childExecArgv } from '../examples/lib/child-exec-argv.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

function resolvedIn(execArgv: string[]): Promise<{ resolved: string; execArgv: string[] }> {
  return new Promise((res, rej) => {
    const child = fork(fileURLToPath(new URL('./helpers/resolve-child.ts', import.meta.url)), [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let got: { resolved: string; execArgv: string[] } | undefined;
    child.on('message', (m) => (got = m as typeof got));
    child.on('error', rej);
    child.on('exit', (code) => (got && code === 0 ? res(got) : rej(new Error(`the child exited with ${code}`))));
  });
}

test('a child started from a parent run without the source condition resolves neural-diff to src/, keeping the parent\'s other flags', async () => {
  const argv = childExecArgv(['--import', 'tsx', '--max-old-space-size=3000', '--inspect=9229']);
  assert.deepEqual(argv, ['--import', 'tsx', '--max-old-space-size=3000', '--conditions=neural-diff-source']);
  const child = await resolvedIn(argv);
  assert.equal(fileURLToPath(child.resolved), `${root}src/index.ts`);
  assert.ok(child.execArgv.includes('--max-old-space-size=3000'));
  // Given already, in any spelling: not added twice; a parent without tsx gets it.
  assert.deepEqual(childExecArgv(['--conditions', 'neural-diff-source', '--import', 'tsx']), ['--conditions', 'neural-diff-source', '--import', 'tsx']);
  assert.deepEqual(childExecArgv(['-C', 'neural-diff-source']), ['-C', 'neural-diff-source', '--import', 'tsx']);
  assert.deepEqual(childExecArgv([]), ['--import', 'tsx', '--conditions=neural-diff-source']);
});

test('the keyword benchmark forks its jobs and its data workers with those flags', () => {
  for (const file of ['examples/keyword-spotting/bench.ts', 'examples/keyword-spotting/pool.ts']) {
    const source = readFileSync(`${root}${file}`, 'utf8');
    const forks = source.split('\n').filter((l) => /\bfork\(/.test(l));
    assert.ok(forks.length > 0, file);
    for (const l of forks) assert.match(l, /execArgv: childExecArgv\(\)|\{ execArgv,/, `${file}: ${l.trim()}`);
    assert.match(source, /childExecArgv\(\)/, file);
  }
});
