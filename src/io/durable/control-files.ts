/**
 * The files of a TF.js model's folder that belong to the applier, not to the model: the model
 * file itself, the previous version kept during an update, the update journal, the apply lock,
 * the state file, the recorded digests, the model id record, and temporary files. A weights
 * manifest that names one of them as a weight shard is refused before anything is read or
 * written: an update rewrites and deletes shards, and would rewrite or delete that file with
 * them (a manifest that lists `model.json` as a shard deletes the model when its old shards are
 * cleaned up).
 *
 * Two layouts ({@link modelFilesOf}):
 *
 * - a folder of its own, `model.json` and its shards: the applier's files are `model.json.prev`
 *   and `.ndiff-*` in the folder, as every earlier version of the applier wrote them;
 * - a model JSON file sharing its folder with other models (`models/movenet-lightning.json` +
 *   `movenet-lightning.bin`, as `@vladmandic/human` ships them): the applier's files are named
 *   after the model file, `<file>.ndiff-*`, as they are beside an `.onnx` file, and the shards an
 *   update writes after its stem (`<stem>.group<g>-shard<i>of<n>-<hash>.bin`), so each model's
 *   update, recovery and clean-up touch its own files only. The apply lock (one writer per
 *   folder) and the state file (sequence numbers by model id) stay the folder's.
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
 * The names of one TF.js model's files in its folder and of the applier's files beside it (see
 * the module doc): the folder layout's for `model.json`, else names after the model file.
 */
export interface ModelFiles {
  /** The model JSON file: `model.json`, or the file's own name (`movenet-lightning.json`). */
  readonly model: string;
  /** The previous version kept during an update: `model.json.prev`, or `<file>.ndiff-prev`. */
  readonly previous: string;
  /** The update journal: `.ndiff-journal.json`, or `<file>.ndiff-journal.json`. */
  readonly journal: string;
  /** The recorded tensor digests: `.ndiff-digests.json`, or `<file>.ndiff-digests.json`. */
  readonly digests: string;
  /** The model id record: `.ndiff-folder.json`, or `<file>.ndiff-model.json` (as beside an `.onnx` file). */
  readonly modelId: string;
  /** The record's format (src/io/durable/model-id-file.ts). */
  readonly modelIdFormat: 'neural-diff-folder' | 'neural-diff-model';
  /** Prepended to the content-addressed shard names an update writes: `''`, or `<stem>.`. */
  readonly shardPrefix: string;
  /** True for a model file that shares its folder with other models. */
  readonly shared: boolean;
}

/** The folder layout's names (a folder of its own, `model.json`). */
export const FOLDER_MODEL_FILES: ModelFiles = {
  model: MODEL_JSON,
  previous: PREVIOUS_MODEL_JSON,
  journal: JOURNAL_FILE,
  digests: DIGESTS_FILE,
  modelId: FOLDER_FILE,
  modelIdFormat: 'neural-diff-folder',
  shardPrefix: '',
  shared: false,
};

/** Suffixes of the applier's files beside a model file that shares its folder. */
const SHARED_SUFFIX = { previous: '.ndiff-prev', journal: '.ndiff-journal.json', digests: '.ndiff-digests.json', modelId: '.ndiff-model.json' } as const;

/**
 * The names for the model JSON file `modelJsonFile` (a name in its folder): {@link FOLDER_MODEL_FILES}
 * for `model.json`, else names after the file. Check the name with `modelFileNameProblem` first.
 */
export function modelFilesOf(modelJsonFile: string = MODEL_JSON): ModelFiles {
  if (modelJsonFile === MODEL_JSON) return FOLDER_MODEL_FILES;
  return {
    model: modelJsonFile,
    previous: modelJsonFile + SHARED_SUFFIX.previous,
    journal: modelJsonFile + SHARED_SUFFIX.journal,
    digests: modelJsonFile + SHARED_SUFFIX.digests,
    modelId: modelJsonFile + SHARED_SUFFIX.modelId,
    modelIdFormat: 'neural-diff-model',
    shardPrefix: `${modelJsonFile.replace(/\.json$/i, '')}.`,
    shared: true,
  };
}

