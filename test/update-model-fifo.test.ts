/**
 * `ndiff update --model M` on a model path that is a FIFO (named pipe): the command must answer
 * (here: the release cannot be reached, exit 11), never hang reading the pipe for the model's
 * inputs and outputs before the update starts, as every other reader of a model refuses one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../cli/ndiff.mjs', import.meta.url));

function ndiff(argv: string[], killAfterMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

test('a FIFO given as the model: ndiff update answers instead of hanging on it', { skip: process.platform === 'win32' && 'FIFOs', timeout: 120_000 }, async () => {
  const work = await mkdtemp(join(tmpdir(), 'nd-update-fifo-'));
  try {
    const model = join(work, 'model.onnx');
    assert.equal(spawnSync('mkfifo', [model]).status, 0);
    const keys = await ndiff(['keygen', '--out', join(work, 'k')], 60_000);
    assert.equal(keys.code, 0, keys.stderr);
    // Port 9 (discard) on the loopback: nothing listens, the manifest fetch fails at once.
    const r = await ndiff(['update', '--model', model, '--from', 'http://127.0.0.1:9/', '--public-key', join(work, 'k.public.pem'), '--model-id', 'm'], 60_000);
    assert.equal(r.signal, null, `killed after 60 s: it hung (${r.stderr.slice(0, 300)})`);
    assert.equal(r.code, 11, r.stderr);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
