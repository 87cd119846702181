/**
 * A pair's version written where a device keeps it (a TF.js folder or one file), and the
 * fingerprint of what is there: for the tests and harnesses that update such models on disk.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fingerprintStore } from '../../src/core/fingerprint.ts';
import { getHasher } from '../../src/core/hasher.ts';
import { openTfjsModelDir } from '../../src/io/tfjs/index.ts';
import { openOnnxFile } from '../../src/io/onnx/files.ts';
import { openTfliteFile } from '../../src/io/tflite/files.ts';
import type { PairFormat, StructuralPair } from './structural-pairs.ts';

/** The fingerprint of the model at `model` (a TF.js folder, an `.onnx` or a `.tflite` file). */
export async function fingerprintOf(model: string, format: PairFormat): Promise<string> {
  const hasher = await getHasher();
  if (format === 'tfjs') return fingerprintStore(hasher, await openTfjsModelDir(model)).fingerprint;
  const disk = format === 'onnx' ? await openOnnxFile(model) : await openTfliteFile(model);
  try {
    return fingerprintStore(hasher, disk).fingerprint;
  } finally {
    await disk.close();
  }
}

/** The pair's base or target at `model`: a TF.js folder, or a single file. */
export async function writeModel(model: string, pair: StructuralPair, which: 'base' | 'target'): Promise<void> {
  if (pair.format !== 'tfjs') {
    await mkdir(dirname(model), { recursive: true });
    await writeFile(model, which === 'base' ? pair.base : pair.target);
    return;
  }
  await mkdir(model, { recursive: true });
  for (const f of (which === 'base' ? pair.baseFiles : pair.targetFiles) ?? []) await writeFile(join(model, f.path), f.bytes);
}
