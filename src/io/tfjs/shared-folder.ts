/**
 * A folder several TF.js model files share (`models/movenet-lightning.json` beside
 * `models/blazeface.json`, as `@vladmandic/human` ships them): which files the other models name,
 * so that updating one of them never deletes a shard another one uses. Node only.
 */
import { readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelFormatError } from '../../core/errors.ts';
import { errCode, readRegularFile } from '../durable/durable.ts';
import { MODEL_JSON, isKeptModelFile, modelFileNameProblem, type ModelFiles } from '../durable/control-files.ts';
import { manifestPaths, parseModelJson } from './manifest.ts';

/** Largest model file of another model read to learn which shards it names. */
const MAX_OTHER_MODEL_BYTES = 64 * 1024 * 1024;

/**
 * Every file the other model files of the folder (and their kept previous versions) name, as
 * resolved paths, so this model's update never deletes a shard another model uses (a shard two
 * model files share, or one a copy of this model file names). A folder with `model.json` gets the
 * same rule when other model files sit beside it (`face.json` naming the same shard). A file that
 * parses as no model (package.json, a config) names nothing; one that cannot be read (too big, not
 * a regular file, no permission) fails closed: which shards it names is unknown, so nothing may be
 * deleted.
 * @throws ModelFormatError naming the file that cannot be read
 */
export async function namedByOtherModels(dir: string, files: ModelFiles): Promise<Set<string>> {
  const out = new Set<string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    if (name === files.model || name === files.previous) continue;
    const isModel = name === MODEL_JSON || modelFileNameProblem(name) === undefined;
    if (!isModel && !isKeptModelFile(name)) continue;
    let bytes: Uint8Array | null;
    try {
      bytes = await readRegularFile(path.join(dir, name), { maxBytes: MAX_OTHER_MODEL_BYTES });
    } catch (e) {
      const why = errCode(e) === 'EFBIG' ? `over ${MAX_OTHER_MODEL_BYTES / 1024 / 1024} MiB` : (e as Error).message;
      throw new ModelFormatError(`${path.join(dir, name)} sits beside ${files.model} and cannot be read (${why}), so which shards it names is unknown: an update of ${files.model} would delete shards it may use, so nothing was changed. Move that file out of the folder (or make it readable), then retry`, { file: name });
    }
    if (bytes === null) continue;
    try {
      for (const p of manifestPaths(parseModelJson(new TextDecoder().decode(bytes), path.join(dir, name)))) out.add(path.resolve(dir, p));
    } catch {
      /* not a model: it names nothing */
    }
  }
  return out;
}
