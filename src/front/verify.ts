/**
 * `verify`: what `ndiff verify` does, as a library call: a payload's signature, document and
 * patches checked as a device checks them, and with `model` a dry run of the apply (or, for a
 * structural payload, of the rebuild) in memory: nothing is written.
 */
import { applyVerifiedPayload, verifyPayload } from '../apply/index.ts';
import { isSignedEnvelope, parseEnvelope } from '../apply/envelope.ts';
import type { TrustedKey } from '../apply/ed25519.ts';
import { decodeStructuralPayload, isStructuralPayload } from '../apply/rebuild.ts';
import { applyToGgufFile } from '../io/gguf/in-place.ts';
import { decodeGgufPayload, isGgufPayloadDocument } from '../io/gguf/payload.ts';
import { openSignedPayload, type SignatureCheck, type SignaturePolicy } from '../apply/signature.ts';
import { ModelMismatchError } from '../core/errors.ts';
import { MemoryWeightStore, type WeightStore } from '../core/weight-store.ts';
import { readModelIdRecord } from '../io/durable/model-id-file.ts';
import { FileSequenceStore } from '../io/durable/sequence-file.ts';
import { rebuildOnnxFile } from '../io/onnx/files.ts';
import { rebuildTfliteFile } from '../io/tflite/files.ts';
import { rebuildModelDir } from '../io/tfjs/folder-rebuild.ts';
import { readFolderModelId } from '../io/tfjs/folder-update.ts';
import { openTfjsModel } from '../io/tfjs/index.ts';
import { hasUnfinishedUpdate } from '../io/updater/node-updater.ts';
import { readPublicKeyFile } from '../sign/node-keys.ts';
import { rebuildLengths } from './inspect.ts';
import { isGgufPath, isModelFilePath, isSafetensorsPath, isTflitePath, openModel, payloadArgument } from './models.ts';

/** What {@link verify} takes. */
export interface VerifyOptions {
  /** The payload: a file's path, or its bytes (bare or a signed envelope). */
  payload: string | Uint8Array;
  /** Also check that it applies cleanly to this model (a TF.js folder or model JSON file, an .onnx, .tflite or .safetensors file), in memory. */
  model?: string;
  /** With `model`: the sequence state file a device keeps, to refuse a payload at or below its sequence. */
  state?: string;
  /** Trusted Ed25519 public keys: key files' paths, or keys. With any, unsigned payloads are refused. */
  publicKeys?: (string | TrustedKey)[];
  /** Refuse payloads without a valid signature by a trusted key (default: on when publicKeys are given). */
  requireSignature?: boolean;
}

/** What {@link verify} returns: the fields `ndiff verify --json` prints. */
export interface VerifyReport {
  /** A GGUF block payload (format v8): the model it patches in place, by its stored bytes' digests. */
  gguf?: true;
  /** GGUF: the part files' count and the chunks the payload holds. */
  parts?: number;
  chunks?: number;
  /** The file read, when a path was given. */
  payload?: string;
  bytes: number;
  signature: SignatureCheck;
  version: number;
  /** A structural payload (format v7). */
  structural?: true;
  fileKind?: string;
  modelId: string;
  sequence: number;
  patches: number;
  /** Structural: the value payload's format version. */
  valueVersion?: number;
  baseFingerprint: string;
  intermediateFingerprint?: string;
  targetFingerprint: string;
  /** Structural: the byte delta's size and lengths, the value payload's size, the target's files. */
  rebuildBytes?: number;
  rebuildBaseLength?: number;
  rebuildOutputLength?: number;
  valueBytes?: number;
  files?: { path: string; length: number }[];
  /**
   * With `model`: whether it applies (or is already at the target), and whether an earlier apply
   * or update left an update unfinished beside it (`unfinishedUpdate`: the model checked is the
   * one switched in, not yet confirmed; the next apply or update finishes or rolls it back first).
   */
  model?: { path: string; status: 'applies' | 'already-applied'; unfinishedUpdate?: true };
}

/**
 * Check a payload as a device would, writing nothing. Throws the applier's typed errors
 * (PayloadFormatError, SignatureError, FreshnessError, BaseMismatchError, ModelMismatchError, ...).
 */
