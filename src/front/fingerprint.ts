/**
 * `fingerprint`: what `ndiff fingerprint` does, as a library call. The fingerprint a payload names
 * a model by (its base or target), read in full from a TF.js folder (or model JSON file), an
 * `.onnx`, `.tflite` or `.safetensors` file; optionally every tensor's digest, and for a TF.js folder the
 * digests recorded beside it so later applies read only the tensors they patch. A `.gguf` model
 * (one file or a split model) is fingerprinted as docs/format/gguf.md defines it.
 */
import { join } from 'node:path';
import { UsageError } from '../core/errors.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import { getHasher } from '../core/hasher.ts';
import { locateModelFiles, openTfjsModel } from '../io/tfjs/index.ts';
import { writeRecordedDigests } from '../io/tfjs/recorded-digests.ts';
import { hasUnfinishedUpdate } from '../io/updater/node-updater.ts';
import { dtypeOf, isGgufPath, isModelFilePath, openModel } from './models.ts';
import { fingerprintGgufFile } from './gguf.ts';
import { NO_PROGRESS, type Progress } from './progress.ts';

/** What {@link fingerprint} takes (`ndiff fingerprint`). */
export interface FingerprintOptions {
  /** A TF.js folder or model JSON file, an `.onnx`, `.tflite`, `.safetensors` or `.gguf` file. */
  model: string;
  /** Also list every tensor's digest (`--tensors`). */
  tensors?: boolean;
  /** TF.js folders only: record the digests beside the model so applies read less (`--record`). */
  record?: boolean;
  /** Progress lines, as `ndiff fingerprint` prints them on stderr. */
  onProgress?: Progress;
}

/** One tensor's digest, as `ndiff fingerprint --tensors` lists it. */
export interface TensorDigest {
  name: string;
  /** Model files only (`.onnx`, `.tflite`, `.safetensors`, `.gguf`): the tensor's stored type (a GGUF tensor's ggml type). */
  dtype?: string;
  shape: number[];
  digest: string;
}

/** What {@link fingerprint} returns: the fields `ndiff fingerprint --json` prints. */
export interface FingerprintResult {
  model: string;
  fingerprint: string;
  tensorCount: number;
  /** The digests were written beside the model (`record`). */
  recorded: boolean;
  /** With `tensors`: every tensor, in the model's order. */
  tensors?: TensorDigest[];
  /**
   * An earlier apply or update left an update unfinished beside the model (killed, or its health
   * check never finished): the fingerprint is of the version it switched in, not yet confirmed.
   */
  unfinishedUpdate?: true;
}

/**
 * The fingerprint of a model, always from a full read (this call is how a model is checked, so
 * it never trusts a record). Throws UsageError for `record` on a model file (the option named
 * with its flag, nothing written), ModelFormatError for a model that cannot be read.
 */
export async function fingerprint(o: FingerprintOptions): Promise<FingerprintResult> {
  const r = await fingerprintOf(o);
  return (await hasUnfinishedUpdate(o.model)) ? { ...r, unfinishedUpdate: true } : r;
}

async function fingerprintOf(o: FingerprintOptions): Promise<FingerprintResult> {
  const progress = o.onProgress ?? NO_PROGRESS;
  if (typeof o.model !== 'string' || o.model === '') throw new UsageError(`model (--model) expects the path of a TF.js folder, an .onnx, .tflite, .safetensors or .gguf file, found ${JSON.stringify(o.model)}`, { expected: 'a model path', found: o.model });
  if (isGgufPath(o.model)) {
    if (o.record) throw new UsageError('record (--record) is for TF.js model folders: a .gguf model is read and hashed whole, so there is nothing to record; leave record (--record) out', { expected: 'a TF.js folder', found: o.model });
    const r = await fingerprintGgufFile(o.model, o.tensors === true);
    return { model: o.model, fingerprint: r.fingerprint, tensorCount: r.tensorCount, recorded: false, ...(r.tensors ? { tensors: r.tensors } : {}) };
  }
  if (isModelFilePath(o.model)) {
    if (o.record) throw new UsageError('record (--record) is for TF.js model folders: an .onnx, .tflite or .safetensors file is read and hashed whole, so there is nothing to record; leave record (--record) out', { expected: 'a TF.js folder', found: o.model });
    const opened = await openModel(o.model);
    try {
      const { store } = opened;
      const { fingerprint: fp, digests } = fingerprintStore(await getHasher(), store);
      return {
        model: o.model, fingerprint: fp, tensorCount: digests.size, recorded: false,
        ...(o.tensors ? { tensors: store.list().map((t) => ({ name: t.name, dtype: dtypeOf(t), shape: [...t.shape], digest: digests.get(t.name) as string })) } : {}),
      };
    } finally {
      await opened.close();
    }
  }
  const place = await locateModelFiles(o.model);
  const store = await openTfjsModel(o.model, { lazy: true });
  const { fingerprint: fp, digests } = fingerprintStore(await getHasher(), store);
  if (o.record) {
    await writeRecordedDigests(place.dir, store.digestRecords(digests), { files: place.files });
    progress(`recorded ${digests.size} tensor digests in ${join(place.dir, place.files.digests)}`);
  }
  return {
    model: o.model, fingerprint: fp, tensorCount: digests.size, recorded: o.record === true,
    ...(o.tensors ? { tensors: store.list().map((t) => ({ name: t.name, shape: [...t.shape], digest: digests.get(t.name) as string })) } : {}),
  };
}
