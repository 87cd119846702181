/**
 * No file of the repository over 800 lines (issue #65): a file that long has seams to split along
 * (a source file into modules, a doc into an index page and its pages). Every tracked text file
 * counts, tests and docs included; binary files (payloads, byte deltas, weights) and the files
 * below, which tools and benchmarks write rather than people, do not.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const root = path.join(import.meta.dirname, '..');
const MAX_LINES = 800;

/** Files written by a tool, not by hand, each with the reason. */
const EXCLUDED: { pattern: RegExp; why: string }[] = [
  // npm writes it; its length follows the dependency tree.
  { pattern: /^package-lock\.json$/, why: 'the lockfile' },
  // What the benchmarks and examples measured (results JSON, rendered reports), committed as the
  // runs wrote them; docs/BENCHMARKS.md and its tests quote them.
  { pattern: /(^|\/)results\//, why: 'committed results of benchmark and example runs' },
  // Test vectors written by their generators (test/vectors/**/*.ts, which are held to the limit),
  // checked byte for byte against a fresh run.
  { pattern: /^test\/vectors\/.*\.json$/, why: 'generated test vectors' },
];

function trackedFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.split('\0').filter(Boolean);
}

/** Lines of a text file (a last line without its newline counts), or null for a binary file (one with a NUL byte). */
function lineCount(bytes: Buffer): number | null {
  if (bytes.includes(0)) return null;
  let lines = 0;
  for (const b of bytes) if (b === 0x0a) lines++;
  return bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a ? lines + 1 : lines;
}

test(`every tracked text file is at most ${MAX_LINES} lines, but for the listed generated files`, () => {
  const files = trackedFiles();
  assert.ok(files.length > 100, `git ls-files listed ${files.length} files: run the tests from a git checkout`);
  const over: string[] = [];
  for (const file of files) {
    if (EXCLUDED.some((e) => e.pattern.test(file))) continue;
    let bytes: Buffer;
    try {
      bytes = readFileSync(path.join(root, file));
    } catch {
      continue; // deleted in the work tree, not yet committed
    }
    const lines = lineCount(bytes);
    if (lines !== null && lines > MAX_LINES) over.push(`${file}: ${lines} lines`);
  }
  assert.deepEqual(over, [], `split these along their seams into parts of at most ${MAX_LINES} lines (a module per part; a doc as an index page and its pages)`);
});

test('every exclusion still matches a tracked file (a stale one would hide a new file for nothing)', () => {
  const files = trackedFiles();
  for (const e of EXCLUDED) assert.ok(files.some((f) => e.pattern.test(f)), `no tracked file is ${e.why} (${e.pattern}): remove the exclusion`);
});
