/** The CLI on ONNX model files: diff, fingerprint, verify and apply dispatch on the `.onnx` extension. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { decodePayload } from '../src/core/format.ts';

const WAKE = 'node_modules/openwakeword-js/models';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

test('ndiff on .onnx files: diff (every codec, budget all), fingerprint, verify, apply with health check and sequence', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-cli-onnx-'));
  try {
    const base = path.join(dir, 'wake_v1.onnx');
    const target = path.join(dir, 'wake_v2.onnx');
    await copyFile(`${WAKE}/hello_deepa_old.onnx`, base);
    await copyFile(`${WAKE}/namaste_deepa.onnx`, target);
    const baseFp = (await ndiff('fingerprint', base)).out.trim();
    const targetFp = (await ndiff('fingerprint', target)).out.trim();
    assert.match(baseFp, /^[0-9a-f]{16}$/);
    const tensors = await ndiff('fingerprint', base, '--tensors');
    assert.match(tensors.out, /layer1\.weight\s+FLOAT\s+\[32x2304\]/);
    assert.match(tensors.out, /onnx:frame\s+FRAME\s+\[8\]/);
    assert.equal((await ndiff('fingerprint', base, '--record')).code, 2);

    for (const codec of ['f32', 'f16', 'i8', 'auto']) {
      const out = path.join(dir, `${codec}.ndiff`);
      const r = await ndiff('diff', '--model-id', 'wake', '--base', base, '--target', target, '--budget', '5%', '--codec', codec, '--out', out, '--sequence', '2');
      assert.equal(r.code, 0, r.err);
      const bytes = await readFile(out);
      assert.ok(bytes.length <= Math.floor(0.05 * 4 * 74_981), `${codec}: ${bytes.length} bytes`);
      assert.equal(decodePayload(bytes).header.baseFingerprint, baseFp);
    }
    const all = path.join(dir, 'all.ndiff');
    const r = await ndiff('diff', '--model-id', 'wake', '--base', base, '--target', target, '--budget', 'all', '--out', all, '--model-out', path.join(dir, 'held', 'wake_v2.onnx'));
    assert.equal(r.code, 0, r.err);
    // 74,977 of 74,981 weights changed. Range-coded (codec xr, format v3), the exact bits still
    // weigh less than the new weights; as codec x (format v2) they weigh as much, and it says so.
    assert.match(r.err, /XOR masks of their bits for \d+ tensor\(s\) as codec xr \(range-coded\)(, \d+ tensor\(s\) as codec x)?; format v3/);
    assert.doesNotMatch(r.err, /not smaller/);
    assert.equal(decodePayload(await readFile(all)).header.version, 3);
    assert.ok((await readFile(all)).length < 4 * 74_981, 'smaller than the float32 weights');
    const allX = path.join(dir, 'all-x.ndiff');
    const rx = await ndiff('diff', '--model-id', 'wake', '--base', base, '--target', target, '--budget', 'all', '--exact-codec', 'x', '--out', allX);
    assert.equal(rx.code, 0, rx.err);
    // The verdict says how much larger, and recommends no lossy budget (one is judged on data only).
    assert.match(rx.err, /note: the payload \(.*\) is \d+\.\d\dx the new model's weights \(.*\), not smaller; \d+ values changed: ship the new model instead/);
    assert.doesNotMatch(rx.err, /--budget \d/);
    assert.doesNotMatch(rx.out, /x smaller/);
    // The same verdict in --json.
    const json = await ndiff('--json', 'diff', '--model-id', 'wake', '--base', base, '--target', target, '--budget', 'all', '--exact-codec', 'x', '--out', allX);
    const doc = JSON.parse(json.out);
    assert.equal(doc.smallerThanModel, false);
    assert.ok(doc.payloadToModelRatio >= 1 && doc.bytes === (await readFile(allX)).length, json.out);
    const px = decodePayload(await readFile(allX));
    assert.equal(px.header.version, 2);
    assert.ok(px.patches.every((p) => p.codec === 'x'));
    assert.equal(px.header.targetFingerprint, decodePayload(await readFile(all)).header.targetFingerprint);
    assert.equal(decodePayload(await readFile(all)).header.targetFingerprint, (await ndiff('fingerprint', path.join(dir, 'held', 'wake_v2.onnx'))).out.trim());
    assert.equal((await ndiff('diff', '--model-id', 'wake', '--base', base, '--target', path.join(dir, 'x'), '--budget', '1%', '--out', all)).code, 2, 'a folder and a file');

    const other = path.join(dir, 'hello.onnx');
    await copyFile(`${WAKE}/hello_deepa.onnx`, other);
    const v = await ndiff('verify', path.join(dir, 'f32.ndiff'), '--model', base);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /applies cleanly/);
    const wrong = await ndiff('verify', path.join(dir, 'f32.ndiff'), '--model', other);
    assert.equal(wrong.code, 4);
    assert.match(wrong.err, /fetch the full model/);
    assert.deepEqual(await readFile(other), await readFile(`${WAKE}/hello_deepa.onnx`));

    const before = await readFile(base);
    const failed = await ndiff('apply', '--model', base, '--patch', path.join(dir, 'f32.ndiff'), '--health-check', 'test -f "$NDIFF_MODEL_FILE" && exit 3');
    assert.equal(failed.code, 5, failed.err);
    assert.deepEqual(await readFile(base), before, 'rolled back');
    const ok = await ndiff('apply', '--model', base, '--patch', path.join(dir, 'f32.ndiff'), '--health-check', 'test -f "$NDIFF_MODEL_FILE"');
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, new RegExp(`patched ${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${baseFp} -> `));
    assert.ok((await readdir(dir)).includes('wake_v1.onnx.ndiff-state.json'), 'the file\'s own state beside it');
    const replay = await ndiff('apply', '--model', base, '--patch', path.join(dir, 'i8.ndiff'));
    assert.equal(replay.code, 3, 'sequence 2 was applied: another sequence-2 payload is refused');
    assert.notEqual(baseFp, targetFp);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('two .onnx files of one model id in one folder keep their own replay state (issue 45, item 8); a folder state of an older applier still counts for the file it was recorded for', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-cli-onnx-'));
  try {
    const a = path.join(dir, 'wake.onnx');
    const b = path.join(dir, 'wake-copy.onnx');
    await copyFile(`${WAKE}/hello_deepa_old.onnx`, a);
    await copyFile(`${WAKE}/hello_deepa_old.onnx`, b);
    const payload = path.join(dir, 'p.ndiff');
    let r = await ndiff('diff', '--model-id', 'wake', '--base', a, '--target', `${WAKE}/namaste_deepa.onnx`, '--budget', '5%', '--out', payload, '--sequence', '2');
    assert.equal(r.code, 0, r.err);
    r = await ndiff('apply', '--model', a, '--patch', payload);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /recorded sequence 2 for model "wake" in .*wake\.onnx\.ndiff-state\.json/);
    r = await ndiff('apply', '--model', b, '--patch', payload);
    assert.equal(r.code, 0, `the second file is not a replay of the first: ${r.err}`);
    // Each file refuses its own replay.
    for (const f of [a, b]) assert.equal((await ndiff('apply', '--model', f, '--patch', payload)).code, 0, 'already applied');
    const older = path.join(dir, 'older.ndiff');
    r = await ndiff('diff', '--model-id', 'wake', '--base', a, '--target', `${WAKE}/hello_deepa_old.onnx`, '--budget', '5%', '--out', older, '--sequence', '1');
    assert.equal(r.code, 0, r.err);
    for (const f of [a, b]) assert.equal((await ndiff('apply', '--model', f, '--patch', older)).code, 3, `${f}: sequence 1 after 2 is refused`);
    // A folder state written by an older applier (by model id), for a file whose model id record says wake: still the floor.
    await rm(`${a}.ndiff-state.json`);
    await (await import('node:fs/promises')).writeFile(path.join(dir, '.ndiff-state.json'), JSON.stringify({ format: 'neural-diff-state', version: 1, models: { wake: { sequence: 2 } } }));
    assert.equal((await ndiff('apply', '--model', a, '--patch', older)).code, 3, 'the older applier\'s record still refuses the replay');
    // A third file, never applied (no model id record), is not bound by it.
    const c = path.join(dir, 'wake-new.onnx');
    await copyFile(`${WAKE}/hello_deepa_old.onnx`, c);
    r = await ndiff('apply', '--model', c, '--patch', payload);
    assert.equal(r.code, 0, r.err);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