/**
 * Why `name` cannot be a model file the applier updates in a shared folder (a reason), or
 * undefined: it must end in `.json` and must not be a file of the applier's (a name holding
 * `.ndiff-`, a temporary file) or a kept or temporary version of a model file (`*.json.*`).
 */
export function modelFileNameProblem(name: string): string | undefined {
  if (!/\.json$/i.test(name)) return 'not a model JSON file (its name does not end in .json)';
  if (name.includes('.ndiff-')) return 'a file of the applier (its name holds .ndiff-), not a model';
  if (/\.json\./i.test(name) || TEMP_FILE.test(name)) return 'a kept or temporary copy of a model file, not a model';
  return undefined;
}

/**
 * Why the manifest path `p` names a file the applier owns in `dir` (a reason), or undefined.
 * Compared case-insensitively (macOS and Windows folders are), after `./` and `\` are resolved;
 * `extra` adds absolute paths (a state file kept in the folder under another name).
 * Reserved in a folder of its own: `model.json` and `model.json.*`, every `.ndiff-*` name,
 * temporary files (`*.tmp-<pid>-<hex>`), and the `extra` files. In a folder shared by several
 * model files (`shared`), also every `*.json` (each model's file, its records) and every name
 * holding `.ndiff-` (each model's applier files).
 */
export function controlFileProblem(dir: string, p: string, extra: readonly string[] = [], shared = false): string | undefined {
  const resolved = path.resolve(dir, p.replace(/\\/g, '/'));
  const lower = resolved.toLowerCase();
  if (extra.some((f) => path.resolve(f).toLowerCase() === lower)) return 'the state file';
  if (path.dirname(resolved).toLowerCase() !== path.resolve(dir).toLowerCase()) return undefined;
  const name = path.basename(resolved).toLowerCase();
  if (name === MODEL_JSON) return 'the model file itself';
  if (name.startsWith(`${MODEL_JSON}.`)) return 'a previous or temporary model.json of an update';
  if (name.startsWith('.ndiff-')) return 'a file of the applier (lock, journal, state, digests or model id)';
  if (TEMP_FILE.test(name)) return 'a temporary file of a writer';
  if (shared && name.endsWith('.json')) return 'a model file of the folder (this model\'s or another\'s) or a record of the applier';
  if (shared && name.includes('.ndiff-')) return 'a file of the applier beside a model file (kept previous version, journal, digests or model id)';
  return undefined;
}

/** `s` as a regular expression matching exactly it. */
function literal(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The content-addressed shard names the writer makes for this model
 * (`<shardPrefix>group<g>-shard<i>of<n>-<16 hex>.bin`): recovery deletes such a file when nothing
 * names it. In a shared folder only this model's prefix matches, never another model's shards.
 */
export function writerShardPattern(files: ModelFiles): RegExp {
  return new RegExp(`^${literal(files.shardPrefix)}group\\d+-shard\\d+of\\d+-[0-9a-f]{16}\\.bin$`);
}

/**
 * Whether `name` is a temporary file this model's writes leave after a crash: in a folder of its
 * own, every temporary file; in a shared folder, only those of its model file, of its applier
 * files, of its shards, and of the folder's own files (the state file: every apply writes it,
 * under the folder's lock). Another model's are its own recovery's to delete.
 */
export function isOwnTempFile(files: ModelFiles, name: string): boolean {
  if (!TEMP_FILE.test(name)) return false;
  if (!files.shared || name.startsWith('.ndiff-')) return true;
  const id = '\\.tmp-\\d+-[0-9a-f]+$';
  const suffixes = Object.values(SHARED_SUFFIX).map(literal).join('|');
  return new RegExp(`^${literal(files.model)}(${suffixes})?${id}`).test(name)
    || new RegExp(`^${literal(files.shardPrefix)}group\\d+-shard\\d+of\\d+(-[0-9a-f]{16})?\\.bin${id}`).test(name);
}

/** Whether `name` is another model file's kept previous version in a shared folder (`<file>.ndiff-prev`), or a folder's `model.json.prev`. */
export function isKeptModelFile(name: string): boolean {
  return name === PREVIOUS_MODEL_JSON || new RegExp(`\\.json${literal(SHARED_SUFFIX.previous)}$`, 'i').test(name);
}
