/**
 * `ndiff update --model M` on a model path that is a FIFO (named pipe): the command must answer
 * (here: the release cannot be reached, exit 11), never hang reading the pipe for the model's
 * inputs and outputs before the update starts, as every other reader of a model refuses one. A
 * folder or a FIFO where the model file should be is no model: refused, and left as it is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/ndiff.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';
import { valuePair } from './helpers/structural-pairs.ts';
import { writeModel } from './helpers/model-on-disk.ts';

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

test('a folder or a FIFO at an .onnx model path is refused as no model file, and left as it is', { skip: process.platform === 'win32' && 'FIFOs', timeout: 120_000 }, async () => {
  const work = await mkdtemp(join(tmpdir(), 'nd-update-notfile-'));
  const out: string[] = [];
  const run = async (...argv: string[]) => {
    out.length = 0;
    return main(argv, { out: (l) => out.push(l), err: (l) => out.push(l), progress: () => {} });
  };
  let server: ReleaseServer | undefined;
  try {
    assert.equal(await run('keygen', '--out', join(work, 'k')), 0);
    const pair = valuePair('onnx', 1);
    await writeModel(join(work, 'v1', 'm.onnx'), pair, 'base');
    await writeModel(join(work, 'v2', 'm.onnx'), pair, 'target');
    assert.equal(await run('release', 'add', '--release', join(work, 'site'), '--model', join(work, 'v1', 'm.onnx'), '--model-id', 'm', '--key', join(work, 'k.private.pem')), 0, out.join('\n'));
    assert.equal(await run('release', 'add', '--release', join(work, 'site'), '--model', join(work, 'v2', 'm.onnx'), '--key', join(work, 'k.private.pem')), 0, out.join('\n'));
    server = await serveRelease(join(work, 'site'));
    const folder = join(work, 'folder.onnx');
    await mkdir(folder);
    await writeFile(join(folder, 'notes.txt'), 'kept');
    const fifo = join(work, 'fifo.onnx');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    for (const [model, what] of [[folder, 'a folder'], [fifo, 'a FIFO (named pipe)']] as const) {
      const code = await run('update', '--model', model, '--from', server.url, '--public-key', join(work, 'k.public.pem'), '--model-id', 'm');
      assert.equal(code, 7, out.join('\n'));
      assert.ok(out.join('\n').includes(`${model} is ${what}, not an ONNX model (.onnx): nothing was changed`), out.join('\n'));
      assert.equal((await lstat(model)).isDirectory(), what === 'a folder');
      assert.equal((await lstat(model)).isFIFO(), what !== 'a folder');
    }
    assert.equal(await readFile(join(folder, 'notes.txt'), 'utf8'), 'kept');
  } finally {
    await server?.close();
    await rm(work, { recursive: true, force: true });
  }
});
