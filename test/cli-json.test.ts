/**
 * The CLI for automation: `--json` on every command (one JSON document on stdout: the result,
 * or `{error: {code, exitCode, message}}`), exit codes as docs/CLI.md's table, numeric flags
 * checked, outputs checked before work, messages in the command line's words, and `ndiff report`
 * on `ndiff train --metrics-out` documents and on any subset of methods.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, writeFile, cp } from 'node:fs/promises';
import { main } from '../cli/ndiff.ts';
import { EXIT } from '../cli/common.ts';
import type { CliIO } from '../cli/common.ts';
import { baseAndTarget } from './helpers/models.ts';
import { tempDir, writeStore, folderBytes } from './helpers/dirs.ts';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

/** Run with --json: exactly one JSON document on stdout, whatever happened. */
async function json(...argv: string[]): Promise<{ code: number; doc: Record<string, any>; err: string }> {
  const r = await ndiff(...argv, '--json');
  let doc: Record<string, any>;
  try {
    doc = JSON.parse(r.out) as Record<string, any>;
  } catch {
    assert.fail(`stdout is not one JSON document:\n${r.out}\n-- stderr:\n${r.err}`);
  }
  return { code: r.code, doc, err: r.err };
}

describe('ndiff --json and exit codes', () => {
  let dir: string;
  let v1: string;
  let v2: string;
  let payload: string;
  before(async () => {
    dir = await tempDir();
    const { base, target } = baseAndTarget(7);
    v1 = join(dir, 'v1');
    v2 = join(dir, 'v2');
    await writeStore(v1, base);
    await writeStore(v2, target);
    payload = join(dir, 'out', 'new-folder', 'v1-v2.ndiff');
  });

  test('diff, inspect, verify, fingerprint, apply, keygen, sign: each prints one JSON result', async () => {
    const d = await json('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', '5%', '--out', payload);
    assert.equal(d.code, 0, d.err);
    assert.equal(d.doc.out, payload, 'the output folder was created');
    assert.equal(d.doc.bytes, (await readFile(payload)).length);
    assert.ok(d.doc.bytes <= d.doc.budgetBytes);
    assert.match(d.doc.targetFingerprint, /^[0-9a-f]{16}$/);

    const i = await json('inspect', payload);
    assert.equal(i.code, 0);
    assert.equal(i.doc.header.targetFingerprint, d.doc.targetFingerprint);
    assert.ok(i.doc.patches.length > 0);

    const f = await json('fingerprint', v1, '--tensors');
    assert.equal(f.code, 0);
    assert.equal(f.doc.fingerprint, d.doc.baseFingerprint);
    assert.equal(f.doc.tensors.length, f.doc.tensorCount);

    const v = await json('verify', payload, '--model', v1);
    assert.equal(v.code, 0);
    assert.equal(v.doc.model.status, 'applies');
    assert.equal(v.doc.signature.signed, false);

    const k = await json('keygen', '--out', join(dir, 'keys', 'release'));
    assert.equal(k.code, 0, k.err);
    assert.match(k.doc.keyId, /^[0-9a-f]+$/);
    const s = await json('sign', payload, '--key', k.doc.privateKeyFile);
    assert.equal(s.code, 0, s.err);
    assert.equal(s.doc.keyId, k.doc.keyId);

    const device = join(dir, 'device');
    await cp(v1, device, { recursive: true });
    const a = await json('apply', '--model', device, '--patch', s.doc.out, '--public-key', k.doc.publicKeyFile);
    assert.equal(a.code, 0, a.err);
    assert.equal(a.doc.status, 'applied');
    assert.equal(a.doc.targetFingerprint, d.doc.targetFingerprint);
    assert.equal(a.doc.signature.keyId, k.doc.keyId);
    const again = await json('apply', '--model', device, '--patch', s.doc.out, '--public-key', k.doc.publicKeyFile);
    assert.equal(again.doc.status, 'already-applied');
  });

  test('--json turned off as yargs reads it (--json false, --json=false, --no-json last) prints the text result, not a JSON document', async () => {
    const text = await ndiff('fingerprint', v1);
    assert.match(text.out, /^[0-9a-f]{16}$/);
    for (const off of [['--json', 'false'], ['--json=false'], ['--json', '--no-json']]) {
      const r = await ndiff('fingerprint', v1, ...off);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, text.out, `${off.join(' ')}: the text result`);
    }
    const on = await ndiff('fingerprint', v1, '--no-json', '--json', 'true');
    assert.match(JSON.parse(on.out).fingerprint, /^[0-9a-f]{16}$/, 'the last one wins');
  });

  test('warnings are in the JSON document as on stderr (a pipeline reading only the document misses none)', async () => {
    // A payload far below the change's size leaves most of it out: diff warns.
    const d = await json('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', '1%', '--out', join(dir, 'out', 'small.ndiff'));
    assert.equal(d.code, 0, d.err);
    assert.ok(Array.isArray(d.doc.warnings) && d.doc.warnings.length > 0, `warnings in the document: ${JSON.stringify(d.doc.warnings)}; stderr: ${d.err}`);
    for (const w of d.doc.warnings as string[]) assert.ok(d.err.includes(`warning: ${w}`), `stderr says it too: ${w}`);
  });

  test('failures print {error: {code, exitCode, message}} and exit with that code; the model untouched', async () => {
    const before = await folderBytes(v2);
    const wrongBase = await json('apply', '--model', v2, '--patch', payload, '--no-state');
    assert.equal(wrongBase.code, EXIT.model);
    assert.deepEqual(Object.keys(wrongBase.doc), ['error']);
    assert.equal(wrongBase.doc.error.code, 'ND_BASE_MISMATCH');
    assert.equal(wrongBase.doc.error.exitCode, EXIT.model);
    assert.match(wrongBase.doc.error.message, /fetch the full model|base/);
    assert.deepEqual(await folderBytes(v2), before);

    const usage = await json('apply', '--model', v2);
    assert.equal(usage.code, EXIT.usage);
    assert.equal(usage.doc.error.code, 'ND_USAGE');
    const missing = await json('inspect', join(dir, 'nope.ndiff'));
    assert.equal(missing.code, EXIT.usage);
    const corrupt = join(dir, 'corrupt.ndiff');
    await writeFile(corrupt, Uint8Array.of(0x81, 0xa2, 0x6e));
    const bad = await json('inspect', corrupt);
    assert.equal(bad.code, EXIT.payload);
    assert.equal(bad.doc.error.code, 'ND_PAYLOAD_FORMAT');
  });

  test('a model path that does not exist says what was expected and to check the path (exit 7), never a bare ENOENT', async () => {
    const nope = join(dir, 'no-such-model');
    const cases: string[][] = [
      ['diff', '--base', nope, '--target', v2, '--budget', '2%', '--model-id', 'm', '--out', join(dir, 'x.ndiff')],
      ['diff', '--base', v1, '--target', nope, '--budget', '2%', '--model-id', 'm', '--out', join(dir, 'x.ndiff')],
      ['fingerprint', nope],
      ['train', '--base', nope, '--train', join(dir, 'data'), '--model-id', 'm', '--out', join(dir, 'x.ndiff')],
    ];
    for (const argv of cases) {
      const r = await json(...argv);
      const what = `ndiff ${argv.slice(0, 2).join(' ')}: ${r.doc.error?.message}`;
      assert.equal(r.code, EXIT.files, what);
      assert.equal(r.doc.error.code, 'ND_MODEL_FORMAT', what);
      assert.match(r.doc.error.message, /no model at .*no-such-model: expected a TF\.js model folder .*\.tflite.*check the path/, what);
      assert.doesNotMatch(r.doc.error.message, /ENOENT/, what);
      const flag = argv.indexOf(nope) - 1;
      if (argv[flag].startsWith('--')) assert.match(r.doc.error.message, new RegExp(`^${argv[flag]}: no model`), `${what}: names ${argv[flag]}`);
    }
  });

  test('numeric flags that are not numbers, and negative budgets, are refused with what was given', async () => {
    const nan = await ndiff('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', '5%', '--out', join(dir, 'x.ndiff'), '--sequence', 'abc');
    assert.equal(nan.code, EXIT.usage);
    assert.match(nan.err, /--sequence expects a number, found "abc"/);
    const negative = await ndiff('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', '-5%', '--out', join(dir, 'x.ndiff'));
    assert.equal(negative.code, EXIT.usage);
    assert.doesNotMatch(negative.err, /Unknown arguments/);
    assert.match(negative.err, /budget/);
  });

  test('an output that cannot be written is refused before any work (exit 2)', async () => {
    // A path under a regular file cannot be created, whoever runs the test (root included).
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a folder');
    const r = await ndiff('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', '5%', '--out', join(file, 'sub', 'x.ndiff'));
    assert.equal(r.code, EXIT.usage);
    assert.match(r.err, /cannot write --out .*a-file\/sub\/x\.ndiff: (ENOTDIR|EEXIST)/);
    assert.doesNotMatch(r.err, /base .*tensors/, 'refused before the models were read');
    const folder = await ndiff('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', '5%', '--out', dir);
    assert.equal(folder.code, EXIT.usage);
    assert.match(folder.err, /--out .* is a folder/);
  });

  test('library option names become flags in messages', async () => {
    const r = await ndiff('apply', '--model', v1, '--patch', payload, '--max-payload-bytes', '16', '--no-state');
    assert.equal(r.code, EXIT.payload);
    assert.match(r.err, /--max-payload-bytes/);
    assert.doesNotMatch(r.err, /maxPayloadBytes/);
  });

  test('report reads `ndiff train --metrics-out` documents (one or many) and any subset of methods, without crashing', async () => {
    const metrics = (method: string, budgetBytes: number, bytes: number, acc: number) => ({
      kind: 'ndiff-train-metrics', method, modelId: 'kws', sequence: 2, budgetBytes, bytes, modelBytes: 100_000, accuracyBefore: 0.5, accuracyAfter: acc, trainSeconds: 3.5, epochs: [],
    });
    const a = join(dir, 'm-sparse.json');
    const b = join(dir, 'm-hash.json');
    await writeFile(a, JSON.stringify(metrics('sparse', 1000, 990, 0.9)));
    await writeFile(b, JSON.stringify(metrics('hash', 1000, 1000, 0.85)));
    const one = await json('report', a, '--out', join(dir, 'rep1'));
    assert.equal(one.code, 0, one.err);
    assert.equal(one.doc.rows, 1);
    const two = await json('report', a, b, '--out', join(dir, 'rep2'));
    assert.equal(two.code, 0, two.err);
    assert.equal(two.doc.rows, 2);
    const md = await readFile(join(dir, 'rep2', 'report.md'), 'utf8');
    assert.match(md, /\| sparse \| 1% \| 990 \| 90\.00% \|/);
    assert.match(md, /\| hash \| 1% \| 1,000 \| 85\.00% \|/);
    const html = await readFile(join(dir, 'rep2', 'report.html'), 'utf8');
    assert.doesNotMatch(html, /zstd --patch-from of the fully/, 'no zstd chart without zstd rows');
    // Benchmark rows with only some methods, no zstd row: rendered, not a V8 crash.
    const rows = join(dir, 'rows.json');
    await writeFile(rows, JSON.stringify([{ update: 1, method: 'sparse', budgetPct: 1, bytes: 500, accAll: 0.8, accOld: 0.8, accNew: 0.7, driftFromFull: 0.01, trainSeconds: 2 }]));
    const subset = await json('report', rows, '--out', join(dir, 'rep3'));
    assert.equal(subset.code, 0, subset.err);
    // A metrics file without evaluation cannot be compared: a clear usage error.
    await writeFile(a, JSON.stringify({ ...metrics('sparse', 1000, 990, 0.9), accuracyAfter: null }));
    const noEval = await json('report', a, '--out', join(dir, 'rep4'));
    assert.equal(noEval.code, EXIT.usage);
    assert.match(noEval.doc.error.message, /--eval/);
  });
});
