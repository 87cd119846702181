/**
 * Plain named arrays to and from a TF.js model folder, and the files a folder uses or left over.
 */
import { type PlannedGroup, writeModelAtomically } from './write.ts';
import type { WriteOptions } from './options.ts';
import { readModelJsonFile } from './read.ts';
import { readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { asFloat32Entry, concatBytes, encodeFloat32, manifestPaths, parseModelJson, shapeSize, validateModelJson, type TfjsModelJson, type TfjsWeightEntry, type TfjsWeightGroup } from './manifest.ts';
import { MODEL_JSON } from '../durable/control-files.ts';

/** A tensor for {@link writeModelDir}: Float32Array for float32, Int32Array for int32, Uint8Array for bool. */
export interface TensorInput {
  shape: readonly number[];
  data: Float32Array | Int32Array | Uint8Array;
}

/** A model.json to write: like {@link TfjsModelJson}, with an optional manifest. */
export type ModelJsonTemplate = Omit<TfjsModelJson, 'weightsManifest'> & { weightsManifest?: TfjsWeightGroup[] };

/**
 * Write a model folder from a model.json and named tensors, with the atomic protocol of the
 * module doc (replacing any model already in `dir`; its shards are deleted after the switch).
 *
 * If `modelJson.weightsManifest` lists entries, it fixes the groups, order and names: every
 * entry needs a tensor of the same shape (float32 entries a Float32Array, and they are written
 * as plain float32 even if the template was quantized; int32 an Int32Array; bool a
 * Uint8Array; string/complex64 entries are refused). Without a manifest, one group is made
 * from `tensors` in iteration order, dtype taken from the array type. Every other key of
 * `modelJson` is written as given, in its order. Returns the model.json written.
 *
 * @throws UsageError a tensor missing, extra, of the wrong shape or array type.
 */
export async function writeModelDir(
  dir: string,
  modelJson: ModelJsonTemplate,
  tensors: ReadonlyMap<string, TensorInput> | Readonly<Record<string, TensorInput>>,
  options: WriteOptions = {},
): Promise<TfjsModelJson> {
  const map = new Map<string, TensorInput>(tensors instanceof Map ? tensors : Object.entries(tensors as Record<string, TensorInput>));
  const templateGroups = modelJson.weightsManifest ?? [];
  const hasEntries = templateGroups.some((g) => g.weights.length > 0);
  const used = new Set<string>();
  const dtypeOf = (data: TensorInput['data']): TfjsWeightEntry['dtype'] =>
    data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'bool';

  const take = (name: string, shape: readonly number[], dtype: TfjsWeightEntry['dtype']): Uint8Array => {
    const t = map.get(name);
    if (!t) throw new UsageError(`writeModelDir: model.json lists ${name} but no tensor of that name was given: pass every weight the manifest lists`, { name });
    used.add(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new UsageError(`writeModelDir: tensor ${name} has shape [${t.shape.join(', ')}] but model.json says [${shape.join(', ')}]`, { name, expected: shape, found: t.shape });
    }
    if (t.data.length !== shapeSize(shape)) {
      throw new UsageError(`writeModelDir: tensor ${name}: shape [${shape.join(', ')}] holds ${shapeSize(shape)} values, the array has ${t.data.length}`, { name });
    }
    const got = dtypeOf(t.data);
    if (dtype === 'string' || dtype === 'complex64') {
      throw new UsageError(`writeModelDir: ${name} is a ${dtype} entry, which this writer cannot encode; patch such models with openTfjsModelDir(...).commit, which passes them through`, { name, dtype });
    }
    if (got !== dtype) {
      throw new UsageError(`writeModelDir: ${name} is ${dtype} in model.json but was given as ${t.data.constructor.name}; expected ${dtype === 'float32' ? 'Float32Array' : dtype === 'int32' ? 'Int32Array' : 'Uint8Array'}`, { name, expected: dtype, found: got });
    }
    if (t.data instanceof Float32Array) return encodeFloat32(t.data);
    if (t.data instanceof Int32Array) return encodeFloat32(new Float32Array(t.data.buffer, t.data.byteOffset, t.data.length));
    return t.data.slice();
  };

  let groups: PlannedGroup[];
  if (hasEntries) {
    groups = templateGroups.map((group) => {
      const weights: TfjsWeightEntry[] = [];
      const parts: Uint8Array[] = [];
      for (const e of group.weights) {
        parts.push(take(e.name, e.shape, e.dtype));
        weights.push(e.dtype === 'float32' ? asFloat32Entry(e) : withoutQuantization(e));
      }
      return { base: group as Record<string, unknown>, weights, data: concatBytes(parts) };
    });
    const extra = [...map.keys()].filter((n) => !used.has(n));
    if (extra.length > 0) {
      throw new UsageError(`writeModelDir: tensors ${extra.slice(0, 5).join(', ')} are not in model.json's weightsManifest: remove them or add them to the manifest`, { extra });
    }
  } else {
    const weights: TfjsWeightEntry[] = [];
    const parts: Uint8Array[] = [];
    for (const [name, t] of map) {
      const dtype = dtypeOf(t.data);
      parts.push(take(name, t.shape, dtype));
      weights.push({ name, shape: [...t.shape], dtype });
    }
    groups = [{ base: {}, weights, data: concatBytes(parts) }];
  }
  // Validate the result the same way a reader will.
  validateModelJson({ ...modelJson, weightsManifest: groups.map((g) => ({ paths: [], weights: g.weights })) }, 'writeModelDir');
  const result = await writeModelAtomically({
    ...options,
    dir,
    groups,
    render: (manifest) => JSON.stringify(withManifest(modelJson, manifest)),
  });
  return parseModelJson(result.text);
}

function withoutQuantization(e: TfjsWeightEntry): TfjsWeightEntry {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== 'quantization') out[k] = v;
  return out as TfjsWeightEntry;
}

/** `modelJson` with `weightsManifest` replaced in place (or appended), key order kept. */
export function withManifest(modelJson: Record<string, unknown>, manifest: TfjsWeightGroup[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(modelJson)) out[k] = k === 'weightsManifest' ? manifest : v;
  if (!('weightsManifest' in out)) out.weightsManifest = manifest;
  return out;
}

// ---------------------------------------------------------------------------------------
// files

/**
 * The files a model folder uses, relative to it: `model.json` (or the model file
 * `modelJsonFile`, for a folder several model files share) first, then every shard path its
 * manifest lists (in order, without duplicates). Reads and validates that file only.
 */
export async function referencedFiles(dir: string, modelJsonFile: string = MODEL_JSON): Promise<string[]> {
  const { modelJson } = await readModelJsonFile(dir, modelJsonFile);
  return [modelJsonFile, ...manifestPaths(modelJson)];
}

/**
 * Files in the top level of a model folder that look like leftovers of this module or of an
 * older model: temporary files (`*.tmp-<id>`) and `.bin` files model.json does not reference.
 * Lists, never deletes: the caller decides (another model may share the folder).
 */
export async function listStaleFiles(dir: string): Promise<string[]> {
  const referenced = new Set((await referencedFiles(dir)).map((p) => path.resolve(dir, p)));
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (referenced.has(path.resolve(dir, name))) continue;
    if (/\.tmp-[0-9]+-[0-9a-f]+$/.test(name) || name.endsWith('.bin')) out.push(name);
  }
  return out;
}
