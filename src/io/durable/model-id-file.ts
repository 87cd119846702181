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

/** The two kinds of model id record: beside a model file, and inside a TF.js model folder. */
export type ModelIdRecordFormat = 'neural-diff-model' | 'neural-diff-folder';

/**
 * The model id recorded in `file` (a record of `format`), or undefined when there is none.
 * @throws StateStoreError when the file is damaged: nothing may be applied until it is restored
 */
export async function readModelIdFile(file: string, format: ModelIdRecordFormat): Promise<string | undefined> {
  const holder = format === 'neural-diff-folder' ? 'folder' : 'model';
  const bad = (why: string): never => {
    throw new StateStoreError(
      `${file} is damaged (${why}): expected {"format": "${format}", "version": 1, "modelId": "..."}, the model id the first apply recorded; nothing was applied. Restore it (or write the ${holder}'s model id there); deleting it lets payloads of any model id apply to this ${holder}`,
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
  let doc: { format?: unknown; version?: unknown; modelId?: unknown } | null;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return bad('not JSON');
  }
  if (doc?.format !== format || doc.version !== 1 || typeof doc.modelId !== 'string') return bad(`not a ${format} record of version 1`);
  return doc.modelId;
}

/** Record `modelId` in `file` as a record of `format`, durably (temp file, fsync, rename, fsync of the folder). */
export async function writeModelIdFile(file: string, format: ModelIdRecordFormat, modelId: string, options: { fileOps?: FileOps } = {}): Promise<void> {
  await writeFileAtomically(file, new TextEncoder().encode(JSON.stringify({ format, version: 1, modelId }) + '\n'), { fileOps: options.fileOps });
}

/** The model id recorded for `modelFile`, or undefined when none is. */
export function readModelIdRecord(modelFile: string): Promise<string | undefined> {
  return readModelIdFile(modelFile + MODEL_ID_SUFFIX, 'neural-diff-model');
}

/** Record `modelId` for `modelFile`, durably. */
export function writeModelIdRecord(modelFile: string, modelId: string, options: { fileOps?: FileOps } = {}): Promise<void> {
  return writeModelIdFile(modelFile + MODEL_ID_SUFFIX, 'neural-diff-model', modelId, options);
}
