/**
 * Library errors map to the exit codes `ndiff` uses through one table the library exports
 * (`exitCodeOf` from `neural-diff`, the table as `EXIT_CODES` in `neural-diff/kit`), which the CLI exits by: a script that calls
 * `diff()` or `release.add()` can exit as the command would, and the two cannot drift apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as lib from 'neural-diff';
import { EXIT_CODES } from 'neural-diff/kit';
import { EXIT, exitCodeOf as cliExitCodeOf, errorDocument } from '../cli/common.ts';
import { runNdiff } from './helpers/ndiff-run.ts';

test('neural-diff exports exitCodeOf and neural-diff/kit the table; the CLI exits by the same ones', () => {
  assert.equal(typeof lib.exitCodeOf, 'function');
  assert.equal(cliExitCodeOf, lib.exitCodeOf, 'one function: the CLI imports the library\'s');
  assert.equal(EXIT, EXIT_CODES, 'one table');
  const cases: [Error, keyof typeof EXIT_CODES][] = [
    [new lib.UsageError('u'), 'usage'], [new lib.PayloadFormatError('p'), 'payload'], [new lib.SignatureError('s'), 'payload'],
    [new lib.FreshnessError('f'), 'payload'], [new lib.BaseMismatchError('b'), 'model'], [new lib.ModelMismatchError('m'), 'model'],
    [new lib.TargetMismatchError('t'), 'target'], [new lib.HealthCheckError('h'), 'target'], [new lib.BudgetError('b'), 'budget'],
    [new lib.ModelFormatError('m'), 'files'], [new lib.StateStoreError('s'), 'files'], [new lib.DataError('d'), 'data'],
    [new lib.MissingDependencyError('m'), 'dependency'], [new lib.NoImprovementError('n'), 'noImprovement'], [new lib.DownloadError('d'), 'download'],
    [Object.assign(new Error('gone'), { code: 'ENOENT' }), 'files'], [Object.assign(new Error('ro'), { code: 'EROFS' }), 'files'], [new TypeError('a bug'), 'internal'],
  ];
  for (const [e, name] of cases) assert.equal(lib.exitCodeOf(e), EXIT_CODES[name], `${e.constructor.name} -> ${name}`);
  assert.equal(errorDocument(new lib.DataError('d'), 'd').error.exitCode, EXIT_CODES.data);
});

test('an error a library call throws maps to the code the command exits with for the same mistake', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-exit-'));
  try {
    const base = path.join(dir, 'missing-model');
    const e = await lib.diff({ base, target: base, budget: '2%', modelId: 'm', out: path.join(dir, 'x.ndiff') }).then(() => undefined, (err: unknown) => err);
    assert.ok(e, 'diff of a missing model throws');
    const r = await runNdiff('diff', '--base', base, '--target', base, '--budget', '2%', '--model-id', 'm', '--out', path.join(dir, 'x.ndiff'));
    assert.notEqual(r.code, 0);
    assert.equal(lib.exitCodeOf(e), r.code, `${String(e)}\n${r.err}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
