/**
 * The library's `fingerprint`, `report`, `keygen` and `sign` (neural-diff) against `ndiff
 * fingerprint|report|keygen|sign --json` on the same arguments: the same fields, the same digests
 * file recorded, byte-identical report.md and report.html, key files sign accepts, the same
 * envelope bytes; and typed refusals that name the option with its flag.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { diff, fingerprint, keygen, report, sign, readPrivateKeyFile, verify, SignatureError, UsageError } from 'neural-diff';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { baseAndTarget } from './helpers/models.ts';
import { folderBytes, tempDir, treeBytes, writeStore } from './helpers/dirs.ts';
import { valuePair } from './helpers/structural-pairs.ts';

/** `ndiff` in this process with --json: its exit code, the document and what went to stderr. */
async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main([...argv, '--json'], io);
  return { code, doc: JSON.parse(stdout.join('\n')) as Record<string, unknown>, err: stderr.join('\n') };
}

/** As the --json document reads back. */
const asJson = (x: unknown) => JSON.parse(JSON.stringify(x)) as unknown;

const work = await tempDir('nd-lib-tools-');
after(() => rm(work, { recursive: true, force: true }));

const folder = join(work, 'folder');
await writeStore(folder, baseAndTarget(3).base);
const onnx = join(work, 'v1.onnx');
const pair = valuePair('onnx', 2);
await writeFile(onnx, pair.base);
await writeFile(join(work, 'v2.onnx'), pair.target);

test('fingerprint gives what ndiff fingerprint --json gives, and record writes the same digests file', async () => {
  for (const tensors of [false, true]) {
    const args = tensors ? ['--tensors'] : [];
    assert.deepEqual(asJson(await fingerprint({ model: folder, tensors })), (await ndiff('fingerprint', folder, ...args)).doc);
    const fromFile = await fingerprint({ model: onnx, tensors });
    assert.deepEqual(asJson(fromFile), (await ndiff('fingerprint', onnx, ...args)).doc);
    if (tensors) assert.ok(fromFile.tensors?.every((t) => typeof t.dtype === 'string'), 'a model file names each tensor\'s dtype');
  }
  const before = await folderBytes(folder);
  const cli = await ndiff('fingerprint', folder, '--record');
  assert.equal(cli.code, 0, cli.err);
  const recorded = await folderBytes(folder);
  assert.ok(recorded.size > before.size, 'the command recorded a file');
  // The record names the shard files' identity (inode, times): the same files, recorded again by the library.
  const digestsFile = [...recorded.keys()].find((f) => !before.has(f)) as string;
  await rm(join(folder, digestsFile));
  const lines: string[] = [];
  const lib = await fingerprint({ model: folder, record: true, onProgress: (l) => lines.push(l) });
  assert.deepEqual(asJson(lib), cli.doc);
  assert.equal(lib.recorded, true);
  assert.deepEqual(await folderBytes(folder), recorded, 'the same digests file, byte for byte');
  assert.ok(lines.some((l) => l.startsWith(`recorded ${lib.tensorCount} tensor digests in `)), lines.join('\n'));
});

test('fingerprint refuses record on a model file, naming the option, and writes nothing', async () => {
  const before = await treeBytes(work);
  await assert.rejects(fingerprint({ model: onnx, record: true }), (e: unknown) => e instanceof UsageError && /^record \(--record\) is for TF\.js model folders/.test(e.message) && /leave record \(--record\) out/.test(e.message));
  const cli = await ndiff('fingerprint', onnx, '--record');
  assert.equal(cli.code, 2);
  assert.match(cli.err, /ndiff: --record is for TF\.js model folders/);
  assert.deepEqual(await treeBytes(work), before);
});

/** A results file as `ndiff train --metrics-out` writes it. */
function metrics(method: string, budget: string, bytes: number, acc: number) {
  return { kind: 'ndiff-train-metrics', method, modelId: 'digits', sequence: 1, budgetBytes: Math.floor(136_488 * Number(budget.replace('%', '')) / 100), budgetRequested: budget, bytes, modelBytes: 136_488, accuracyBefore: 0.6, accuracyAfter: acc, validation: null, tuning: { mode: 'off', learningRate: 0.003 }, trainSeconds: 5.5, batchSize: 32, backend: 'wasm', seed: 0 };
}

