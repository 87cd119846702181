/**
 * docs/BENCHMARKS.md quotes the keyword-spotting benchmark's committed results, not figures typed
 * by hand: every cell of its table (accuracy on all words so far, and zstd's bytes) must equal
 * what `npm run bench:kws` wrote to examples/keyword-spotting/results/full.json, rounded as shown.
 * Rerunning the benchmark and not the page (or the reverse) fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.join(import.meta.dirname, '..');

interface Row { update: number; method: string; budgetPct: number | null; bytes: number; accAll: number }

test('the keyword-spotting table of docs/BENCHMARKS.md is what results/full.json holds', () => {
  const rows = JSON.parse(readFileSync(path.join(root, 'examples', 'keyword-spotting', 'results', 'full.json'), 'utf8')) as Row[];
  const page = readFileSync(path.join(root, 'docs', 'BENCHMARKS.md'), 'utf8');
  const section = page.slice(page.indexOf('## Keyword spotting'), page.indexOf('\n## ', page.indexOf('## Keyword spotting') + 3));
  const lines = section.split('\n').filter((l) => l.startsWith('| '));
  const header = lines[0].split('|').slice(2, -1).map((c) => c.trim());
  const names: Record<string, string> = { 'full fine-tuning': 'full', 'zstd --patch-from': 'zstd', 'top-k': 'topk', 'low-rank': 'lowrank' };
  const columns = header.map((h) => {
    const m = /^(.*?)(?: (\d+(?:\.\d+)?)%)?(?: \(.*\))?$/.exec(h) as RegExpExecArray;
    return { method: names[m[1]] ?? m[1], budgetPct: m[2] === undefined ? null : Number(m[2]) };
  });
  const body = lines.slice(1); // the separator row does not start with "| "
  assert.equal(body.length, 5, 'five updates');
  let cells = 0;
  body.forEach((line, u) => {
    line.split('|').slice(2, -1).map((c) => c.trim()).forEach((cell, i) => {
      const { method, budgetPct } = columns[i];
      const row = rows.find((r) => r.update === u + 1 && r.method === method && r.budgetPct === budgetPct);
      assert.ok(row, `results/full.json has no row for update ${u + 1}, ${method} ${budgetPct ?? ''}`);
      const expected = method === 'zstd' ? `${(row.bytes / 1e6).toFixed(2)} MB` : `${(100 * row.accAll).toFixed(1)}%`;
      assert.equal(cell.replace(/\*$/, ''), expected, `update ${u + 1}, ${header[i]}`);
      cells++;
    });
  });
  assert.ok(cells >= 5 * 15, `checked ${cells} cells`);
});
