/**
 * A version whose inputs or outputs differ from the one before (issue 62, finding 2): `ndiff
 * release add` and `ndiff update` say so on stderr and in their --json result, as `ndiff diff`
 * does for a structural payload, since the app that feeds the model must change with it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { interfaceWarning } from '../cli/commands/diff-structural.ts';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { serveRelease } from './helpers/release-server.ts';
import { segTflite } from './helpers/segmentation.ts';

test('ndiff release add and ndiff update warn when the new version\'s output differs (a mask of 2 channels for 1), and not for the same interface', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-interface-release-'));
  const server = await serveRelease(dir);
  try {
    const [v1, v2, v3, device, key, site] = ['v1.tflite', 'v2.tflite', 'v3.tflite', 'device.tflite', 'k', 'site'].map((f) => path.join(dir, f));
    await writeFile(v1, segTflite(1, 0));
    await writeFile(v2, segTflite(2, 0, 2));
    await writeFile(v3, segTflite(3, 0, 2));
    assert.equal((await run('keygen', '--out', key)).code, 0);
    const first = await run('release', 'add', '--release', site, '--model', v1, '--model-id', 'm', '--key', `${key}.private.pem`, '--expires', '30d');
    assert.equal(first.code, 0, first.err);
    assert.doesNotMatch(first.err, /warning: the model's inputs or outputs changed/);
    const add = await run('release', 'add', '--release', site, '--model', v2, '--key', `${key}.private.pem`, '--expires', '30d', '--json');
    assert.equal(add.code, 0, add.err);
    assert.match(add.err, /warning: the model's inputs or outputs changed \(output 0 mask \[1, 4, 4, 1\] -> mask \[1, 4, 4, 2\]\)/);
    const doc = JSON.parse(add.out) as { interfaceChanged?: boolean; warning?: string };
    assert.equal(doc.interfaceChanged, true);
    assert.match(doc.warning ?? '', /app that feeds the model/);

    await writeFile(device, segTflite(1, 0));
    const up = await run('update', '--model', device, '--from', `${server.url}site/`, '--public-key', `${key}.public.pem`, '--model-id', 'm', '--json');
    assert.equal(up.code, 0, up.err + up.out);
    assert.match(up.err, /warning: the model's inputs or outputs changed \(output 0 mask \[1, 4, 4, 1\] -> mask \[1, 4, 4, 2\]\)/);
    const upDoc = JSON.parse(up.out) as { status: string; interfaceChanged?: boolean };
    assert.equal(upDoc.status, 'updated');
    assert.equal(upDoc.interfaceChanged, true);

    // The same interface again: no warning from either.
    const same = await run('release', 'add', '--release', site, '--model', v3, '--key', `${key}.private.pem`, '--expires', '30d');
    assert.equal(same.code, 0, same.err);
    assert.doesNotMatch(same.err, /inputs or outputs changed/);
    const again = await run('update', '--model', device, '--from', `${server.url}site/`, '--public-key', `${key}.public.pem`, '--model-id', 'm');
    assert.equal(again.code, 0, again.err);
    assert.doesNotMatch(again.err, /inputs or outputs changed/);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('the warning names only the inputs and outputs that changed, and which only changed their names (MediaPipe pose lite 0.3 -> 0.5)', () => {
  const port = (name: string, shape: number[]) => ({ name, shape, type: 0 });
  const input = [port('input_1', [1, 256, 256, 3])];
  const before = { inputs: input, outputs: [port('ld_3d', [1, 195]), port('output_poseflag', [1, 1]), port('output_segmentation', [1, 128, 128, 1])] };
  const after = { inputs: input, outputs: [port('Identity', [1, 195]), port('output_poseflag', [1, 1]), port('Identity_2', [1, 256, 256, 1])] };
  const w = interfaceWarning(before, after, 'the app must change with it') ?? '';
  assert.equal(w, "the model's inputs or outputs changed (output 0 ld_3d [1, 195] -> Identity [1, 195] (renamed only); output 2 output_segmentation [1, 128, 128, 1] -> Identity_2 [1, 256, 256, 1]): the app must change with it");
  assert.equal(interfaceWarning(before, before, 'x'), undefined);
});
