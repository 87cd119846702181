/**
 * `apply`: what `ndiff apply` does, as a library call. A payload (a path or its bytes, bare or
 * signed) is verified and applied in place to a TF.js folder or model JSON file, an `.onnx`,
 * `.tflite` or `.safetensors` file, or, for a structural payload (format v7), the model is rebuilt
 * (not a `.safetensors` file: no structural payload is made for one); the switch is
 * atomic and a failed health check rolls it back. The result holds the fields
 * `ndiff apply --json` prints; the errors are the applier's typed errors (src/core/errors.ts),
 * the model untouched (or restored) when one is thrown.
 */
import { stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ModelMismatchError, NeuralDiffError, PayloadTooLargeError, UsageError } from '../core/errors.ts';
import { errCode } from '../io/durable/durable.ts';
import { ENVELOPE_OVERHEAD, isSignedEnvelope, parseEnvelope } from '../apply/envelope.ts';
import { isStructuralPayload } from '../apply/rebuild.ts';
import type { SignatureCheck } from '../apply/signature.ts';
import type { TrustedKey } from '../apply/ed25519.ts';
import { DEFAULT_STATE_FILE } from '../io/durable/sequence-file.ts';
import { applyToModelDir } from '../io/tfjs/folder-update.ts';
import { rebuildModelDir } from '../io/tfjs/folder-rebuild.ts';
import { locateModelFiles } from '../io/tfjs/model-file.ts';
import { ONNX_STATE_SUFFIX, rebuildOnnxFile } from '../io/onnx/files.ts';
import { rebuildTfliteFile } from '../io/tflite/files.ts';
import { applyToWeightsFile } from '../io/durable/weights-file-update.ts';
import { weightsFileFormatOf } from '../io/model-paths.ts';
import { readPublicKeyFile } from '../sign/node-keys.ts';
import { fullInstallPending, recoverFullInstall } from '../io/updater/targets.ts';
import { lockModelDir } from '../io/durable/lock.ts';
import type { RecoveryReport } from '../io/durable/lock.ts';
import { runHealthCheck } from './health-check.ts';
import { isGgufPath, isModelFilePath, isSafetensorsPath, isTflitePath, payloadArgument } from './models.ts';
import { applyToGgufFile } from '../io/gguf/in-place.ts';
import { isGgufPayloadDocument } from '../io/gguf/payload.ts';
import { isGgufPayloadFile } from '../io/gguf/payload-file.ts';
import type { Progress } from './progress.ts';

/** The default of {@link ApplyOptions.maxPayloadBytes}: 256 MiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024;

/** What {@link apply} takes. */
export interface ApplyOptions {
  /** The model patched in place: a TF.js folder or model JSON file, an `.onnx`, `.tflite`, `.safetensors` or `.gguf` file (a split GGUF model by any part). */
  model: string;
  /** The payload: a file's path, or its bytes (bare or a signed envelope). */
  payload: string | Uint8Array;
  /** Check everything and patch a copy in memory; write nothing. */
  dryRun?: boolean;
  /** Refuse larger payloads before parsing (default {@link DEFAULT_MAX_PAYLOAD_BYTES}). */
  maxPayloadBytes?: number;
  /**
   * The file keeping the highest applied sequence per model id: a path, or null for none.
   * Default: `<folder>/.ndiff-state.json`, or `<file>.ndiff-state.json` beside an .onnx, .tflite or .safetensors file.
   */
  state?: string | null;
  /**
   * Run after the switch: a shell command (with NDIFF_MODEL_DIR and NDIFF_MODEL_FILE set; a
   * non-zero exit fails it) or a function (a throw or `false` fails it); a failure rolls back.
   */
  healthCheck?: string | ((where: { dir: string; file?: string }) => boolean | void | Promise<boolean | void>);
  /** Seconds a health check command may take (default 300). */
  healthCheckTimeout?: number;
  /** Hash every tensor of the base, not only the patched ones (TF.js models). */
  fullCheck?: boolean;
  /** The model id the model holds: payloads for another id are refused (default: the id its first apply recorded). */
  modelId?: string;
  /** Trusted Ed25519 public keys: key files' paths, or keys. With any, unsigned payloads are refused. */
  publicKeys?: (string | TrustedKey)[];
  /** Refuse payloads without a valid signature by a trusted key (default: on when publicKeys are given). */
  requireSignature?: boolean;
  /** Progress lines (a health check's output), as `ndiff apply` prints them on stderr. */
  onProgress?: Progress;
}

