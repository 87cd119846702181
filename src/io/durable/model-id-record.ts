/**
 * The model id record's text (`<model>.ndiff-model.json` beside a model file, `.ndiff-folder.json`
 * in a TF.js folder), read and written: pure, so the Node record files (`model-id-file.ts`) and
 * the browser's OPFS folder (src/io/gguf/opfs.ts) keep one format and one refusal.
 */
import { StateStoreError } from '../../core/errors.ts';

/** Suffix of the model id record of a model file. */
export const MODEL_ID_SUFFIX = '.ndiff-model.json';

/** The two kinds of model id record: beside a model file, and inside a TF.js model folder. */
export type ModelIdRecordFormat = 'neural-diff-model' | 'neural-diff-folder';

/** The refusal of a damaged record `file` (`why`): nothing may be applied until it is restored. */
export function damagedModelIdRecord(file: string, format: ModelIdRecordFormat, why: string): StateStoreError {
  const holder = format === 'neural-diff-folder' ? 'folder' : 'model';
  return new StateStoreError(
    `${file} is damaged (${why}): expected {"format": "${format}", "version": 1, "modelId": "..."}, the model id the first apply recorded; nothing was applied. Restore it (or write the ${holder}'s model id there); deleting it lets payloads of any model id apply to this ${holder}`,
    { file, applied: false },
  );
}

/**
 * The model id a record's `text` holds (`file` names it in the refusal).
 * @throws StateStoreError when it is not a record of `format`, version 1
 */
export function parseModelIdRecord(text: string, file: string, format: ModelIdRecordFormat): string {
  let doc: { format?: unknown; version?: unknown; modelId?: unknown } | null;
  try {
    doc = JSON.parse(text);
  } catch {
    throw damagedModelIdRecord(file, format, 'not JSON');
  }
  if (doc?.format !== format || doc.version !== 1 || typeof doc.modelId !== 'string') throw damagedModelIdRecord(file, format, `not a ${format} record of version 1`);
  return doc.modelId;
}

/** A record of `format` holding `modelId`, as its file's text. */
export function modelIdRecordText(format: ModelIdRecordFormat, modelId: string): string {
  return JSON.stringify({ format, version: 1, modelId }) + '\n';
}
