import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile, writeFile, cp, rm, readdir } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { main } from '../cli/ndiff.ts';
import type { CliIO } from '../cli/common.ts';
import { baseAndTarget } from './helpers/models.ts';
import { tempDir, writeStore, folderBytes } from './helpers/dirs.ts';
import { readModelTensors } from '../src/io/tfjs/index.ts';
import { decodePayload } from '../src/core/format.ts';

function capture(): CliIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: (l) => stderr.push(l) };
}

async function ndiff(...argv: string[]) {
  const io = capture();
  const code = await main(argv, io);
  return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
}

describe('ndiff CLI', () => {
  let dir: string;
  let baseDir: string;
  let targetDir: string;
  let payload: string;
  before(async () => {
    dir = await tempDir();
    const { base, target } = baseAndTarget(4);
    baseDir = join(dir, 'v1');
    targetDir = join(dir, 'v2');
    await writeStore(baseDir, base);
    await writeStore(targetDir, target);
    payload = join(dir, 'v1-v2.ndiff');
  });

  test('diff writes a payload within the budget, deterministically', async () => {
    const r = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', '5%', '--out', payload);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /wrote .* bytes/);
    const bytes = await readFile(payload);
    const modelBytes = 4 * (72 + 8 + 4096 + 32 + 320 + 10);
    assert.ok(bytes.length <= Math.floor(modelBytes * 0.05));
    const again = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', '5%', '--out', payload + '.2');
    assert.equal(again.code, 0);
    assert.deepEqual(await readFile(payload + '.2'), bytes);
  });

  test('diff --model-out writes the model devices hold after the update: the base of the next diff', async () => {
    const held = join(dir, 'v2-held');
    const r = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', '5%', '--out', join(dir, 'chain.ndiff'), '--model-out', held);
    assert.equal(r.code, 0, r.err);
    const { header } = decodePayload(await readFile(join(dir, 'chain.ndiff')));
    assert.match(r.out, new RegExp(`wrote the updated model to .* \\(${header.targetFingerprint}\\)`));
    assert.equal((await ndiff('fingerprint', held)).out.trim(), header.targetFingerprint);
    // The next diff is made against it, and applies to a device that took the first one.
    const next = await ndiff('diff', '--base', held, '--target', baseDir, '--budget', '5%', '--out', join(dir, 'chain2.ndiff'), '--sequence', '2');
    assert.equal(next.code, 0, next.err);
    const device = join(dir, 'chain-device');
    await cp(baseDir, device, { recursive: true });
    assert.equal((await ndiff('apply', '--model', device, '--patch', join(dir, 'chain.ndiff'), '--no-state')).code, 0);
    assert.equal((await ndiff('apply', '--model', device, '--patch', join(dir, 'chain2.ndiff'), '--no-state')).code, 0);
  });

  test('an output path that cannot be created (under /proc) is refused with exit 2 and what to do, not a hang', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
    // Node's own recursive mkdir never returns for such a path: these would hang without makeDirs.
    const diffOut = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', '1%', '--out', '/proc/nd-x/y.ndiff');
    assert.equal(diffOut.code, 2, diffOut.err);
    assert.match(diffOut.err, /cannot write --out \/proc\/nd-x\/y\.ndiff: ENOENT on \/proc\/nd-x; choose a writable location/);
    const modelOut = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', '1%', '--out', join(dir, 'p.ndiff'), '--model-out', '/proc/nd-x/model');
    assert.equal(modelOut.code, 2, modelOut.err);
    const keys = await ndiff('keygen', '--out', '/proc/nd-x/release');
    assert.equal(keys.code, 2, keys.err);
    assert.match(keys.err, /choose a writable location/);
  });

  test('inspect prints the header and a row per tensor; --json parses', async () => {
    const r = await ndiff('inspect', payload);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /method +topk/);
    assert.match(r.out, /dense\/kernel +sparse +\[128x32\]/);
    const j = await ndiff('inspect', payload, '--json');
    const parsed = JSON.parse(j.out);
    assert.equal(parsed.header.method, 'topk');
    assert.ok(parsed.patches.length > 0);
  });

  test('apply patches the folder in place to the target fingerprint; re-running is a no-op', async () => {
    const device = join(dir, 'device');
    await cp(baseDir, device, { recursive: true });
    const r = await ndiff('apply', '--model', device, '--patch', payload);
    assert.equal(r.code, 0, r.err);
    const { header } = decodePayload(await readFile(payload));
    const fp = await ndiff('fingerprint', device);
    assert.equal(fp.out.trim(), header.targetFingerprint);
    const again = await ndiff('apply', '--model', device, '--patch', payload);
    assert.equal(again.code, 0);
    assert.match(again.out, /already at target/);
    // only the current shards remain
    const files = await readdir(device);
    assert.equal(files.filter((f) => f.endsWith('.bin')).length, 1);
  });

  test('fingerprint --record, then apply checks the unpatched tensors by the recorded digests (--full-check hashes them)', async () => {
    const device = join(dir, 'device-recorded');
    await cp(baseDir, device, { recursive: true });
    const fp = await ndiff('fingerprint', device, '--record');
    assert.equal(fp.code, 0, fp.err);
    assert.match(fp.err, /recorded \d+ tensor digests/);
    const full = join(dir, 'device-full');
    await cp(device, full, { recursive: true });
    const r = await ndiff('apply', '--model', device, '--patch', payload, '--no-state');
    assert.equal(r.code, 0, r.err);
    const { header } = decodePayload(await readFile(payload));
    assert.match(r.err, /base checked: \d+ tensor\(s\) read and hashed, \d+ by recorded digests/);
    const f = await ndiff('apply', '--model', full, '--patch', payload, '--no-state', '--full-check');
    assert.equal(f.code, 0, f.err);
    assert.match(f.err, /base checked: \d+ tensor\(s\) read and hashed$/m);
    assert.doesNotMatch(f.err, /by recorded digests/);
    assert.equal((await ndiff('fingerprint', device)).out.trim(), header.targetFingerprint);
    assert.equal((await ndiff('fingerprint', full)).out.trim(), header.targetFingerprint);
  });

  test('verify checks applicability without writing', async () => {
    const before = await folderBytes(baseDir);
    const ok = await ndiff('verify', payload, '--model', baseDir);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /applies cleanly/);
    assert.deepEqual(await folderBytes(baseDir), before);
    // the fine-tuned target is not what a lossy top-k payload produces: another base
    const wrong = await ndiff('verify', payload, '--model', targetDir);
    assert.equal(wrong.code, 4);
    assert.match(wrong.err, /targets base/);
  });

  test('refusals: exit code, message, and the folder untouched byte for byte', async () => {
    const device = join(dir, 'device2');
    await cp(baseDir, device, { recursive: true });
    const before = await folderBytes(device);
    const bytes = await readFile(payload);
    const cases: [string, Uint8Array | null, number, RegExp][] = [
      ['truncated', bytes.subarray(0, bytes.length - 9), 3, /corrupt/],
      ['not a payload', new TextEncoder().encode('hello'), 3, /msgpack map/],
      ['missing payload file', null, 2, /no payload file/],
    ];
    for (const [name, content, code, msg] of cases) {
      const p = join(dir, `bad-${name.replace(/ /g, '-')}.ndiff`);
      if (content) await writeFile(p, content);
      const r = await ndiff('apply', '--model', device, '--patch', p);
      assert.equal(r.code, code, `${name}: ${r.err}`);
      assert.match(r.err, msg, name);
      assert.deepEqual(await folderBytes(device), before, `${name}: folder changed`);
    }
    // another base
    const other = join(dir, 'other');
    await writeStore(other, baseAndTarget(99).base);
    const otherBefore = await folderBytes(other);
    const r = await ndiff('apply', '--model', other, '--patch', payload);
    assert.equal(r.code, 4);
    assert.match(r.err, /targets base .* fetch the full model/);
    assert.deepEqual(await folderBytes(other), otherBefore);
  });

  test('missing shard file: exit 7, nothing written', async () => {
    const device = join(dir, 'device3');
    await cp(baseDir, device, { recursive: true });
    const shard = (await readdir(device)).find((f) => f.endsWith('.bin')) as string;
    await rm(join(device, shard));
    const before = await folderBytes(device);
    const r = await ndiff('apply', '--model', device, '--patch', payload);
    assert.equal(r.code, 7, r.err);
    assert.match(r.err, new RegExp(shard.replace(/[.]/g, '\\.')));
    assert.deepEqual(await folderBytes(device), before);
  });

  test('usage errors exit 2 and point to --help', async () => {
    const r = await ndiff('diff', '--model-id', 'm', '--base', baseDir);
    assert.equal(r.code, 2);
    assert.match(r.err, /--target, --budget, --out are required and not given: add --target VALUE --budget VALUE --out VALUE/);
    const b = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', 'lots', '--out', join(dir, 'x.ndiff'));
    assert.equal(b.code, 2);
    assert.match(b.err, /budget "lots" is not understood/);
    const u = await ndiff('frobnicate');
    assert.equal(u.code, 2);
  });

  test('the model id is never the folder name: without --model-id or a recorded id, diff is refused before any work', async () => {
    const out = join(dir, 'no-id.ndiff');
    const r = await ndiff('diff', '--base', baseDir, '--target', targetDir, '--budget', '5%', '--out', out);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /records no model id .*pass --model-id ID/);
    assert.match(r.err, /not taken from the folder name/);
    await assert.rejects(readFile(out), 'nothing written');
    // --help says where the default comes from; the command's page says it in full.
    const help = spawnSync(process.execPath, [join(import.meta.dirname, '..', 'cli', 'ndiff.mjs'), 'diff', '--help'], { encoding: 'utf8' });
    assert.match(help.stdout.replace(/\s+/g, ' '), /--model-id id devices know the model by \(default: the one the base recorded\)/);
    const page = await readFile(join(import.meta.dirname, '..', 'docs', 'cli', 'diff.md'), 'utf8');
    assert.match(page.replace(/\s+/g, ' '), /Required unless the base folder recorded one .*never taken from the folder name/);
  });

  test('a budget below the header size exits 6', async () => {
    const r = await ndiff('diff', '--model-id', 'm', '--base', baseDir, '--target', targetDir, '--budget', '20', '--out', join(dir, 'tiny.ndiff'));
    assert.equal(r.code, 6, r.err);
    assert.match(r.err, /raise the budget/);
  });

  test('the ndiff binary runs and --help teaches the commands and exit codes', () => {
    const r = spawnSync(process.execPath, [join(import.meta.dirname, '..', 'cli', 'ndiff.mjs'), '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const c of ['diff', 'inspect', 'apply', 'verify', 'fingerprint', 'Exit codes']) assert.ok(r.stdout.includes(c), c);
    const d = spawnSync(process.execPath, [join(import.meta.dirname, '..', 'cli', 'ndiff.mjs'), 'diff', '--help'], { encoding: 'utf8' });
    assert.match(d.stdout, /--budget/);
  });

  test('patched folder loads back with the exact target values', async () => {
    const device = join(dir, 'device4');
    await cp(baseDir, device, { recursive: true });
    assert.equal((await ndiff('apply', '--model', device, '--patch', payload)).code, 0);
    const tensors = await readModelTensors(device);
    const { header } = decodePayload(await readFile(payload));
    assert.equal(header.method, 'topk');
    assert.equal(tensors.size, 6);
  });
});

test('output piped into a reader that stops early (`ndiff ... | head`) ends quietly, without an EPIPE stack trace', async () => {
  const { spawn } = await import('node:child_process');
  for (const argv of [['--help'], ['train', '--help']]) {
    const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'cli', 'ndiff.mjs'), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the reader is gone before the first line: every write meets a closed pipe
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.doesNotMatch(stderr, /EPIPE|Unhandled 'error' event/, `ndiff ${argv.join(' ')}: ${stderr}`);
    assert.equal(code, 0, `ndiff ${argv.join(' ')}: ${stderr}`);
  }
  // Both streams into a reader that is gone (`2>&1 | head`): the command still ends with its own exit code.
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'cli', 'ndiff.mjs'), 'fingerprint', join(await tempDir('nd-epipe-'), 'no-model')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  child.stderr.destroy();
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 7, 'the exit code of a missing model, not a crash on the closed stderr');
});
