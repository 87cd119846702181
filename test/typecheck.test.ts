/**
 * The repository type-checks: `tsc --noEmit` over tsconfig.json (src, cli, test, examples, bench).
 * It runs as a test file beside the others rather than before them: on a busy two-core machine
 * it took a minute of one core while the other waited, in each of CI's three suite runs. `npm
 * test` fails on a type error as before, with tsc's own lines in the failure. Checked once per
 * CI, in the in-place run (test/helpers/benchmarks.ts, onceSkip): the types do not change with the
 * Node release or the checkout's path, and the repeat runs on other Node releases spent 40-50 s of
 * a core on it again. `npm run typecheck` runs it alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { onceSkip } from './helpers/benchmarks.ts';

const root = join(import.meta.dirname, '..');

test('tsc --noEmit: the sources, the tests, the examples and the benchmarks type-check', { skip: onceSkip('the type check (tsc) is'), timeout: 1_800_000 }, async () => {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const c = spawn(process.execPath, [tsc, '--noEmit', '-p', root], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, out }));
  });
  assert.equal(code, 0, `tsc --noEmit found type errors:\n${out}`);
});
