/** Model folders on disk for CLI and IO tests. */
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeModelDir } from '../../src/io/tfjs/index.ts';
import type { MemoryWeightStore } from '../../src/core/weight-store.ts';

export async function tempDir(prefix = 'ndiff-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Write a store as a TF.js graph-model folder (float32 shards). */
export async function writeStore(dir: string, store: MemoryWeightStore): Promise<void> {
  const tensors = new Map(store.list().map((t) => [t.name, { shape: t.shape, data: store.values(t.name) }]));
  await writeModelDir(dir, { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} }, tensors);
}

/** Every file of a folder and its bytes, for byte-for-byte "untouched" checks. */
export async function folderBytes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of (await readdir(dir)).sort()) out.set(f, (await readFile(join(dir, f))).toString('base64'));
  return out;
}
