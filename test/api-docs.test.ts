/**
 * `npm run docs` (TypeDoc over the package's entries, typedoc.json) builds the API reference from
 * the TSDoc comments without a single warning: a broken {@link}, or a type a signature names that
 * no entry exports, fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { onceSkip } from './helpers/benchmarks.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

test('npm run docs: the API reference builds from the TSDoc comments without a warning', { skip: onceSkip('the API reference built by TypeDoc is'), timeout: 180_000 }, () => {
  // Validation only (no HTML): the same checks, treated as errors, as `npm run docs`.
  const typedoc = path.join(root, 'node_modules', 'typedoc', 'bin', 'typedoc');
  const out = execFileSync(process.execPath, [typedoc, '--emit', 'none', '--treatWarningsAsErrors'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  assert.doesNotMatch(out, /warning/i);
});