/** How an update an earlier run left unconfirmed was finished. */
export interface PendingOutcome {
  outcome: 'confirmed' | 'rolled-back';
  healthCheck: 'passed' | 'failed' | 'none';
  why?: string;
}

/** What {@link apply} returns: the fields `ndiff apply --json` prints. */
export interface ApplyReport {
  model: string;
  status: string;
  dryRun: boolean;
  /** A structural payload: the model was rebuilt. */
  structural?: true;
  /** 7: a structural payload; 8: a GGUF payload applied in place. */
  formatVersion?: 7 | 8;
  baseFingerprint: string;
  intermediateFingerprint?: string;
  targetFingerprint: string;
  modelId: string;
  sequence: number;
  /** Structural: the rebuilt model's bytes, and how many files it has when several. */
  fileBytes?: number;
  files?: number;
  /** Values written (a GGUF payload: bytes overwritten). */
  writtenValues: number;
  changedTensors: string[];
  /** Value payloads: how the base was checked. */
  baseCheck?: { hashedTensors: number; recordedTensors?: number };
  signature: SignatureCheck;
  sequenceRecorded: boolean;
  statePath: string | null;
  /** What the recovery of an earlier interrupted apply did. */
  recovery: string[];
  pendingUpdate?: PendingOutcome;
  milliseconds: number;
  /** Structural: e.g. a data file another model of the folder names, kept though the new version drops it. */
  warnings?: string[];
}

/**
 * Apply a payload to a model in place, as `ndiff apply` does. Throws the applier's typed errors
 * (PayloadFormatError, SignatureError, FreshnessError, BaseMismatchError, ModelMismatchError,
 * TargetMismatchError, HealthCheckError, ...) with the model untouched or restored; an error
 * carries what the recovery of an earlier interrupted apply did in `details.recovery`.
 */
export async function apply(o: ApplyOptions): Promise<ApplyReport> {
  const timeout = o.healthCheckTimeout ?? 300;
  if (!(timeout > 0)) throw new UsageError(`healthCheckTimeout (--health-check-timeout) must be a positive number of seconds, got ${timeout}`, { expected: 'seconds > 0', found: timeout });
  const progress = o.onProgress ?? (() => {});
  const maxPayloadBytes = o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const single = isModelFilePath(o.model); // a single-file model: .onnx, .tflite or .safetensors
  const dryRun = o.dryRun ?? false;
  const hc = o.healthCheck;
  const check = (dir: string, file?: string) => (typeof hc === 'string' ? runHealthCheck(hc, dir, timeout, progress, file) : (hc as NonNullable<typeof hc>)({ dir, ...(file !== undefined ? { file } : {}) }));
  const notGguf = () => new ModelMismatchError(`model (--model) ${o.model} is a GGUF model, and the payload is not a GGUF payload (format v8, made by ndiff diff from two .gguf files): nothing was read or written; apply the payload made for this model`, { model: o.model });
  if (isGgufPath(o.model) && typeof o.payload === 'string') {
    // A GGUF payload file is read a window and a chunk at a time, never whole (src/io/gguf/payload-file.ts).
    await checkPayloadFileSize(o.payload, maxPayloadBytes);
    if (!(await isGgufPayloadFile(o.payload))) throw notGguf();
    return applyGguf(o, o.payload, dryRun, hc ? ({ file }) => check(dirname(file), file) : undefined);
  }
  // The size cap is checked against the file's size before it is read.
  const bytes = await payloadArgument(o.payload, "apply({ model, payload: 'v1-v2.ndiff' })", maxPayloadBytes);
  const ggufPayload = isGgufPayloadDocument(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes);
  if (isGgufPath(o.model)) {
    if (!ggufPayload) throw notGguf();
    return applyGguf(o, bytes, dryRun, hc ? ({ file }) => check(dirname(file), file) : undefined);
  }
  if (ggufPayload) throw new ModelMismatchError(`the payload is a GGUF payload (format v8), which patches a .gguf model in place, and model (--model) ${o.model} is not a .gguf file: nothing was read or written; apply it to the .gguf model it was made for`, { model: o.model });
  // A full install an update switched in and never confirmed (killed during its health check) is
  // finished first, as ndiff update finishes it (src/io/updater/targets.ts): by this apply's
  // health check, else rolled back; said in `recovery` and `pendingUpdate`, also when the apply then fails.
  const installedAt = single ? o.model : basename(o.model) === 'model.json' ? dirname(o.model) : /\.json$/i.test(o.model) ? undefined : o.model;
  const full: RecoveryReport = { actions: [], rolledBack: false, removed: [] };
  if (installedAt !== undefined && !dryRun && (await fullInstallPending(installedAt))) {
    // Under the model's lock: an install still running its health check holds it, and is left alone.
    const lockAt = single ? dirname(resolve(installedAt)) : installedAt;
    const unlock = (await stat(lockAt).catch(() => undefined)) ? await lockModelDir(lockAt) : undefined;
    try {
      await recoverFullInstall(installedAt, hc ? { healthCheck: () => (single ? check(dirname(installedAt), installedAt) : check(installedAt)) } : {}, full);
    } finally {
      await unlock?.();
    }
  }
  try {
    return withFullInstall(await applyNow(o, bytes, single, dryRun, check, maxPayloadBytes), full);
  } catch (e) {
    if (e instanceof NeuralDiffError && full.actions.length) {
      const r = e.details.recovery as RecoveryReport | undefined;
      e.details.recovery = { actions: [...full.actions, ...(r?.actions ?? [])], rolledBack: full.rolledBack || (r?.rolledBack ?? false), removed: r?.removed ?? [], ...((r?.pending ?? full.pending) ? { pending: r?.pending ?? full.pending } : {}) };
    }
    throw e;
  }
}

