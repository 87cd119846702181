/**
 * An ONNX model with external data files held in memory as its files, as a structural payload
 * (format v7, docs/FORMAT.md §17, `fk` = `onnx` with a file list `fl`) rebuilds it: the `.onnx`
 * file first, then its external data files in the order the model first references them
 * ({@link onnxFileOrder}). The store is {@link OnnxWeightStore} over those bytes; commits patch
 * them in place (external files included) and {@link OnnxFilesStore.modelFiles} hands them back.
 *
 * Pure code (no node, no tfjs): a device can bundle it with `neural-diff/rebuild`.
 */
import { ModelFormatError } from '../../core/errors.ts';
import type { ModelFile } from '../../core/model-files.ts';
import { OnnxWeightStore, onnxExternalLocations } from './store.ts';

/** The external data files of an ONNX model, in the order its tensors first reference them (each once). */
export function onnxFileOrder(modelBytes: Uint8Array, source = 'ONNX model'): string[] {
  return onnxExternalLocations(modelBytes, source);
}

/** An ONNX model over its `.onnx` file and external data files (module doc). The files' bytes are patched in place: pass copies to keep the originals. */
export class OnnxFilesStore extends OnnxWeightStore {
  private readonly files: readonly ModelFile[];
  /**
   * @param files the `.onnx` file first, then exactly its external data files in
   *   {@link onnxFileOrder} order.
   * @throws ModelFormatError for files that are not such a model
   */
  constructor(files: readonly ModelFile[]) {
    if (files.length === 0) throw new ModelFormatError('an ONNX model needs its .onnx file: expected at least one file, found none');
    const order = onnxFileOrder(files[0].bytes, files[0].path);
    const given = files.slice(1).map((f) => f.path);
    if (order.length !== given.length || order.some((p, i) => p !== given[i])) {
      throw new ModelFormatError(`${files[0].path} references the external data files ${JSON.stringify(order).slice(0, 200)}, the files given are ${JSON.stringify(given).slice(0, 200)}: expected the same paths in the same order`, { expected: order, found: given });
    }
    super(files[0].bytes, { source: files[0].path, external: new Map(files.slice(1).map((f) => [f.path, f.bytes])) });
    this.files = files;
  }

  /** The `.onnx` file, then the external data files, with the committed patches. */
  modelFiles(): ModelFile[] {
    const ext = this.externalBytes();
    return [{ path: this.files[0].path, bytes: this.modelBytes() }, ...this.files.slice(1).map((f) => ({ path: f.path, bytes: ext.get(f.path) as Uint8Array }))];
  }
}

/** How `neural-diff/rebuild` reads an ONNX model with external data files (`fk` = `onnx` with `fl`). */
export const ONNX_FILES_REBUILD = { kind: 'onnx' as const, open: (files: readonly ModelFile[]) => new OnnxFilesStore(files) };
