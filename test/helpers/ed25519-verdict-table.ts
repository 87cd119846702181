/**
 * The speccheck verdict table of docs/security/ed25519-verdicts.md, read back so the tests that
 * measure the verdicts (test/ed25519-vectors.test.ts in Node, test/browser-ed25519.test.ts in
 * Chromium) compare them with what the page says, cell by cell.
 */
import { readFileSync } from 'node:fs';
import type { Verdict } from './ed25519-verdicts.ts';

/** One row of the table: the case number and its verdicts, by column. */
export interface VerdictRow {
  case: number;
  pure: Verdict;
  webcrypto: Verdict;
  pureAlone: Verdict;
  /** crypto.subtle alone in Node 20 and 22. */
  node22Alone: Verdict;
  /** crypto.subtle alone in Node 24, which refuses a small-order A or R where the earlier releases accept. */
  node24Alone: Verdict;
  chromiumAlone: Verdict;
}

/** The Node column that holds the verdicts of the release running this process. */
export function thisNodeAlone(row: VerdictRow, major = Number(process.versions.node.split('.')[0])): Verdict {
  return major >= 24 ? row.node24Alone : row.node22Alone;
}

const PAGE = new URL('../../docs/security/ed25519-verdicts.md', import.meta.url);
const VERDICTS = new Set(['accepted', 'refused', 'key refused']);

/** The rows of the table under "## What each path decides on the speccheck cases", in order. */
export function documentedVerdicts(): VerdictRow[] {
  const text = readFileSync(PAGE, 'utf8');
  const section = text.split(/^## /m).find((s) => s.startsWith('What each path decides on the speccheck cases'));
  if (!section) throw new Error(`${PAGE.pathname} has no section "What each path decides on the speccheck cases"`);
  const rows: VerdictRow[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim().replace(/\*\*/g, ''));
    if (!/^\d+$/.test(cells[0] ?? '')) continue;
    const verdicts = cells.slice(-6);
    for (const v of verdicts) if (!VERDICTS.has(v)) throw new Error(`case ${cells[0]}: "${v}" is not a verdict (accepted, refused, key refused)`);
    const [pure, webcrypto, pureAlone, node22Alone, node24Alone, chromiumAlone] = verdicts as Verdict[];
    rows.push({ case: Number(cells[0]), pure, webcrypto, pureAlone, node22Alone, node24Alone, chromiumAlone });
  }
  return rows;
}
