/**
 * `report`: what `ndiff report` does, as a library call. Reads the results files of the payloads
 * made for an update (`--metrics-out` of `ndiff train` and `ndiff diff --eval`, or benchmark
 * results), writes report.html (charts) and report.md, and recommends the smallest payload within
 * `tolerance` points of the best result or of the teacher.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../core/errors.ts';
import { makeDirs } from '../io/durable/durable.ts';
import { DEFAULT_TOLERANCE, htmlOf, markdownOf, summarize, type BudgetSummary, type Measure } from '../report/report.ts';
import type { ReportRow } from '../report/results.ts';
import { reportRows } from '../report/rows.ts';

/** What {@link report} takes (`ndiff report`). */
export interface ReportFilesOptions {
  /** The results files (JSON), read in this order. */
  results: string[];
  /** The folder for report.html and report.md (default `report`). */
  out?: string;
  /** The heading of both files (default `neural-diff comparison`). */
  title?: string;
  /** Points a payload may lose and still be recommended (default 1). */
  tolerance?: number;
}

/** What {@link report} returns: the fields `ndiff report --json` prints. */
export interface ReportFilesResult {
  html: string;
  markdown: string;
  rows: number;
  files: string[];
  measure: Measure;
  tolerance: number;
  updates: number;
  recommendation: {
    text: string;
    met: boolean;
    choice?: { setting: string; method: BudgetSummary['method']; teacher: boolean; budget: string; meanBytes: number; within: BudgetSummary['within']; worstGap: number | null };
  };
}

/** The default `out` and `title` of {@link report}. */
export const REPORT_DEFAULTS = { out: 'report', title: 'neural-diff comparison', tolerance: DEFAULT_TOLERANCE } as const;

async function readResultsFile(file: string): Promise<ReportRow[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UsageError(`no results file at ${file}: write one with \`ndiff train --eval DATA --metrics-out FILE\` or \`ndiff diff --eval INPUTS --metrics-out FILE\` first, or check the path`, { file });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file} is not valid JSON (${(e as Error).message}): give a results file written by --metrics-out`, { file });
  }
  return reportRows(data, file);
}

/**
 * Write report.html and report.md into `out` from the results files. Throws UsageError (the
 * option named with its flag) for a tolerance below 0, no files, a missing or unreadable file;
 * the results' own validation errors for rows that are not results. Nothing is written before
 * every file has been read and checked.
 */
export async function report(o: ReportFilesOptions): Promise<ReportFilesResult> {
  const tolerance = o.tolerance ?? REPORT_DEFAULTS.tolerance;
  const out = o.out ?? REPORT_DEFAULTS.out;
  const title = o.title ?? REPORT_DEFAULTS.title;
  if (!(tolerance >= 0)) throw new UsageError(`tolerance (--tolerance) expects points >= 0 (1 is one point of accuracy), found ${tolerance}`, { expected: 'points >= 0', found: tolerance });
  if (!Array.isArray(o.results) || o.results.length === 0) throw new UsageError('results expects at least one results file (written by --metrics-out of ndiff train or ndiff diff --eval), found none', { expected: 'one file or more', found: 0 });
  const files = [...o.results];
  const rows = (await Promise.all(files.map(readResultsFile))).flat();
  const opts = { title, tolerance };
  const summary = summarize(rows, opts);
  await makeDirs(out);
  const html = join(out, 'report.html');
  const markdown = join(out, 'report.md');
  await writeFile(html, htmlOf(summary, opts));
  await writeFile(markdown, markdownOf(summary, opts));
  const r = summary.recommendation;
  return {
    html, markdown, rows: rows.length, files, measure: summary.measure, tolerance: summary.tolerance, updates: summary.updates.length,
    recommendation: { text: r.text, met: r.met, ...(r.choice ? { choice: { setting: r.choice.label, method: r.choice.method, teacher: r.choice.teacher, budget: r.choice.budget, meanBytes: r.choice.meanBytes, within: r.choice.within, worstGap: r.choice.worstGap } } : {}) },
  };
}
