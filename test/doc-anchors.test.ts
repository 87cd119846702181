/**
 * Links into a section of a page land on that section: every `page.md#anchor` link of the README,
 * docs/ and the examples' READMEs names a heading of the page it points to (or an explicit
 * `<a id>`). Long pages are split into an index and pages (docs/format/, docs/benchmarks/,
 * docs/security/); a link left pointing at the index for a section that moved opens the wrong
 * page without any error. test/readme.test.ts checks that the linked files exist.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const root = path.join(import.meta.dirname, '..');

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, ... */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const line of markdown.split('\n')) {
    const f = /^\s*(```+|~~~+)/.exec(line);
    if (f) {
      const mark = f[1].slice(0, 3);
      if (fence === null) fence = mark;
      else if (line.trim().startsWith(fence)) fence = null;
      continue;
    }
    if (fence) continue;
    for (const m of line.matchAll(/<a (?:name|id)="([^"]+)"/g)) anchors.add(m[1]);
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const text = h[1].replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '').trim().toLowerCase();
    const base = [...text].filter((c) => /[\p{L}\p{N}_ -]/u.test(c)).join('').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

function pages(): string[] {
  const docs = readdirSync(path.join(root, 'docs'), { recursive: true })
    .map((f) => path.join('docs', String(f)))
    .filter((f) => f.endsWith('.md') && !f.startsWith(path.join('docs', 'api')));
  const examples = readdirSync(path.join(root, 'examples'), { recursive: true })
    .map((f) => path.join('examples', String(f)))
    .filter((f) => f.endsWith('README.md') && !f.includes('node_modules'));
  return ['README.md', ...docs, ...examples];
}

test('every link to a section of a page names a heading of that page', () => {
  const cache = new Map<string, Set<string>>();
  const broken: string[] = [];
  let checked = 0;
  for (const page of pages()) {
    const text = readFileSync(path.join(root, page), 'utf8');
    for (const m of text.matchAll(/\]\(\s*<?([^)\s>]*)#([^)\s>]+)>?\s*\)/g)) {
      const [, target, anchor] = m;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      const file = target === '' ? page : path.normalize(path.join(path.dirname(page), target));
      if (!file.endsWith('.md') || !existsSync(path.join(root, file))) continue; // a missing file is test/readme.test.ts's
      if (!cache.has(file)) cache.set(file, anchorsOf(readFileSync(path.join(root, file), 'utf8')));
      checked++;
      if (!cache.get(file)?.has(anchor)) broken.push(`${page}: ${target}#${anchor}`);
    }
  }
  assert.ok(checked > 100, `only ${checked} section links found`);
  assert.deepEqual(broken, [], 'links to sections that are not on the page they name');
});
