/**
 * Two writes of one file at once in one process both land: each write sweeps the leftovers of
 * earlier interrupted writes of that file, and before the fix the sweep also removed a temp file
 * another write of this process was about to rename (a release run taking a job's arrival while
 * it collected: "ENOENT ... rename jobs/v4-from-v3.ndiff.tmp-...").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { nodeFileOps, writeFileAtomically, type FileOps } from '../src/io/durable/durable.ts';

test('concurrent writes of one file in one process all succeed, the file holds one of them whole, and no temp file is left', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-durable-'));
  try {
    const file = path.join(dir, 'v4-from-v3.ndiff');
    const versions = Array.from({ length: 16 }, (_, i) => new Uint8Array(64 * 1024).fill(i + 1));
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled(versions.map((v) => writeFileAtomically(file, v)));
      const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      assert.deepEqual(failed, [], `round ${round}: ${failed.length} of ${versions.length} writes failed`);
      const bytes = new Uint8Array(await readFile(file));
      assert.equal(bytes.length, 64 * 1024);
      assert.ok(bytes.every((b) => b === bytes[0]), 'the file is one write, whole');
      assert.deepEqual((await readdir(dir)).sort(), ['v4-from-v3.ndiff']);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a write whose temp file is on disk when a second write of the same file starts still lands', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-durable-'));
  try {
    const file = path.join(dir, 'v4-from-v3.ndiff');
    // The first write waits, its temp file written, until the second has swept and begun writing.
    let secondWriting!: () => void;
    const second = new Promise<void>((resolve) => (secondWriting = resolve));
    let firstOnDisk!: () => void;
    const onDisk = new Promise<void>((resolve) => (firstOnDisk = resolve));
    const firstOps: FileOps = { ...nodeFileOps, async writeNewFile(f, parts, o) { await nodeFileOps.writeNewFile(f, parts, o); firstOnDisk(); await second; } };
    const secondOps: FileOps = { ...nodeFileOps, async writeNewFile(f, parts, o) { secondWriting(); await nodeFileOps.writeNewFile(f, parts, o); } };
    const first = writeFileAtomically(file, new Uint8Array(8).fill(1), { fileOps: firstOps });
    await onDisk;
    const results = await Promise.allSettled([first, writeFileAtomically(file, new Uint8Array(8).fill(2), { fileOps: secondOps })]);
    assert.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), []);
    assert.deepEqual((await readdir(dir)).sort(), ['v4-from-v3.ndiff']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a leftover of an interrupted write (another process\'s temp file) is still swept', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'nd-durable-'));
  try {
    const file = path.join(dir, 'state.json');
    await writeFile(`${file}.tmp-999999-abcdef012345`, '{"half');
    await writeFileAtomically(file, new TextEncoder().encode('{}'));
    assert.deepEqual((await readdir(dir)).sort(), ['state.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
