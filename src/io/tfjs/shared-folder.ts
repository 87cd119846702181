/**
 * A folder several TF.js model files share (`models/movenet-lightning.json` beside
 * `models/blazeface.json`, as `@vladmandic/human` ships them): which files the other models name,
 * so that updating one of them never deletes a shard another one uses. Node only.
 */
import { readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { readRegularFile } from '../durable/durable.ts';
import { MODEL_JSON, isKeptModelFile, modelFileNameProblem, type ModelFiles } from '../durable/control-files.ts';
import { manifestPaths, parseModelJson } from './manifest.ts';

/** Largest model file of another model read to learn which shards it names. */
const MAX_OTHER_MODEL_BYTES = 64 * 1024 * 1024;

/**
 * In a folder shared by several model files: every file the other models (and their kept
 * previous versions) name, as resolved paths, so this model's update never deletes a shard another
 * model uses (a shard two model files share, or one a copy of this model file names). Empty for a
 * folder of its own. A file that cannot be read or parsed as a model (package.json, a config)
 * names nothing.
 */
export async function namedByOtherModels(dir: string, files: ModelFiles): Promise<Set<string>> {
  const out = new Set<string>();
  if (!files.shared) return out;
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
    try {
      const bytes = await readRegularFile(path.join(dir, name), { maxBytes: MAX_OTHER_MODEL_BYTES });
      if (bytes === null) continue;
      for (const p of manifestPaths(parseModelJson(new TextDecoder().decode(bytes), path.join(dir, name)))) out.add(path.resolve(dir, p));
    } catch {
      /* not a model, or unreadable: it names nothing we know of */
    }
  }
  return out;
}
