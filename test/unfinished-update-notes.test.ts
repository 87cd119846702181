/**
 * The commands that only look at a model say when an earlier apply left an update unfinished
 * beside it (`ndiff apply --health-check CMD` killed while the check ran): `ndiff verify --model`
 * said "already at the target" and `ndiff fingerprint` printed the new version's fingerprint
 * without a word, while the next apply without a health check refuses that model (exit 5). Once
 * the update is finished (here confirmed by a passing check), neither says it any more.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runNdiff as run } from './helpers/ndiff-run.ts';
import { valuePair } from './helpers/structural-pairs.ts';
import { fingerprintOf, writeModel } from './helpers/model-on-disk.ts';

const cli = fileURLToPath(new URL('../cli/ndiff.mjs', import.meta.url));

/** `ndiff apply` in a process of its own whose health check kills it (SIGKILL) after the switch. */
function applyKilledDuringHealthCheck(argv: string[]): Promise<NodeJS.Signals | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'apply', ...argv, '--health-check', 'kill -9 $PPID'], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (_code, signal) => resolve(signal));
  });
}

for (const format of ['tfjs', 'onnx'] as const) {
  test(`${format === 'tfjs' ? 'a TF.js folder' : 'an .onnx file'} with an unconfirmed update: verify and fingerprint say so, until it is finished`, { timeout: 120_000 }, async () => {
    const work = await mkdtemp(join(tmpdir(), 'nd-unfinished-'));
    try {
      const pair = valuePair(format, 3);
      const file = format === 'tfjs' ? '' : 'model.onnx';
      const [v1, v2, device] = ['v1', 'v2', 'device'].map((v) => join(work, v, file));
      await writeModel(v1, pair, 'base');
      await writeModel(v2, pair, 'target');
      await writeModel(device, pair, 'base');
      const payload = join(work, 'v1-v2.ndiff');
      const made = await run('diff', '--model-id', 'm', '--base', v1, '--target', v2, '--budget', 'all', '--out', payload);
      assert.equal(made.code, 0, made.err);
      assert.equal(await applyKilledDuringHealthCheck(['--model', device, '--patch', payload]), 'SIGKILL');
      assert.equal(await fingerprintOf(device, format), await fingerprintOf(v2, format), 'killed after the switch: the device runs v2');

      const verified = await run('verify', payload, '--model', device, '--json');
      assert.equal(verified.code, 0, verified.err);
      assert.equal((JSON.parse(verified.out) as { model: { unfinishedUpdate?: boolean } }).model.unfinishedUpdate, true);
      const said = await run('verify', payload, '--model', device);
      assert.match(said.out, /already at the target/);
      assert.match(said.out, /^note: an earlier apply or update of .* was not finished .*needs --health-check/m);
      const printed = await run('fingerprint', device);
      assert.equal(printed.code, 0, printed.err);
      assert.match(printed.err, /^note: an earlier apply or update of .* was not finished/m);

      // The check passes: confirmed, and nothing is left to say.
      const confirmed = await run('apply', '--model', device, '--patch', payload, '--health-check', 'true');
      assert.equal(confirmed.code, 0, confirmed.err);
      assert.doesNotMatch((await run('verify', payload, '--model', device)).out, /not finished/);
      assert.doesNotMatch((await run('fingerprint', device)).err, /not finished/);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}
