/** Model folders on disk for CLI and IO tests. */
import { rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeModelDir } from '../../src/io/tfjs/index.ts';
import { MemoryWeightStore } from '../../src/core/weight-store.ts';
import { TFJS_FRAME, tfjsFrameValues } from '../../src/io/tfjs/frame.ts';
import type { TfjsModelJson } from '../../src/io/tfjs/manifest.ts';

/** The model.json (less its manifest) {@link writeStore} writes. */
export const TEST_MODEL_JSON = { format: 'graph-model', generatedBy: 'neural-diff tests', modelTopology: {} } as const;

/**
 * `store` with the frame (`tfjs:frame`) of a folder written from it with `template` and float32
 * tensors only: its fingerprint is then that folder's, so a payload built from it applies there.
 */
export function withTfjsFrame(store: MemoryWeightStore, template: Omit<TfjsModelJson, 'weightsManifest'> = TEST_MODEL_JSON): MemoryWeightStore {
  const frame = tfjsFrameValues({ ...template, weightsManifest: [] } as unknown as TfjsModelJson, () => new Uint8Array());
  const tensors = store.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: store.values(t.name) }] as [string, { shape: readonly number[]; data: Float32Array }]);
  return new MemoryWeightStore([...tensors, [TFJS_FRAME, { shape: [8], data: frame, patchable: false }]]);
}

const made: string[] = [];

/**
 * A new private folder under the OS temp folder, removed when this process exits (each test file
 * runs in its own process), so a suite run leaves nothing behind in TMPDIR; set
 * `NDIFF_KEEP_TEST_DIRS=1` to keep them for a look after a failure.
 */
export async function tempDir(prefix = 'ndiff-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (made.length === 0 && process.env.NDIFF_KEEP_TEST_DIRS !== '1') {
    process.once('exit', () => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
  }
  made.push(dir);
  return dir;
}

/** Write a store as a TF.js graph-model folder (float32 shards). */
export async function writeStore(dir: string, store: MemoryWeightStore): Promise<void> {
  const tensors = new Map(store.list().filter((t) => t.patchable !== false).map((t) => [t.name, { shape: t.shape, data: store.values(t.name) }]));
  await writeModelDir(dir, { ...TEST_MODEL_JSON }, tensors);
}

/** Every file of a folder and its bytes, for byte-for-byte "untouched" checks. */
export async function folderBytes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of (await readdir(dir)).sort()) out.set(f, (await readFile(join(dir, f))).toString('base64'));
  return out;
}

/** Every file under a folder (sub-folders included, by relative path) and its bytes; folders as `<dir>`. */
export async function treeBytes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of (await readdir(dir, { withFileTypes: true, recursive: true })).sort((a, b) => join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)))) {
    const full = join(e.parentPath, e.name);
    out.set(full.slice(dir.length + 1), e.isDirectory() ? '<dir>' : (await readFile(full)).toString('base64'));
  }
  return out;
}