export async function verify(o: VerifyOptions): Promise<VerifyReport> {
  const bytes = await payloadArgument(o.payload, "verify({ payload: 'v1-v2.ndiff' })");
  const trustedKeys = await Promise.all((o.publicKeys ?? []).map((k) => (typeof k === 'string' ? readPublicKeyFile(k) : k)));
  const policy: SignaturePolicy = { trustedKeys, ...(o.requireSignature !== undefined ? { requireSignature: o.requireSignature } : {}) };
  const where = typeof o.payload === 'string' ? { payload: o.payload } : {};
  if (isGgufPayloadDocument(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes)) return verifyGguf(o, bytes, policy, where);
  // A structural payload (format v7) is checked as neural-diff/rebuild checks it.
  if (isStructuralPayload(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes)) {
    const opened = await openSignedPayload(bytes, policy);
    const p = await decodeStructuralPayload(opened.payload);
    const h = p.header;
    const lengths = rebuildLengths(p);
    const values = p.verifiedValues.payload;
    const doc: VerifyReport = {
      ...where, bytes: bytes.length, signature: opened.signature, version: h.version, structural: true, fileKind: h.fileKind, modelId: h.modelId,
      sequence: h.sequence, patches: values.patches.length, valueVersion: values.header.version, baseFingerprint: h.baseFingerprint,
      intermediateFingerprint: h.intermediateFingerprint, targetFingerprint: h.targetFingerprint, rebuildBytes: p.rebuild.length, rebuildBaseLength: lengths.baseLength, rebuildOutputLength: lengths.outputLength, valueBytes: p.values.length,
      ...(h.files ? { files: h.files } : {}),
    };
    if (o.model && isSafetensorsPath(o.model)) {
      throw new ModelMismatchError(`${where.payload ?? 'the payload'} is a structural payload (format v7) for ${h.fileKind === 'tfjs' ? 'a TF.js model' : `an .${h.fileKind} file`}, and model (--model) ${o.model} is a .safetensors file, for which no structural payload is made: check it against the model the payload was made for`, { fileKind: h.fileKind, model: o.model });
    }
    if (o.model) {
      // The rebuild's dry run: nothing written, nothing recovered, no lock taken.
      const options = { ...policy, dryRun: true, state: o.state ?? null };
      const r = isModelFilePath(o.model)
        ? await (isTflitePath(o.model) ? rebuildTfliteFile : rebuildOnnxFile)(o.model, bytes, options)
        : await rebuildModelDir(o.model, bytes, options);
      doc.model = { path: o.model, status: r.status === 'already-applied' ? 'already-applied' : 'applies', ...((await hasUnfinishedUpdate(o.model)) ? { unfinishedUpdate: true as const } : {}) };
    }
    return doc;
  }
  const verified = await verifyPayload(bytes, policy);
  const { payload } = verified;
  const doc: VerifyReport = {
    ...where, bytes: bytes.length, signature: verified.signature, version: payload.header.version, modelId: payload.header.modelId,
    sequence: payload.header.sequence, patches: payload.patches.length, baseFingerprint: payload.header.baseFingerprint, targetFingerprint: payload.header.targetFingerprint,
  };
  if (o.model) {
    // An ONNX store holds the file's bytes in memory: patching it writes nothing to disk.
    let copy: WeightStore;
    let close = async () => {};
    const file = isModelFilePath(o.model);
    if (file) {
      const opened = await openModel(o.model);
      copy = opened.store;
      close = opened.close;
    } else {
      const disk = await openTfjsModel(o.model);
      // The copy keeps the folder's storage grids, so a grid mismatch is refused here too.
      copy = Object.assign(MemoryWeightStore.copyOf(disk), { grid: (name: string) => disk.grid(name) });
    }
    const state = o.state ? new FileSequenceStore(o.state) : undefined;
    // The model id the folder (or model file) recorded at its first update, as apply checks it.
    const modelId = file ? await readModelIdRecord(o.model) : await readFolderModelId(o.model);
    const res = await applyVerifiedPayload(copy, verified, { ...policy, ...(modelId !== undefined ? { expectedModelId: modelId } : {}), ...(state ? { sequenceStore: { get: (id: string) => state.get(id), set: () => {} } } : {}) })
      .finally(close);
    doc.model = { path: o.model, status: res.status === 'already-applied' ? 'already-applied' : 'applies', ...((await hasUnfinishedUpdate(o.model)) ? { unfinishedUpdate: true as const } : {}) };
  }
  return doc;
}

/**
 * {@link verify} of a GGUF block payload (format v8): the signature and every field checked as the
 * device's decoder checks them; with `model` (a `.gguf` file, a split model by any part), the
 * apply's dry run, which checks the base's digests and decodes every chunk against the file's
 * bytes, writing nothing.
 */
async function verifyGguf(o: VerifyOptions, bytes: Uint8Array, policy: SignaturePolicy, where: { payload?: string }): Promise<VerifyReport> {
  const opened = await openSignedPayload(bytes, policy);
  const p = decodeGgufPayload(opened.payload);
  const h = p.header;
  const doc: VerifyReport = {
    ...where, bytes: bytes.length, signature: opened.signature, version: h.version, gguf: true, modelId: h.modelId, sequence: h.sequence,
    patches: p.chunks.length, parts: p.parts.length, chunks: p.chunks.length, baseFingerprint: h.baseFingerprint, targetFingerprint: h.targetFingerprint,
  };
  if (o.model) {
    if (!isGgufPath(o.model)) throw new ModelMismatchError(`${where.payload ?? 'the payload'} is a GGUF payload (format v8), which patches a .gguf model, and model (--model) ${o.model} is not a .gguf file: check it against the .gguf model it was made for`, { model: o.model });
    const r = await applyToGgufFile(o.model, bytes, { ...policy, dryRun: true, state: o.state ?? null });
    doc.model = { path: o.model, status: r.status === 'already-applied' ? 'already-applied' : 'applies' };
  }
  return doc;
}
