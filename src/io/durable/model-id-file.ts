/**
 * The model id a model file holds, recorded beside it by its first apply (`<model>.ndiff-model.json`,
 * as `.ndiff-folder.json` records a TF.js folder's): later applies refuse payloads of another
 * model id, so a payload signed for another model cannot take this one back to an older version
 * under its own sequence numbers. Node only.
 */
import { StateStoreError } from '../../core/errors.ts';
import { readRegularFile, writeFileAtomically, type FileOps } from './durable.ts';

/** Suffix of the model id record of a model file. */
export const MODEL_ID_SUFFIX = '.ndiff-model.json';

interface ModelIdRecord {
  format: 'neural-diff-model';
  version: 1;
  modelId: string;
}

/** The model id recorded for `modelFile`, or undefined when none is. */
export async function readModelIdRecord(modelFile: string): Promise<string | undefined> {
  const file = modelFile + MODEL_ID_SUFFIX;
  const bad = (why: string): never => {
    throw new StateStoreError(
      `${file} is damaged (${why}): expected {"format": "neural-diff-model", "version": 1, "modelId": "..."}, the model id the first apply recorded; nothing was applied. Restore it (or write the model's id there); deleting it lets payloads of any model id apply to this model`,
      { file, applied: false },
    );
  };
  let bytes: Uint8Array | null;
  try {
    bytes = await readRegularFile(file, { maxBytes: 64 * 1024 });
  } catch (e) {
    return bad((e as Error).message);
  }
  if (bytes === null) return undefined;
  let doc: Partial<ModelIdRecord> | null;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return bad('not JSON');
  }
  if (doc?.format !== 'neural-diff-model' || doc.version !== 1 || typeof doc.modelId !== 'string') return bad('not a neural-diff model id record of version 1');
  return doc.modelId;
}

/** Record `modelId` for `modelFile`, durably (temp file, fsync, rename, fsync of the folder). */
export async function writeModelIdRecord(modelFile: string, modelId: string, options: { fileOps?: FileOps } = {}): Promise<void> {
  const doc: ModelIdRecord = { format: 'neural-diff-model', version: 1, modelId };
  await writeFileAtomically(modelFile + MODEL_ID_SUFFIX, new TextEncoder().encode(JSON.stringify(doc) + '\n'), { fileOps: options.fileOps });
}
