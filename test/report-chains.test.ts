/**
 * `ndiff report` on chains (issue 64): where result rows carry the version a chain started from
 * (`start`) or its newly wrong examples (`newlyWrong`), the report shows, per method, budget and
 * starting version, the agreement and the newly wrong share after 1..N updates; rows without
 * them get no such table; bad values are refused naming the row and the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHtml, renderMarkdown } from '../src/report/report.ts';
import { reportRows } from '../src/report/rows.ts';
import { UsageError } from '../src/core/errors.ts';

/** A learned chain at 5% from version 0 over three updates, and one from version 1 over two. */
function chainRows() {
  const row = (update: number, start: number, agreement: number, newlyWrong: number) => ({ update, start, method: 'lowbit', teacher: true, budgetPct: 5, bytes: 4000, accAll: 0.9, agreement, newlyWrong });
  return reportRows([
    row(1, 0, 0.991, 0.004), row(2, 0, 0.985, 0.007), row(3, 0, 0.979, 0.012),
    row(2, 1, 0.99, 0.003), row(3, 1, 0.986, 0.006),
  ]);
}

test('the chains table: agreement and newly wrong after 1..N updates, one row per starting version', () => {
  const md = renderMarkdown(chainRows());
  const at = md.indexOf('## Chains: agreement and newly wrong after 1..N updates');
  assert.ok(at >= 0, md);
  const lines = md.slice(at).split('\n').filter((l) => l.startsWith('|'));
  assert.equal(lines[0], '| method and budget | from version | after 1 (agr. / newly wrong) | after 2 (agr. / newly wrong) | after 3 (agr. / newly wrong) |');
  assert.equal(lines[2], '| lowbit (teacher) 5% | 0 | 99.10% / 0.40% | 98.50% / 0.70% | 97.90% / 1.20% |');
  assert.equal(lines[3], '| lowbit (teacher) 5% | 1 | 99.00% / 0.30% | 98.60% / 0.60% |  |');
  const html = renderHtml(chainRows());
  assert.match(html, /<h2>Chains: agreement and newly wrong after 1\.\.N updates<\/h2>/);
  assert.match(html, /<table id="chains">.*<td>97\.90% \/ 1\.20%<\/td>/s);
});

test('rows that carry no chain figures get no chains table', () => {
  const rows = reportRows([{ update: 1, method: 'lowbit', teacher: true, budgetPct: 5, bytes: 4000, accAll: 0.9, agreement: 0.99 }]);
  assert.doesNotMatch(renderMarkdown(rows), /## Chains/);
  assert.doesNotMatch(renderHtml(rows), /id="chains"/);
});

test('a start that is not an earlier version, or a newly wrong share outside 0-1, is refused naming the row and field', () => {
  const base = { update: 2, method: 'lowbit', budgetPct: 5, bytes: 4000, accAll: 0.9 };
  assert.throws(() => reportRows([{ ...base, start: 2 }], 'chains.json'), (e: unknown) => e instanceof UsageError && /chains\.json: row 0: "start" must be the version the chain started from, a whole number from 0 to update - 1 \(1\), found 2/.test(e.message));
  assert.throws(() => reportRows([{ ...base, newlyWrong: 1.5 }], 'chains.json'), (e: unknown) => e instanceof UsageError && /row 0: "newlyWrong" must be a share from 0 to 1 or null, found 1\.5/.test(e.message));
});
