/**
 * A lossy release edge (`ndiff release add --method topk --budget B`) says what it is (issue 45,
 * item 6: a retrained version shipped within 5% left devices at 54% agreement with it, and
 * nothing said so):
 * - `release add` warns, before signing, that the payload is lossy and how much of the weight
 *   change it carries (checked against the model a device ends with);
 * - `release add --eval INPUTS` measures each lossy payload on the inputs against the version, and
 *   refuses a payload that takes the model further from it than not updating (the release folder
 *   byte for byte as it was); otherwise it prints the figures (checked with onnxruntime-web);
 * - `ndiff update` says a device that took it is near the version, not at it.
 * The models: test/helpers/onnx-models.ts's CNN, whose v2 moves every fully connected weight
 * (as retraining does) so that at 300 bytes top-k leaves the model further from v2 than v1 is.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { saveNpy } from '../src/io/npy/files.ts';
import { openOnnxFile } from '../src/io/onnx/files.ts';
import { decisions } from '../src/train/onnx/train-onnx.ts';
import { agreement, cnn, images, ortImages } from './helpers/onnx-models.ts';
import { treeBytes, tempDir } from './helpers/dirs.ts';
import { serveRelease } from './helpers/release-server.ts';

async function ndiff(...argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: CliIO = { out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
  const code = await main(argv, io);
  return { code, out: stdout.join('\n'), err: stderr.join('\n') };
}

const logits = { classes: 3, outputKind: 'logits' as const };
const work = await tempDir('nd-release-lossy-');
after(() => rm(work, { recursive: true, force: true }));
const v1 = join(work, 'v1.onnx');
const v2 = join(work, 'v2.onnx');
await writeFile(v1, cnn());
await writeFile(v2, cnn(0.5, 60));
const data = images(200, 2);
const inputs = join(work, 'inputs');
await mkdir(inputs);
saveNpy(join(inputs, 'x.npy'), data.inputs.x.values as Float32Array, [200, 1, 8, 8]);
assert.equal((await ndiff('keygen', '--out', join(work, 'release'))).code, 0);
const key = join(work, 'release.private.pem');
const pub = join(work, 'release.public.pem');

/** A release folder holding v1 only. */
async function releaseOfV1(name: string): Promise<string> {
  const site = join(work, 'site', name);
  const r = await ndiff('release', 'add', '--release', site, '--model', v1, '--model-id', 'cnn', '--key', key);
  assert.equal(r.code, 0, r.err);
  return site;
}

/** Float weights of an .onnx file, by name. */
async function weights(file: string): Promise<Map<string, Float32Array>> {
  const opened = await openOnnxFile(file);
  try {
    const { contents } = opened;
    return new Map(contents.list().filter((t) => t.patchable !== false).map((t) => [t.name, Float32Array.from(contents.values(t.name))]));
  } finally {
    await opened.close();
  }
}

test('release add --eval refuses a lossy payload that takes the model further from the version, leaving the folder as it was', async () => {
  const site = await releaseOfV1('away');
  const before = await treeBytes(site);
  // Keyframes off (--keyframe-below 0): the payload is kept lossy, and refused.
  const r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '300', '--eval', inputs, '--keyframe-below', '0', '--key', key);
  assert.equal(r.code, 2, r.err);
  const line = /v2-from-v1: on 200 --eval inputs, closeness to version 2: unpatched base top-1 agreement ([\d.]+)%.*; base \+ payload top-1 agreement ([\d.]+)%/.exec(r.out);
  assert.ok(line, r.out);
  // The unpatched base's figure is onnxruntime-web's: v1's decisions against v2's.
  const [ort1, ort2] = [await ortImages(v1, data), await ortImages(v2, data)];
  assert.equal(Number(line[1]), Number((100 * agreement(decisions(ort1, logits), decisions(ort2, logits))).toFixed(2)));
  assert.ok(Number(line[2]) < Number(line[1]), 'the payload agrees with v2 less often than v1 does');
  assert.match(r.err, /nothing was published and .* is as it was: v2-from-v1: this payload takes the model further from version 2 than not updating at all/);
  assert.match(r.err, /A larger --budget, --method exact, or a payload learned toward the version/);
  assert.deepEqual(await treeBytes(site), before, 'the release folder is byte for byte as before the add');
});

test('release add --eval with the default --keyframe-below ships the exact payload instead of a lossy one devices would agree with less', async () => {
  const site = await releaseOfV1('keyframe');
  const r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '300', '--eval', inputs, '--key', key);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /keyframe threshold: 98\.00% top-1 agreement/);
  assert.match(r.out, /v2-from-v1: devices agree with version 2 on [\d.]+% of the --eval inputs after one lossy payload, below 98\.00%: keyframe, the exact payload is shipped/);
  const manifest = JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')).signed as { payloads: { exact: boolean; method: string }[] };
  assert.deepEqual(manifest.payloads.map((p) => [p.exact, p.method]), [[true, 'exact']]);
});