/** The payload file at `file` is a regular file within the size cap (checked before any of it is read). */
async function checkPayloadFileSize(file: string, maxPayloadBytes: number): Promise<void> {
  const st = await stat(file).catch((e) => {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') throw new UsageError(`no payload file at ${file}: check the path (payloads are written by \`ndiff diff\` or \`ndiff train\`)`, { path: file });
    throw e;
  });
  if (!st.isFile()) throw new UsageError(`${file} is not a regular file: expected a payload file (written by \`ndiff diff\`, \`ndiff train\` or \`ndiff sign\`); save the payload to a file first`, { path: file });
  if (st.size > maxPayloadBytes + ENVELOPE_OVERHEAD) throw new PayloadTooLargeError(st.size, maxPayloadBytes);
}

/** {@link apply} of a GGUF payload (format v8) to a .gguf model: in place behind an undo journal (src/io/gguf/in-place.ts). */
async function applyGguf(o: ApplyOptions, bytes: Uint8Array | string, dryRun: boolean, healthCheck: ((info: { file: string }) => boolean | void | Promise<boolean | void>) | undefined): Promise<ApplyReport> {
  const t0 = performance.now();
  const trustedKeys = await Promise.all((o.publicKeys ?? []).map((k) => (typeof k === 'string' ? readPublicKeyFile(k) : k)));
  const r = await applyToGgufFile(o.model, bytes, {
    trustedKeys, dryRun,
    ...(o.maxPayloadBytes !== undefined ? { maxPayloadBytes: o.maxPayloadBytes } : {}),
    ...(o.requireSignature !== undefined ? { requireSignature: o.requireSignature } : {}),
    ...(o.modelId !== undefined ? { expectedModelId: o.modelId } : {}),
    ...(o.state !== undefined ? { state: o.state } : {}),
    ...(healthCheck ? { healthCheck } : {}),
  });
  return {
    model: o.model, status: r.status, dryRun, formatVersion: 8, baseFingerprint: r.baseFingerprint, targetFingerprint: r.targetFingerprint, modelId: r.header.modelId, sequence: r.header.sequence,
    writtenValues: r.writtenBytes, changedTensors: r.changedTensors, ...(r.files.length > 1 ? { files: r.files.length } : {}), signature: r.signature, sequenceRecorded: r.sequenceRecorded,
    statePath: o.state === null ? null : o.state ?? `${r.files[0]}${ONNX_STATE_SUFFIX}`, recovery: r.recovery.actions, milliseconds: performance.now() - t0,
    ...(r.recovery.pending ? { pendingUpdate: r.recovery.pending } : {}),
  };
}

/** `report` with what finishing an unconfirmed full install did first (see {@link apply}). */
function withFullInstall(report: ApplyReport, full: RecoveryReport): ApplyReport {
  if (!full.actions.length) return report;
  const pending = report.pendingUpdate ?? full.pending;
  return { ...report, recovery: [...full.actions, ...report.recovery], ...(pending ? { pendingUpdate: pending } : {}) };
}

