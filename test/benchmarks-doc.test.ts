/**
 * docs/BENCHMARKS.md quotes the keyword-spotting benchmark's committed results, not figures typed
 * by hand: every cell of its table (accuracy on all words so far, and zstd's bytes) must equal
 * what `npm run bench:kws` wrote to examples/keyword-spotting/results/full.json, rounded as shown,
 * with a `*` exactly where a budget shipped a smaller budget's payload. The same holds for the
 * teacher-chain table of docs/guides/shipping-a-trained-model.md and the keyword table of
 * docs/composite-diffs.md (their mark is ¹). Rerunning the benchmark and not the pages (or the
 * reverse) fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.join(import.meta.dirname, '..');
const allRows = (): Row[] => JSON.parse(readFileSync(path.join(root, 'examples', 'keyword-spotting', 'results', 'full.json'), 'utf8')) as Row[];
const labelRows = (): Row[] => allRows().filter((r) => r.teacher !== true);

interface Row {
  update: number; method: string; budgetPct: number | null; bytes: number; accAll: number;
  teacher?: boolean; shippedFrom?: string; agreement?: number; agreementBefore?: number;
}

test('the keyword-spotting table of docs/BENCHMARKS.md is what results/full.json holds', () => {
  const rows = labelRows();
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
      assert.equal(cell.endsWith('*'), row.shippedFrom !== undefined, `update ${u + 1}, ${header[i]}: a * exactly where the row shipped a smaller budget's payload`);
      cells++;
    });
  });
  assert.ok(cells >= 5 * 15, `checked ${cells} cells`);
});

/** The lines of a Markdown table: the first line starting with `startsWith`, up to the first line that is not a row. */
function table(file: string, startsWith: string): string[][] {
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  const first = lines.findIndex((l) => l.startsWith(startsWith));
  assert.ok(first >= 0, `${file} has a table starting ${startsWith}`);
  const out: string[][] = [];
  for (let i = first; i < lines.length && lines[i].startsWith('|'); i++) out.push(lines[i].split('|').slice(1, -1).map((c) => c.trim()));
  return out.filter((cells) => !/^-+:?$/.test(cells[0]));
}

function find(rows: Row[], update: number, method: string, budgetPct: number | null, teacher: boolean): Row {
  const found = rows.filter((r) => r.update === update && r.method === method && r.budgetPct === budgetPct && (r.teacher === true) === teacher);
  assert.equal(found.length, 1, `results/full.json: one row for update ${update}, ${method} ${budgetPct ?? ''}${teacher ? ' (teacher)' : ''}`);
  return found[0];
}

const pct = (x: number | undefined): string => (100 * (x as number)).toFixed(1);
const mark = (r: Row): string => (r.shippedFrom !== undefined ? ' ¹' : '');

test("the guide's keyword teacher-chain table is what results/full.json holds, ¹ where a row shipped a smaller budget's payload", () => {
  const rows = allRows();
  const [header, ...body] = table('docs/guides/shipping-a-trained-model.md', '| update | teacher (full fine-tune)');
  const teacherCols: Record<string, [string, number]> = {
    'sparse 1%': ['sparse', 1], 'hash 1%': ['hash', 1], 'topk-retrain 1%': ['topk-retrain', 1], 'post-hoc top-k 1%': ['topk', 1],
    'sparse 10%': ['sparse', 10], 'topk-retrain 10%': ['topk-retrain', 10], 'post-hoc top-k 10%': ['topk', 10],
  };
  assert.equal(body.length, 5, 'five updates');
  body.forEach((cells, u) => {
    header.slice(1).forEach((h, i) => {
      const cell = cells[i + 1];
      let expected: string;
      if (h === 'teacher (full fine-tune)') expected = pct(find(rows, u + 1, 'full', null, false).accAll);
      else if (h === 'device before: agreement') expected = pct(find(rows, u + 1, 'sparse', 1, true).agreementBefore);
      else if (h === 'label-trained sparse 1%') expected = pct(find(rows, u + 1, 'sparse', 1, false).accAll);
      else {
        assert.ok(teacherCols[h], `a known column: ${h}`);
        const r = find(rows, u + 1, teacherCols[h][0], teacherCols[h][1], true);
        expected = `${pct(r.accAll)} / ${pct(r.agreement)}${mark(r)}`;
      }
      assert.equal(cell, expected, `update ${u + 1}, ${h}`);
    });
  });
});

test("composite-diffs.md's keyword table is what results/full.json holds, ¹ where a row shipped a smaller budget's payload", () => {
  const rows = allRows();
  const [header, ...body] = table('docs/composite-diffs.md', '| update | full | sparse 0.5% | sparse-lora 0.5%');
  assert.equal(body.length, 5, 'five updates');
  body.forEach((cells, u) => {
    header.slice(1).forEach((h, i) => {
      const m = /^(\S+)(?: (\d+(?:\.\d+)?)%)?$/.exec(h) as RegExpExecArray;
      const r = find(rows, u + 1, m[1], m[2] === undefined ? null : Number(m[2]), false);
      assert.equal(cells[i + 1], `${pct(r.accAll)}${mark(r)}`, `update ${u + 1}, ${h}`);
    });
  });
});
