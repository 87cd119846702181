/**
 * The repository type-checks: `tsc --noEmit` over tsconfig.json (src, cli, test, examples, bench).
 * It runs as a test file beside the others rather than before them: on a busy two-core machine
 * it took a minute of one core while the other waited, in each of CI's three suite runs. `npm
 * test` fails on a type error as before, with tsc's own lines in the failure. (In a sharded
 * repeat run, test/fresh-clone/run.sh --shard, it runs in the part that holds this file: the
 * types do not change with the Node release.) `npm run typecheck` runs it alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');

test('tsc --noEmit: the sources, the tests, the examples and the benchmarks type-check', { timeout: 1_800_000 }, async () => {
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