test('release add --method topk warns what share of the change a lossy payload carries; a device that takes it is told it is near the version', async () => {
  const site = await releaseOfV1('warned');
  const r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '300', '--key', key);
  assert.equal(r.code, 0, r.err);
  const warned = /warning: payload v2-from-v1 is lossy \(top-k within 300\): it carries ([\d.]+)% of the weight change from version 1 to 2 \(by squared size\); devices that take it hold a model near version 2, not version 2/.exec(r.err);
  assert.ok(warned, r.err);
  assert.match(r.err, /Measure it on inputs before devices get it: add with --eval INPUTS/);

  const server = await serveRelease(join(work, 'site'));
  try {
    const device = join(work, 'device.onnx');
    await cp(v1, device);
    const up = await ndiff('update', '--model', device, '--from', `${server.url}warned/`, '--public-key', pub, '--model-id', 'cnn');
    assert.equal(up.code, 0, up.err);
    assert.match(up.out, /updated to version 2/);
    assert.match(up.out, /note: the last payload is lossy \(topk\): the model is near version 2, not bit for bit version 2/);
    // The share it said, from the model the device holds: 1 - |v2 - device|² / |v2 - v1|².
    const [w1, w2, wd] = [await weights(v1), await weights(v2), await weights(device)];
    let left = 0;
    let change = 0;
    for (const [name, a] of w1) {
      const b = w2.get(name) as Float32Array;
      const d = wd.get(name) as Float32Array;
      for (let i = 0; i < a.length; i++) {
        left += (b[i] - d[i]) ** 2;
        change += (b[i] - a[i]) ** 2;
      }
    }
    assert.ok(left > 0, 'the device is not at v2');
    assert.ok(Math.abs(Number(warned[1]) - 100 * (1 - left / change)) < 0.051, `said ${warned[1]}%, the device carries ${(100 * (1 - left / change)).toFixed(2)}%`);
  } finally {
    await server.close();
  }
});

test('release add --eval publishes a lossy payload that brings the model closer, with the figures a device will see', async () => {
  const site = await releaseOfV1('closer');
  const r = await ndiff('release', 'add', '--release', site, '--model', v2, '--method', 'topk', '--budget', '350', '--eval', inputs, '--keyframe-below', '0.9', '--key', key);
  assert.equal(r.code, 0, r.err);
  const line = /v2-from-v1: on 200 --eval inputs, closeness to version 2: unpatched base top-1 agreement ([\d.]+)%.*; base \+ payload top-1 agreement ([\d.]+)%/.exec(r.out);
  assert.ok(line, r.out);
  assert.doesNotMatch(r.err, /further from/);
  // What a device holds after the signed payload, run by onnxruntime-web.
  const manifest = JSON.parse(await readFile(join(site, 'manifest.json'), 'utf8')).signed as { payloads: { file: string; fromVersion: number }[] };
  assert.equal(manifest.payloads.length, 1);
  const { applyToOnnxFile } = await import('../src/io/onnx/files.ts');
  const device = join(work, 'closer-device.onnx');
  await cp(v1, device);
  await applyToOnnxFile(device, new Uint8Array(await readFile(join(site, manifest.payloads[0].file))), { state: null });
  const [onDevice, ort2] = [await ortImages(device, data), await ortImages(v2, data)];
  assert.equal(Number(line[2]), Number((100 * agreement(decisions(onDevice, logits), decisions(ort2, logits))).toFixed(2)));
  assert.ok(Number(line[2]) > Number(line[1]));
});

test('release add --eval: usage errors before any work', async () => {
  const site = join(work, 'site', 'usage');
  const plan = await ndiff('release', 'add', '--release', site, '--model', v1, '--model-id', 'cnn', '--method', 'topk', '--budget', '300', '--eval', inputs, '--plan');
  assert.equal(plan.code, 2);
  assert.match(plan.err, /with --plan add makes none/);
  const exact = await ndiff('release', 'add', '--release', site, '--model', v1, '--model-id', 'cnn', '--eval', inputs, '--key', key);
  assert.equal(exact.code, 2);
  assert.match(exact.err, /exact payloads reach the version bit for bit/);
  const stray = await ndiff('release', 'add', '--release', site, '--model', v1, '--model-id', 'cnn', '--state', 'h:hN', '--key', key);
  assert.equal(stray.code, 2);
  assert.match(stray.err, /--state, --output and --output-kind tell --eval how to run an \.onnx model/);
  const missing = await ndiff('release', 'add', '--release', site, '--model', v1, '--model-id', 'cnn', '--method', 'topk', '--budget', '300', '--eval', join(work, 'nowhere'), '--key', key);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /--eval .*nowhere does not exist/);
});