/** The apply itself, once an unconfirmed full install was finished. */
async function applyNow(o: ApplyOptions, bytes: Uint8Array, single: boolean, dryRun: boolean, check: (dir: string, file?: string) => boolean | void | Promise<boolean | void>, maxPayloadBytes: number): Promise<ApplyReport> {
  const hc = o.healthCheck;
  const trustedKeys = await Promise.all((o.publicKeys ?? []).map((k) => (typeof k === 'string' ? readPublicKeyFile(k) : k)));
  // A model JSON file keeps its state file in its folder, as an .onnx file does (one for the folder's models, by model id).
  const folder = single ? dirname(o.model) : (await locateModelFiles(o.model)).dir;
  // An .onnx file keeps its own (<model>.onnx.ndiff-state.json): two model files of one folder never share one.
  const statePath = o.state === null ? null : o.state ?? (single ? undefined : join(folder, DEFAULT_STATE_FILE));
  const shownState = statePath === undefined ? `${o.model}${ONNX_STATE_SUFFIX}` : statePath;
  const t0 = performance.now();
  const common = {
    maxPayloadBytes,
    trustedKeys,
    ...(o.requireSignature !== undefined ? { requireSignature: o.requireSignature } : {}),
    ...(o.modelId !== undefined ? { expectedModelId: o.modelId } : {}),
    state: statePath,
    dryRun,
  };
  // A structural payload (format v7): a single-file model or a TF.js model rebuilt with neural-diff/rebuild's checks.
  if (isStructuralPayload(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes)) {
    if (isSafetensorsPath(o.model)) {
      throw new ModelMismatchError(`the payload is a structural payload (format v7), which rebuilds a TF.js model, an .onnx or a .tflite file, and model (--model) ${o.model} is a .safetensors file, for which no structural payload is made: nothing was read or written. Apply a payload diffed from two .safetensors files (ndiff diff), or install the new file whole`, { model: o.model, structural: true });
    }
    const r = await (single
      ? (isTflitePath(o.model) ? rebuildTfliteFile : rebuildOnnxFile)(o.model, bytes, { ...common, ...(hc ? { healthCheck: ({ file }) => check(dirname(file), file) } : {}) })
      : rebuildModelDir(o.model, bytes, { ...common, ...(hc ? { healthCheck: ({ dir, file }) => check(dir, file) } : {}) }));
    const h = r.header;
    const warnings = 'warnings' in r ? (r.warnings as string[]) : [];
    return {
      model: o.model, status: r.status, dryRun, structural: true, formatVersion: 7, baseFingerprint: h.baseFingerprint, intermediateFingerprint: h.intermediateFingerprint, targetFingerprint: h.targetFingerprint,
      modelId: h.modelId, sequence: h.sequence, fileBytes: r.bytes.length, ...(r.files ? { files: r.files.length } : {}), changedTensors: r.values?.changedTensors ?? [], writtenValues: r.values?.writtenValues ?? 0,
      signature: r.signature, sequenceRecorded: r.sequenceRecorded, statePath: shownState, recovery: r.recovery.actions, ...(r.recovery.pending ? { pendingUpdate: r.recovery.pending } : {}), milliseconds: performance.now() - t0,
      ...(warnings.length ? { warnings } : {}),
    };
  }
  const res = single
    ? await applyToWeightsFile(o.model, bytes, weightsFileFormatOf(o.model)!, { ...common, ...(hc ? { healthCheck: ({ file }) => check(dirname(file), file) } : {}) })
    : await applyToModelDir(o.model, bytes, { ...common, baseCheck: o.fullCheck ? 'full' : 'recorded', ...(hc ? { healthCheck: ({ dir, file }) => check(dir, file) } : {}) });
  return {
    model: o.model, status: res.status, dryRun, baseFingerprint: res.baseFingerprint, targetFingerprint: res.targetFingerprint,
    modelId: res.payload.header.modelId, sequence: res.sequence, writtenValues: res.writtenValues, changedTensors: res.changedTensors,
    baseCheck: res.baseCheck, signature: res.signature, sequenceRecorded: res.sequenceRecorded, statePath: shownState, recovery: res.recovery.actions, ...(res.recovery.pending ? { pendingUpdate: res.recovery.pending } : {}), milliseconds: performance.now() - t0,
  };
}
