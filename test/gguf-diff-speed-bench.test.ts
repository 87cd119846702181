/**
 * `npm run bench:gguf-diff-speed -- --quick` in the suite: the exact diff of a generated 64 MiB
 * Q8_0 pair, blocks rewritten and blocks with a few bytes changed, on one thread and with two
 * worker threads coding the chunks (the same payload bytes, or the bench exits 1), each payload
 * applied in place to a copy of v1 reaching v2 byte for byte (likewise), and its table rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { benchmarkSkip } from './helpers/benchmarks.ts';

const root = path.join(import.meta.dirname, '..');

test('bench:gguf-diff-speed --quick: both pairs diffed, each payload applied to v1 reaches v2', { skip: benchmarkSkip, timeout: 300_000 }, () => {
  const r = spawnSync(process.execPath, ['--conditions=neural-diff-source', '--import', 'tsx', 'bench/gguf-diff-speed.ts', '--quick'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => l.startsWith('| 64 MiB Q8_0'));
  assert.equal(rows.length, 4, r.stdout);
  assert.match(rows[0], /blocks rewritten .*\| this checkout \| [\d.]+ s \| [\d.]+ \| \d+ \| [0-9a-f]{16} \|$/);
  assert.match(rows[1], /blocks rewritten .*\| this checkout, 2 threads \|/);
  assert.match(rows[2], /its scale and 4 other bytes changed .*\| this checkout \|/);
  assert.match(rows[3], /its scale and 4 other bytes changed .*\| this checkout, 2 threads \|/);
  const cells = rows.map((l) => l.split('|').map((c) => c.trim()));
  // One payload at any thread count; the payload of a few bytes a block far smaller than the one of blocks rewritten.
  assert.deepEqual([cells[1][5], cells[1][6]], [cells[0][5], cells[0][6]]);
  assert.deepEqual([cells[3][5], cells[3][6]], [cells[2][5], cells[2][6]]);
  assert.ok(Number(cells[2][5]) < Number(cells[0][5]) / 2, `${cells[2][5]} ${cells[0][5]}`);
  assert.equal(r.stderr.match(/reaches v2 byte for byte/g)?.length, 2, r.stderr);
});
