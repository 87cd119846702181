/**
 * A TF.js model held in memory as its files (the model JSON, then its shards in manifest order),
 * as a structural payload (format v7, docs/FORMAT.md §17) rebuilds it: a {@link WeightStore} with
 * the same tensors, frame and storage grids as the folder store (src/io/tfjs/dir-store.ts), whose
 * commit writes patched values into the shards' bytes in place (a patch keeps each entry's stored
 * size: a quantized tensor's values must lie on its grid) and hands the files back.
 *
 * Pure code (no node, no tfjs): a device can bundle it with `neural-diff/rebuild`.
 */
import { ModelFormatError, ModelMismatchError } from '../../core/errors.ts';
import type { ModelFile } from '../../core/model-files.ts';
import type { StorageGrid } from '../../core/grid.ts';
import type { TensorEntry, WeightStore } from '../../core/weight-store.ts';
import { computeGroupLayout, dequantizeEntry, encodeFloat32, manifestPaths, parseModelJson, type EntryLayout, type TfjsModelJson } from './manifest.ts';
import { TFJS_FRAME, tfjsFrameValues } from './frame.ts';
import { gridOfEntry, quantizeOnGrid } from './grid.ts';

/** The order a TF.js model's files take in a structural payload: the model JSON, then every shard path of the manifest in order, each once. */
export function tfjsFileOrder(modelJson: Pick<TfjsModelJson, 'weightsManifest'>): string[] {
  return manifestPaths(modelJson);
}

interface Placed {
  layout: EntryLayout;
  values?: Float32Array;
}

/** A TF.js model over its files' bytes (see the module doc). The files are copied: the caller's arrays are never written. */
export class TfjsFilesStore implements WeightStore {
  readonly modelJson: TfjsModelJson;
  private readonly jsonFile: ModelFile;
  /** Each group's shards, one after the other (a copy the commits write into). */
  private readonly groupData: Uint8Array[];
  /** Each group's shard paths and lengths, in order. */
  private readonly groupShards: { path: string; length: number }[][];
  private readonly entries = new Map<string, Placed>();
  private frameValues?: Float32Array;

  /**
   * @param files the model JSON first, then exactly the manifest's shard paths in order, each
   *   once ({@link tfjsFileOrder}).
   * @throws ModelFormatError for files that are not such a model
   */
  constructor(files: readonly ModelFile[]) {
    if (files.length === 0) throw new ModelFormatError('a TF.js model needs its model JSON file: expected at least one file, found none');
    this.jsonFile = { path: files[0].path, bytes: files[0].bytes.slice() };
    this.modelJson = parseModelJson(new TextDecoder('utf-8', { fatal: true }).decode(this.jsonFile.bytes), files[0].path);
    const order = tfjsFileOrder(this.modelJson);
    const given = files.slice(1).map((f) => f.path);
    if (order.length !== given.length || order.some((p, i) => p !== given[i])) {
      throw new ModelFormatError(`${files[0].path} names the shards ${JSON.stringify(order).slice(0, 200)}, the files given are ${JSON.stringify(given).slice(0, 200)}: expected the same paths in the same order`, { expected: order, found: given });
    }
    const byPath = new Map(files.slice(1).map((f) => [f.path, f.bytes]));
    const seen = new Set<string>();
    this.groupShards = this.modelJson.weightsManifest.map((g) =>
      g.paths.map((p) => {
        if (seen.has(p)) throw new ModelFormatError(`${files[0].path} names the shard ${JSON.stringify(p)} twice: expected every shard once`, { path: p });
        seen.add(p);
        return { path: p, length: (byPath.get(p) as Uint8Array).length };
      }),
    );
    this.groupData = this.modelJson.weightsManifest.map((g) => {
      const parts = g.paths.map((p) => byPath.get(p) as Uint8Array);
      const data = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
      let at = 0;
      for (const b of parts) {
        data.set(b, at);
        at += b.length;
      }
      return data;
    });
    this.modelJson.weightsManifest.forEach((g, i) => {
      const layout = computeGroupLayout(g.weights, this.groupData[i], i);
      if (layout.totalBytes !== this.groupData[i].length) {
        throw new ModelFormatError(`weights of group ${i + 1}: expected ${layout.totalBytes} bytes, the shards hold ${this.groupData[i].length}: the files are not this manifest's`, { group: i, expected: layout.totalBytes, found: this.groupData[i].length });
      }
      for (const l of layout.entries) {
        if (l.entry.name === TFJS_FRAME) throw new ModelFormatError(`${files[0].path} names a weight ${JSON.stringify(TFJS_FRAME)}, the name the fingerprint gives the model's frame`, { name: TFJS_FRAME });
        if (this.entries.has(l.entry.name)) throw new ModelFormatError(`${files[0].path} names the weight ${JSON.stringify(l.entry.name)} twice: expected unique names`, { name: l.entry.name });
        this.entries.set(l.entry.name, { layout: l });
      }
    });
  }

