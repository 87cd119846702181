/**
 * Figures that docs/BENCHMARKS.md quotes, checked by the tests that measure them, so the page
 * cannot drift from what a user measures: the row whose first cell is `figure` holds numbers in
 * its second cell, and each must be within `tolerance` of the measured value.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const page = path.join(import.meta.dirname, '..', '..', 'docs', 'BENCHMARKS.md');

/** The numbers of the second cell of the row of docs/BENCHMARKS.md whose first cell is `figure`. */
export function documentedFigures(figure: string): number[] {
  const row = readFileSync(page, 'utf8').split('\n').find((l) => l.startsWith(`| ${figure} |`));
  assert.ok(row, `docs/BENCHMARKS.md has no row "| ${figure} |"`);
  const cell = row.split('|')[2];
  return [...cell.matchAll(/\d[\d,]*(?:\.\d+)?/g)].map((m) => Number(m[0].replace(/,/g, '')));
}

/**
 * Assert that docs/BENCHMARKS.md's row `figure` quotes `measured` (in the row's unit, e.g. KB)
 * within `tolerance` (a fraction), in the order given; the message says what to write.
 */
export function checkDocumentedFigures(figure: string, measured: number[], write: string, tolerance = 0.05): void {
  const documented = documentedFigures(figure);
  assert.equal(documented.length, measured.length, `docs/BENCHMARKS.md "${figure}": expected ${measured.length} figures, found ${documented.join(', ')}`);
  measured.forEach((m, i) => {
    assert.ok(Math.abs(documented[i] - m) <= tolerance * m, `docs/BENCHMARKS.md "${figure}" says ${documented[i]}, measured ${m}: write "${write}" there`);
  });
}
