/**
 * The model id a model file holds, recorded beside it by its first apply (`<model>.ndiff-model.json`,
 * as `.ndiff-folder.json` records a TF.js folder's): later applies refuse payloads of another
 * model id, so a payload signed for another model cannot take this one back to an older version
 * under its own sequence numbers. Node only.
 */
import { readRegularFile, writeFileAtomically, type FileOps } from './durable.ts';
import { damagedModelIdRecord, MODEL_ID_SUFFIX, modelIdRecordText, parseModelIdRecord, type ModelIdRecordFormat } from './model-id-record.ts';

export { MODEL_ID_SUFFIX } from './model-id-record.ts';

export type { ModelIdRecordFormat } from './model-id-record.ts';

/**
 * The model id recorded in `file` (a record of `format`), or undefined when there is none.
 * @throws StateStoreError when the file is damaged: nothing may be applied until it is restored
 */
export async function readModelIdFile(file: string, format: ModelIdRecordFormat): Promise<string | undefined> {
  let bytes: Uint8Array | null;
  try {
    bytes = await readRegularFile(file, { maxBytes: 64 * 1024 });
  } catch (e) {
    throw damagedModelIdRecord(file, format, (e as Error).message);
  }
  if (bytes === null) return undefined;
  return parseModelIdRecord(new TextDecoder().decode(bytes), file, format);
}

/** Record `modelId` in `file` as a record of `format`, durably (temp file, fsync, rename, fsync of the folder). */
export async function writeModelIdFile(file: string, format: ModelIdRecordFormat, modelId: string, options: { fileOps?: FileOps } = {}): Promise<void> {
  await writeFileAtomically(file, new TextEncoder().encode(modelIdRecordText(format, modelId)), { fileOps: options.fileOps });
}

/** The model id recorded for `modelFile`, or undefined when none is. */
export function readModelIdRecord(modelFile: string): Promise<string | undefined> {
  return readModelIdFile(modelFile + MODEL_ID_SUFFIX, 'neural-diff-model');
}

/** Record `modelId` for `modelFile`, durably. */
export function writeModelIdRecord(modelFile: string, modelId: string, options: { fileOps?: FileOps } = {}): Promise<void> {
  return writeModelIdFile(modelFile + MODEL_ID_SUFFIX, 'neural-diff-model', modelId, options);
}
