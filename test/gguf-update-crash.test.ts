/**
 * `ndiff update` of a `.gguf` model killed (SIGKILL, test/crash/child.ts: before its N-th
 * file-system operation that changes something, or amid a write to the model) at every point of
 * its run: the manifest's record, the payload's download, the undo journal, the overwrites, the
 * switch marker, the health check's confirmation, the sequence's record. After each kill:
 *
 * - the model, once recovered (`recoverGgufFile` with a passing health check, on a copy of what
 *   the kill left), is v1 or v2 byte for byte: v1 when the kill came before the new version was
 *   whole in place, v2 after (the switch marker says which);
 * - the next `updateModel` (what `ndiff update` runs) with a passing health check ends at v2 byte
 *   for byte, whatever was left: the journal, the marker and partial downloads, and nothing of the
 *   update's is left beside the model but its records.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { recoverGgufFile } from '../src/io/gguf/in-place.ts';
import { updateModel } from '../src/io/updater/node-updater.ts';
import { bundleChild } from './crash/bundle.ts';
import { ggufFixture, perturbGguf } from './helpers/gguf-pairs.ts';
import { writeGgufRelease, type GgufRelease } from './helpers/gguf-release.ts';
import { serveRelease, type ReleaseServer } from './helpers/release-server.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

let work: string;
let server: ReleaseServer;
let release: GgufRelease;
let child: string;
let v1: Uint8Array;
let v2: Uint8Array;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'nd-gguf-update-crash-'));
  v1 = ggufFixture('tiny-llama-q8_0.gguf');
  // Few changed blocks: few ranges, so every operation of the run can be hit.
  v2 = perturbGguf(v1, { blockShare: 0.02, bytesPerBlock: 3, metadata: true, seed: 21 });
  await mkdir(path.join(work, 'site'));
  release = await writeGgufRelease(path.join(work, 'site', 'llm'), [v1, v2], { modelId: 'm' });
  server = await serveRelease(path.join(work, 'site'));
  child = await bundleChild(work);
});
after(async () => {
  await server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Run `updateModel` of `file` (health check passing) in the child, killed before operation `at` (0: never). */
function runUpdate(file: string, at: number, torn: boolean, logFile?: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const job = { mode: 'update', dir: file, payload: `${server.url}llm/`, publicKey: release.publicKeyFile, health: 'pass' };
    const p = spawn(process.execPath, [child, JSON.stringify(job)], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NDIFF_CRASH_AT: String(at), ...(torn ? { NDIFF_CRASH_TORN: '1' } : {}), ...(logFile ? { NDIFF_CRASH_LOG: logFile } : {}) },
    });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

let devices = 0;
async function device(): Promise<string> {
  const dir = path.join(work, `device-${++devices}`);
  await mkdir(dir);
  await writeFile(path.join(dir, 'model.gguf'), v1);
  return path.join(dir, 'model.gguf');
}

test('ndiff update of a .gguf model killed at every step ends at v1 or v2 once recovered, and the next run reaches v2', { timeout: 600_000 }, async () => {
  const logFile = path.join(work, 'ops.log');
  const clean = await runUpdate(await device(), 0, false, logFile);
  assert.equal(clean.code, 0, clean.stderr);
  const ops = (await readFile(logFile, 'utf8')).trim().split('\n');
  // Every operation but the journal's middle ranges (the same step repeated; its first and last are kept).
  const journal = ops.map((o, i) => (o.startsWith('write(model.gguf.ndiff-undo.tmp') ? i : -1)).filter((i) => i >= 0);
  const middle = new Set(journal.slice(2, -2));
  const points = ops.map((_, i) => i + 1).filter((at) => !middle.has(at - 1));
  const marker = ops.findIndex((o) => o.startsWith('open(model.gguf.ndiff-undo.switched.tmp'));
  assert.ok(marker > 0 && ops.slice(marker).some((o) => o === 'unlink(model.gguf.ndiff-undo)'), `the switch marker is written before the journal's deletion:\n${ops.join('\n')}`);

  const bad: string[] = [];
  let sawOld = 0;
  let sawNew = 0;
  let kills = 0;
  for (const at of points) {
    for (const torn of [false, true]) {
      if (torn && !ops[at - 1].startsWith('write(model.gguf,')) continue;
      const file = await device();
      const where = `${torn ? 'torn ' : ''}kill at ${ops[at - 1]} (${at})`;
      const r = await runUpdate(file, at, torn);
      if (r.signal !== 'SIGKILL') {
        bad.push(`${where}: not killed (${r.code}): ${r.stderr.slice(0, 300)}`);
        continue;
      }
      kills++;
      // What the kill left, recovered on a copy: one version or the other, byte for byte.
      const copy = path.join(work, `copy-${devices}`);
      await mkdir(copy);
      for (const name of await readdir(path.dirname(file))) if (name.startsWith('model.gguf') && !name.endsWith('.ndiff-updater')) await copyFile(path.join(path.dirname(file), name), path.join(copy, name));
      await recoverGgufFile(path.join(copy, 'model.gguf'), { healthCheck: () => true });
      const recovered = new Uint8Array(await readFile(path.join(copy, 'model.gguf')));
      if (same(recovered, v1)) sawOld++;
      else if (same(recovered, v2)) sawNew++;
      else bad.push(`${where}: neither version once recovered`);
      // The next run finishes the job.
      const next = await updateModel({ model: file, modelId: 'm', urls: [`${server.url}llm/`], trustedKeys: [release.keys.publicKeyPem], healthCheck: () => true });
      if (next.status === 'failed') bad.push(`${where}: the next run failed: ${next.error?.code} ${next.error?.message}`);
      else if (!same(new Uint8Array(await readFile(file)), v2)) bad.push(`${where}: the next run did not reach v2`);
      const left = (await readdir(path.dirname(file))).filter((n) => n.startsWith('model.gguf.ndiff-undo'));
      if (left.length) bad.push(`${where}: left ${left.join(', ')}`);
      await rm(path.dirname(file), { recursive: true, force: true });
      await rm(copy, { recursive: true, force: true });
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(kills >= 30, `${kills} kills`);
  assert.ok(sawOld > 0 && sawNew > 0, `recovered to v1 ${sawOld} times, to v2 ${sawNew}`);
});