test('report writes the same report.md and report.html as ndiff report and returns its --json fields', async () => {
  const files = [['sparse', '1%', 1300, 0.9], ['hash', '1%', 1250, 0.85], ['sparse', '5%', 6800, 0.91]].map((r, i) => join(work, `run-${i}.json`));
  await Promise.all([['sparse', '1%', 1300, 0.9], ['hash', '1%', 1250, 0.85], ['sparse', '5%', 6800, 0.91]].map((r, i) => writeFile(files[i], JSON.stringify(metrics(r[0] as string, r[1] as string, r[2] as number, r[3] as number)))));
  const cli = await ndiff('report', ...files, '--out', join(work, 'r-cli'), '--title', 'digits v2', '--tolerance', '2');
  assert.equal(cli.code, 0, cli.err);
  const lib = await report({ results: files, out: join(work, 'r-lib'), title: 'digits v2', tolerance: 2 });
  assert.deepEqual(asJson({ ...lib, html: undefined, markdown: undefined }), asJson({ ...cli.doc, html: undefined, markdown: undefined }));
  assert.equal(lib.markdown, join(work, 'r-lib', 'report.md'));
  for (const f of ['report.md', 'report.html']) assert.equal(await readFile(join(work, 'r-lib', f), 'utf8'), await readFile(join(work, 'r-cli', f), 'utf8'), `${f}: the same bytes`);
  assert.match(lib.recommendation.text, /^Recommended: sparse at 1%/);
  await assert.rejects(report({ results: files, out: join(work, 'r-bad'), tolerance: -1 }), (e: unknown) => e instanceof UsageError && /^tolerance \(--tolerance\) expects points >= 0/.test(e.message));
  await assert.rejects(report({ results: [], out: join(work, 'r-bad') }), UsageError);
  await assert.rejects(report({ results: [join(work, 'absent.json')], out: join(work, 'r-bad') }), (e: unknown) => e instanceof UsageError && /no results file at .*absent\.json/.test(e.message));
  await assert.rejects(readFile(join(work, 'r-bad', 'report.md')), 'nothing written on a refusal');
});

test('keygen makes key files sign uses, and sign gives ndiff sign\'s envelope bytes', async () => {
  const keys = await keygen({ out: join(work, 'keys', 'release') });
  assert.match(keys.keyId, /^[0-9a-f]+$/);
  await assert.rejects(keygen({ out: join(work, 'keys', 'release') }), (e: unknown) => e instanceof UsageError && /already exists/.test(e.message), 'never overwrites');
  const cliKeys = await ndiff('keygen', '--out', join(work, 'keys', 'other'));
  assert.deepEqual(Object.keys(cliKeys.doc).sort(), Object.keys(keys).sort());

  const made = await diff({ base: onnx, target: join(work, 'v2.onnx'), budget: 'all', modelId: 'tools', out: join(work, 'p.ndiff') });
  assert.ok(made.payload.length > 0);
  await mkdir(join(work, 'cli'), { recursive: true });
  const cli = await ndiff('sign', join(work, 'p.ndiff'), '--key', keys.privateKeyFile, '--out', join(work, 'cli', 'p.signed.ndiff'));
  assert.equal(cli.code, 0, cli.err);
  // A path and no out: written beside the payload under ndiff sign's default name.
  const lib = await sign({ payload: join(work, 'p.ndiff'), key: keys.privateKeyFile });
  assert.equal(lib.out, join(work, 'p.signed.ndiff'));
  assert.deepEqual(asJson({ ...lib, envelope: undefined, warnings: undefined, out: undefined }), asJson({ ...cli.doc, out: undefined }));
  assert.deepEqual(lib.warnings, []);
  const cliBytes = new Uint8Array(await readFile(join(work, 'cli', 'p.signed.ndiff')));
  assert.deepEqual(new Uint8Array(await readFile(join(work, 'p.signed.ndiff'))), cliBytes, 'the same envelope bytes');
  assert.deepEqual(lib.envelope, cliBytes);
  // Bytes and a KeyObject: nothing written, the same envelope.
  const inMemory = await sign({ payload: made.payload, key: await readPrivateKeyFile(keys.privateKeyFile) });
  assert.equal(inMemory.out, undefined);
  assert.deepEqual(inMemory.envelope, cliBytes);
  assert.equal((await verify({ payload: lib.out as string, publicKeys: [keys.publicKeyFile] })).signature.verified, true);
  await assert.rejects(verify({ payload: lib.out as string, publicKeys: [join(work, 'keys', 'other.public.pem')] }), SignatureError);
  // Refusals: an envelope signed again, a folder as out.
  await assert.rejects(sign({ payload: cliBytes, key: keys.privateKeyFile }), (e: unknown) => e instanceof UsageError && /already a signed envelope/.test(e.message));
  await assert.rejects(sign({ payload: made.payload, key: keys.privateKeyFile, out: join(work, 'cli') }), (e: unknown) => e instanceof UsageError && /^out \(--out\) .* is a folder/.test(e.message));
});

test('sign passes on the warning for a private key others can read', async () => {
  const keys = await keygen({ out: join(work, 'open') });
  const { chmod } = await import('node:fs/promises');
  await chmod(keys.privateKeyFile, 0o644);
  const payload = (await diff({ base: onnx, target: join(work, 'v2.onnx'), budget: 'all', modelId: 'tools' })).payload;
  const r = await sign({ payload, key: keys.privateKeyFile });
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0], /^the private key .* can be read by other users/);
});