  private stored(l: EntryLayout): Uint8Array {
    return this.groupData[l.group].subarray(l.offset, l.offset + l.byteLength);
  }

  private float(name: string): Placed {
    const e = this.entries.get(name);
    if (!e || !e.layout.isFloat) throw new ModelMismatchError(`the model has no float tensor named ${JSON.stringify(name)}: expected one of its float32 manifest entries`, { name });
    return e;
  }

  list(): TensorEntry[] {
    const out: TensorEntry[] = [];
    for (const [name, e] of this.entries) if (e.layout.isFloat) out.push({ name, shape: e.layout.entry.shape });
    out.push({ name: TFJS_FRAME, shape: [8], patchable: false });
    return out;
  }

  values(name: string): Float32Array {
    if (name === TFJS_FRAME) throw new ModelMismatchError(`${TFJS_FRAME} is read-only: no payload patches the model's frame`, { name });
    const e = this.float(name);
    e.values ??= dequantizeEntry(e.layout.entry, this.stored(e.layout));
    return e.values;
  }

  read(name: string): Float32Array {
    if (name === TFJS_FRAME) {
      this.frameValues ??= tfjsFrameValues(this.modelJson, (entry) => this.stored((this.entries.get(entry.name) as Placed).layout));
      return this.frameValues;
    }
    const e = this.float(name);
    return e.values ?? dequantizeEntry(e.layout.entry, this.stored(e.layout));
  }

  grid(name: string): StorageGrid {
    if (name === TFJS_FRAME) return { dtype: 'float32' };
    return gridOfEntry(this.float(name).layout.entry);
  }

  /**
   * Store the changed tensors' values in their shards' bytes, in place.
   * @throws ModelFormatError for a quantized tensor whose values are off its grid (its stored
   *   size would change; nothing of it is written)
   */
  commit(changed: readonly string[]): void {
    const encoded = changed.map((name) => {
      const e = this.float(name);
      const values = this.values(name);
      const entry = e.layout.entry;
      const bytes = entry.quantization ? quantizeOnGrid(entry, values) : encodeFloat32(values);
      if (!bytes || bytes.length !== e.layout.byteLength) {
        throw new ModelFormatError(`tensor ${JSON.stringify(name)} is stored as ${entry.quantization?.dtype ?? 'float32'} and its new values are not all on that grid: a rebuilt model keeps every entry's stored size; expected a payload that rounds onto the grid (an exact payload does)`, { name });
      }
      return { e, bytes };
    });
    for (const { e, bytes } of encoded) this.groupData[e.layout.group].set(bytes, e.layout.offset);
  }

  /** The model's files: the model JSON, then the shards in manifest order (copies). */
  modelFiles(): ModelFile[] {
    const out: ModelFile[] = [{ path: this.jsonFile.path, bytes: this.jsonFile.bytes.slice() }];
    this.groupShards.forEach((shards, g) => {
      let at = 0;
      for (const s of shards) {
        out.push({ path: s.path, bytes: this.groupData[g].slice(at, at + s.length) });
        at += s.length;
      }
    });
    return out;
  }
}
