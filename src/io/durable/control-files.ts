/**
 * The files of a TF.js model folder that belong to the applier, not to the model: model.json
 * itself, the previous version kept during an update, the update journal, the apply lock, the
 * state file, the recorded digests, the folder's model id, and temporary files. A weights
 * manifest that names one of them as a weight shard is refused before anything is read or
 * written: an update rewrites and deletes shards, and would rewrite or delete that file with
 * them (a manifest that lists `model.json` as a shard deletes the model when its old shards are
 * cleaned up).
 */
import * as path from 'node:path';
import { TEMP_FILE } from './durable.ts';

/** Name of the model file inside a model folder. */
export const MODEL_JSON = 'model.json';
/**
 * The previous version's model.json, kept during an update until the new version is confirmed
 * or rolled back (src/io/tfjs/folder-update.ts; the update journal names it).
 */
export const PREVIOUS_MODEL_JSON = 'model.json.prev';
/**
 * The update journal: written (durably) before an update writes anything, removed when the
 * update is confirmed or rolled back. Recovery acts only on what a journal of this format names.
 */
export const JOURNAL_FILE = '.ndiff-journal.json';
/** Prefix of the apply lock files (`.ndiff-apply.lock-<pid>-<ms>-<hex>`; the bare name is an older applier's lock). */
export const LOCK_FILE = '.ndiff-apply.lock';
/** The state file's default name inside a model folder (`ndiff apply` default). */
export const DEFAULT_STATE_FILE = '.ndiff-state.json';
/** Recorded tensor digests (src/io/tfjs/recorded-digests.ts). */
export const DIGESTS_FILE = '.ndiff-digests.json';
/** The model id the folder holds, recorded by its first apply (src/io/tfjs/folder-update.ts). */
export const FOLDER_FILE = '.ndiff-folder.json';

/**
 * Why the manifest path `p` names a file the applier owns in `dir` (a reason), or undefined.
 * Compared case-insensitively (macOS and Windows folders are), after `./` and `\` are resolved;
 * `extra` adds absolute paths (a state file kept in the folder under another name).
 * Reserved: `model.json` and `model.json.*`, every `.ndiff-*` name, temporary files
 * (`*.tmp-<pid>-<hex>`), and the `extra` files.
 */
export function controlFileProblem(dir: string, p: string, extra: readonly string[] = []): string | undefined {
  const resolved = path.resolve(dir, p.replace(/\\/g, '/'));
  const lower = resolved.toLowerCase();
  if (extra.some((f) => path.resolve(f).toLowerCase() === lower)) return 'the state file';
  if (path.dirname(resolved).toLowerCase() !== path.resolve(dir).toLowerCase()) return undefined;
  const name = path.basename(resolved).toLowerCase();
  if (name === MODEL_JSON) return 'the model file itself';
  if (name.startsWith(`${MODEL_JSON}.`)) return 'a previous or temporary model.json of an update';
  if (name.startsWith('.ndiff-')) return 'a file of the applier (lock, journal, state, digests or model id)';
  if (TEMP_FILE.test(name)) return 'a temporary file of a writer';
  return undefined;
}
