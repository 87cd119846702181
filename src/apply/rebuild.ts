/**
 * `neural-diff/rebuild`: the device entry for structural payloads (format version 7,
 * docs/FORMAT.md §17), kept apart from `neural-diff/apply` so the base applier does not grow.
 *
 * A structural payload takes a single-file model (ONNX `.onnx`, LiteRT `.tflite`) whose
 * structure changed: a byte delta (§16) rebuilds the base file into an *intermediate* file with
 * the target's structure (kept and renamed tensors copied from the base's bytes, new ones
 * inserted), then an ordinary value payload (versions 1-6) patches the intermediate into the
 * target. The device checks the base's fingerprint before anything, the intermediate's after the
 * rebuild, and the target's after the patches; the base bytes are only read, and the result is
 * a new file's bytes (the Node file update writes it whole and switches atomically:
 * `rebuildOnnxFile` / `rebuildTfliteFile` in `neural-diff/node`).
 *
 * Device code: the pure core only (no tfjs, no node:* modules). The file format's store comes
 * from the caller (`new OnnxWeightStore(bytes)` from `neural-diff/onnx`, `new
 * TfliteWeightStore(bytes)` from `neural-diff/tflite`), so this entry carries neither parser.
 *
 * @module neural-diff/rebuild
 */
import { applyByteDelta } from '../core/byte-delta.ts';
import { BaseMismatchError, ModelMismatchError, NeuralDiffError, PayloadFormatError, PayloadTooLargeError, TargetMismatchError, UnsupportedVersionError, UsageError } from '../core/errors.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import { bytes8ToHex, DIFF_METHODS, payloadLimit, type DecodeOptions, type DiffMethod, type PayloadHeader } from '../core/format.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { readMsgpack } from '../core/msgpack-read.ts';
import type { WeightStore } from '../core/weight-store.ts';
import { checkModelFileList, concatModelFiles, deltaBaseBytes, deltaBaseOf, splitModelFiles, type ModelFile, type ModelFilesReader } from '../core/model-files.ts';
import { readByteDeltaHeader } from '../core/byte-delta.ts';
import { applyVerifiedPayload, verifyPayload, type ApplyResult, type VerifiedPayload } from './apply.ts';
import { checkNotExpired, checkNotReplayed, checkNotStale, readRecordedSequence, type SequenceStore } from './freshness.ts';
import { openSignedPayload, type SignatureCheck, type SignaturePolicy } from './signature.ts';
import { isSignedEnvelope, parseEnvelope } from './envelope.ts';

/** The format version of a structural payload. */
export const STRUCTURAL_VERSION = 7;

/**
 * The file formats a structural payload rebuilds (its `fk` key): `onnx` and `tflite` single
 * files, `tfjs` a TF.js model's files (its model JSON, then its shards in manifest order).
 */
export type RebuildFileKind = 'onnx' | 'tflite' | 'tfjs';
const FILE_KINDS: readonly RebuildFileKind[] = ['onnx', 'tflite', 'tfjs'];
/** The formats whose models are several files: their payloads name the files (`fl`). */
const MULTI_FILE_KINDS: readonly RebuildFileKind[] = ['tfjs'];

/** The header of a structural payload: a value payload's header and the intermediate fingerprint. */
export interface StructuralHeader extends PayloadHeader {
  /** The file format the rebuild is for. */
  fileKind: RebuildFileKind;
  /** Fingerprint of the rebuilt file before the value patches. */
  intermediateFingerprint: string;
  /**
   * For a model of several files (`fk` = `tfjs`): the target's files in order, each its path
   * relative to the model's folder and its length; the byte delta's output is them one after
   * the other. Absent for a single file.
   */
  files?: { path: string; length: number }[];
}

/** A decoded structural payload: its header, the byte delta and the value payload. */
export interface StructuralPayload {
  header: StructuralHeader;
  /** The byte delta (§16) from the base file to the intermediate file. */
  rebuild: Uint8Array;
  /** The value payload (versions 1-6) from the intermediate to the target, as bytes. */
  values: Uint8Array;
  /** The value payload, decoded and checked. */
  verifiedValues: VerifiedPayload;
}

/** A model file's store over its bytes, as the ONNX and LiteRT stores are. */
export interface FileModelStore extends WeightStore {
  /** The file's bytes, with the committed patches. */
  modelBytes(): Uint8Array;
}

/** A model store over several files' bytes (a TF.js model in memory). */
export interface FilesModelStore extends WeightStore {
  /** The model's files, with the committed patches, in the format's order (the model JSON first for TF.js). */
  modelFiles(): ModelFile[];
}

/** How to read a format whose models are several files: `{ kind: 'tfjs', open: (files) => new TfjsFilesStore(files) }`. */
export interface RebuildFilesFormat {
  kind: RebuildFileKind;
  /** A store over the files (in the format's order); throws a typed error for files that are not such a model. */
  open(files: readonly ModelFile[]): FilesModelStore;
}

/** How to read one file format: `{ kind: 'onnx', open: (b) => new OnnxWeightStore(b) }`. */
export interface RebuildFormat {
  kind: RebuildFileKind;
  /** A store over a file's bytes; throws a typed error for bytes that are not such a file. */
  open(bytes: Uint8Array): FileModelStore;
}

export interface RebuildOptions extends DecodeOptions, SignaturePolicy {
  /** Hash implementation: `'wasm'` (default where WebAssembly exists), `'pure'`, or a ready {@link Hasher}. */
  hasher?: Hasher | 'wasm' | 'pure';
  /** When set, refuse payloads whose model id differs. */
  expectedModelId?: string;
  /**
   * Checked, never written: a sequence below the recorded one is refused, and a second update
   * under the recorded one. Record `header.sequence` yourself once the rebuilt file is stored
   * (the Node file update does).
   */
  sequenceStore?: SequenceStore;
  /** The clock for expiry checks, in milliseconds since 1970 (default `Date.now`). */
  now?: () => number;
  /** The largest rebuilt file accepted (default: 4 x the base's length + 64 MiB, at most 2^31 - 1 bytes). */
  maxFileBytes?: number;
}

/**
 * A model's files whose fingerprint is already known, read only once the payload is known to be
 * for them: the Node file layer fingerprints a model with external data files one tensor at a
 * time, so a payload for another base is refused before gigabytes of data files are read whole.
 */
export interface FingerprintedBase {
  /** The fingerprint of the model the files hold (as {@link fingerprintStore} gives it). */
  fingerprint: string;
  /**
   * The model's files, in the format's order; called at most once, after the base is checked.
   * Absent with {@link reader}: an `already-applied` result then carries no bytes (`bytes`
   * empty, no `files`): the files are the base's, as they are.
   */
  files?(): readonly ModelFile[];
  /**
   * The files read a range at a time instead, for a format whose byte delta reads the files as
   * they are (ONNX with external data files, not TF.js): the delta's base is checked against
   * their lengths and only the bytes its copies take are read, after every instruction is
   * checked and the output (at most `maxFileBytes`) allocated. So a payload cannot make a device
   * read gigabytes of data files whole.
   */
  reader?: ModelFilesReader;
}

/**
 * The most tensor elements a rebuilt model may hold for each byte of its files (plus 2^20): a
 * file holds at most two elements a byte (int4), a few more where tensors share one buffer
 * (tied weights). A `.tflite` of 16,000 tensors sharing one buffer would otherwise be read and
 * hashed 16,000 times over before its fingerprint is known to be wrong.
 */
export const MAX_ELEMENTS_PER_BYTE = 8;

export interface RebuildResult {
  /**
   * `applied`: `bytes` are the target. `already-applied`: the base was the target; `bytes` are the
   * base (empty for a base given by a {@link FingerprintedBase.reader} alone).
   */
  status: 'applied' | 'already-applied';
  /** The target file's bytes (for a model of several files: the files one after the other). */
  bytes: Uint8Array;
  /** For a model of several files: the target's files, in the payload's order (the base's when already applied). */
  files?: ModelFile[];
  header: StructuralHeader;
  signature: SignatureCheck;
  /** What the value payload did on the intermediate file (absent when already applied). */
  values?: ApplyResult;
  /** The sequence recorded before (undefined without a store, or none recorded). */
  previousSequence?: number;
}

function fail(message: string): never {
  throw new PayloadFormatError(`structural payload: ${message}; the payload is corrupt or not a neural-diff payload: fetch it again or fall back to the full model`);
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const own = (o: Record<string, unknown>, k: string): unknown => (Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined);
function bin(o: Record<string, unknown>, k: string, len?: number): Uint8Array {
  const v = own(o, k);
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) fail(`"${k}" must be ${len === undefined ? 'binary' : `${len} bytes of binary`}`);
  return v;
}
function str(o: Record<string, unknown>, k: string, max: number): string {
  const v = own(o, k);
  if (typeof v !== 'string' || v.length > max) fail(`"${k}" must be a string of at most ${max} chars`);
  return v;
}

/**
 * Whether `bytes` is a structural payload (format v7): a msgpack map whose `nd` is 7, signed (the
 * payload inside the envelope is looked at; the signature is not checked) or not; false for
 * anything else, never throws.
 */
export function isStructuralPayload(bytes: Uint8Array): boolean {
  try {
    const doc = readMsgpack(isSignedEnvelope(bytes) ? parseEnvelope(bytes).payload : bytes);
    return typeof doc === 'object' && doc !== null && !(doc instanceof Uint8Array) && !Array.isArray(doc) && own(doc as Record<string, unknown>, 'nd') === STRUCTURAL_VERSION;
  } catch {
    return false;
  }
}

/**
 * Decode and check a structural payload's document (not an envelope; {@link rebuildModelBytes}
 * unwraps one): the header, the byte delta's presence and the value payload's header, which must
 * name the same model and sequence, the intermediate as its base and the same target.
 * @throws PayloadTooLargeError, PayloadFormatError, UnsupportedVersionError, NonFiniteValueError
 */
export async function decodeStructuralPayload(bytes: Uint8Array, options: DecodeOptions = {}): Promise<StructuralPayload> {
  const limit = payloadLimit(options.maxPayloadBytes);
  if (bytes.length > limit) throw new PayloadTooLargeError(bytes.length, limit);
  let doc: unknown;
  try {
    doc = readMsgpack(bytes);
  } catch (e) {
    fail(`malformed msgpack: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || doc instanceof Uint8Array || Array.isArray(doc)) fail('expected a msgpack map');
  const o = doc as Record<string, unknown>;
  const version = own(o, 'nd');
  // No version at all is a malformed document (FORMAT.md 7.2, as for value payloads), not a version this device lacks.
  if (version === undefined) fail('missing the format version field "nd"');
  if (version !== STRUCTURAL_VERSION) throw new UnsupportedVersionError(version, [STRUCTURAL_VERSION]);
  const method = str(o, 'm', 32) as DiffMethod;
  if (!DIFF_METHODS.includes(method)) fail(`unknown method ${JSON.stringify(method)}`);
  const fileKind = str(o, 'fk', 16) as RebuildFileKind;
  if (!FILE_KINDS.includes(fileKind)) fail(`"fk" must be one of ${FILE_KINDS.join(', ')}, found ${JSON.stringify(fileKind)}`);
  const sequence = own(o, 'sq');
  const budget = own(o, 'bb');
  if (!isUint(sequence)) fail('"sq" must be a non-negative integer');
  if (!isUint(budget)) fail('"bb" must be a non-negative integer');
  const header: StructuralHeader = {
    version: STRUCTURAL_VERSION,
    method,
    modelId: str(o, 'id', 256),
    baseFingerprint: bytes8ToHex(bin(o, 'bf', 8)),
    intermediateFingerprint: bytes8ToHex(bin(o, 'if', 8)),
    targetFingerprint: bytes8ToHex(bin(o, 'tf', 8)),
    sequence,
    budgetBytes: budget,
    createdBy: str(o, 'cb', 256),
    fileKind,
  };
  if (own(o, 'ct') !== undefined) header.createdAt = str(o, 'ct', 64);
  const ex = own(o, 'ex');
  if (ex !== undefined) {
    if (!isUint(ex)) fail('"ex" must be a non-negative integer (seconds since 1970)');
    header.expiresAt = ex;
  }
  const meta = own(o, 'x');
  if (meta !== undefined) {
    if (typeof meta !== 'object' || meta === null || meta instanceof Uint8Array || Array.isArray(meta)) fail('"x" must be a map');
    const m: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(meta as Record<string, unknown>)) {
      if (typeof v !== 'string' && typeof v !== 'number') fail(`metadata value "${k}" must be a string or number`);
      m[k] = v;
    }
    header.meta = m;
  }
  const fl = own(o, 'fl');
  if (MULTI_FILE_KINDS.includes(fileKind) || (fileKind === 'onnx' && fl !== undefined)) {
    // tfjs: always several files; onnx: with "fl", the .onnx and its external data files.
    if (!Array.isArray(fl)) fail(`"fl" (the ${fileKind} model's file list) must be an array of [path, length], found ${fl === undefined ? 'nothing' : typeof fl}`);
    header.files = decodeFileList(fl, fileKind);
  } else if (fl !== undefined) fail(`"fl" names files, but a ${fileKind} model is a single file: expected no "fl"`);
  const rebuild = bin(o, 'rb');
  const values = bin(o, 'pv');
  // The value payload is decoded and checked whole here, before any model is read.
  const verifiedValues = await verifyPayload(values, { maxPayloadBytes: limit });
  const inner = verifiedValues.payload.header;
  const disagree = [
    inner.modelId !== header.modelId && `model id ${JSON.stringify(inner.modelId)}, not ${JSON.stringify(header.modelId)}`,
    inner.sequence !== header.sequence && `sequence ${inner.sequence}, not ${header.sequence}`,
    inner.baseFingerprint !== header.intermediateFingerprint && `base ${inner.baseFingerprint}, not the intermediate ${header.intermediateFingerprint}`,
    inner.targetFingerprint !== header.targetFingerprint && `target ${inner.targetFingerprint}, not ${header.targetFingerprint}`,
  ].filter(Boolean);
  if (disagree.length) fail(`its value payload "pv" names ${disagree.join(', ')}`);
  return { header, rebuild, values, verifiedValues };
}

/** The entries of `fl`, checked (src/core/model-files.ts): the first is the model JSON for TF.js. */
function decodeFileList(fl: unknown[], kind: RebuildFileKind): { path: string; length: number }[] {
  if (fl.length > 4096) fail(`"fl" names ${fl.length} files (at most 4096)`);
  let total = 0;
  const list = fl.map((e, i) => {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !isUint(e[1]) || e[1] > 2 ** 31 - 1) fail(`"fl" entry ${i} must be [path (string), length (0 to 2^31 - 1)]`);
    total += e[1] as number;
    return { path: e[0] as string, length: e[1] as number };
  });
  if (total > 2 ** 32 - 1) fail(`"fl" names ${total} bytes in all (at most 2^32 - 1)`);
  checkModelFileList(list);
  if (kind === 'onnx' && !/\.onnx$/i.test(list[0].path)) fail(`the first file of an onnx model must be its .onnx file, found ${JSON.stringify(list[0].path.slice(0, 80))}`);
  if (kind === 'tfjs') {
    if (!/\.json$/i.test(list[0].path)) fail(`the first file of a tfjs model must be its model JSON (a .json file), found ${JSON.stringify(list[0].path.slice(0, 80))}`);
    const json = list.slice(1).find((f) => /\.json$/i.test(f.path));
    if (json) fail(`a tfjs model's weight shard must not be named like a model JSON file, found ${JSON.stringify(json.path.slice(0, 80))}`);
  }
  return list;
}

/** The default cap on a rebuilt file: 4 x the base + 64 MiB, at most 2^31 - 1 bytes. */
export function defaultMaxFileBytes(baseLength: number): number {
  return Math.min(2 ** 31 - 1, 4 * baseLength + 64 * 1024 * 1024);
}

function fingerprintOf(hasher: Hasher, store: WeightStore): string {
  return fingerprintStore(hasher, store).fingerprint;
}

/**
 * Rebuild the target file from the base file's bytes and a structural payload (or a signed
 * envelope holding one). In order: size cap and signature; the document and its value payload
 * decoded; model id, stale sequence and file kind; the base's fingerprint (already the target:
 * `already-applied`; a replay, an expired payload or another base: refused); the byte delta
 * applied (every instruction checked first, the output capped); the intermediate's fingerprint;
 * the value payload applied to it in memory, the target checked per tensor and whole; the target
 * bytes read back and fingerprinted once more. `base` is only read: on any refusal nothing
 * changed, and a typed error says what to do.
 */
export async function rebuildModelBytes(base: Uint8Array, payloadBytes: Uint8Array, format: RebuildFormat, options: RebuildOptions = {}): Promise<RebuildResult> {
  const single: RebuildFilesFormat = {
    kind: format.kind,
    open(files) {
      const store = format.open(files[0].bytes);
      return Object.assign(store, { modelFiles: () => [{ path: files[0].path, bytes: store.modelBytes() }] });
    },
  };
  const r = await rebuild([{ path: '', bytes: base }], payloadBytes, single, options, true);
  const { files: _files, ...rest } = r;
  return rest;
}

/**
 * {@link rebuildModelBytes} for a model of several files (a TF.js model: its model JSON, then
 * its shards in manifest order, as `format` orders them): the byte delta runs over the base
 * files one after the other and its output is cut into the files the payload lists (`fl`, their
 * paths checked hard when the payload is decoded: nothing relative paths could escape with, no
 * name of the updater's own files, no two alike). The result's `files` are the target's, in the
 * payload's order. `base` is only read.
 */
export async function rebuildModelFiles(base: readonly ModelFile[] | FingerprintedBase, payloadBytes: Uint8Array, format: RebuildFilesFormat, options: RebuildOptions = {}): Promise<RebuildResult> {
  return rebuild(base, payloadBytes, format, options, false);
}

/** The elements of every tensor of `store`, refused past {@link MAX_ELEMENTS_PER_BYTE} a byte of its `bytes` files before any is read. */
function checkElements(store: WeightStore, bytes: number, what: string): void {
  const max = MAX_ELEMENTS_PER_BYTE * bytes + 2 ** 20;
  let elements = 0;
  for (const t of store.list()) {
    elements += t.shape.reduce((n, d) => n * d, 1);
    if (elements > max) {
      throw new TargetMismatchError(`the ${what} rebuilt by the payload's byte delta hold${what === 'file' ? 's' : ''} more than ${max} tensor elements in ${bytes} bytes (at most ${MAX_ELEMENTS_PER_BYTE} a byte, tensors sharing their data): the payload is inconsistent or hostile; nothing was written: fetch it again or the full model`, { stage: 'intermediate', maxElements: max, bytes });
    }
  }
}

async function rebuild(given: readonly ModelFile[] | FingerprintedBase, payloadBytes: Uint8Array, format: RebuildFilesFormat, options: RebuildOptions, singleFile: boolean): Promise<RebuildResult> {
  const opened = await openSignedPayload(payloadBytes, options);
  const payload = await decodeStructuralPayload(opened.payload, options);
  const { header } = payload;
  if (singleFile && header.files) {
    throw new ModelMismatchError(`this structural payload rebuilds a ${header.fileKind} model of ${header.files.length} files (${header.files.slice(0, 3).map((f) => f.path).join(', ')}${header.files.length > 3 ? ', ...' : ''}), and a single file was given: rebuild the model's files together (rebuildModelFiles${header.fileKind === 'tfjs' ? ', or rebuildModelDir on Node' : ''}); nothing was written`, { files: header.files.length });
  }
  if (options.expectedModelId !== undefined && header.modelId !== options.expectedModelId) {
    throw new ModelMismatchError(`payload is for model ${JSON.stringify(header.modelId)}, this device holds ${JSON.stringify(options.expectedModelId)}: nothing was written; fetch the payload published for ${JSON.stringify(options.expectedModelId)}`, { expected: options.expectedModelId, found: header.modelId });
  }
  const recorded = options.sequenceStore ? await readRecordedSequence(options.sequenceStore, header.modelId) : undefined;
  checkNotStale(header, recorded);
  if (header.fileKind !== format.kind) {
    throw new ModelMismatchError(`this structural payload rebuilds a ${header.fileKind} ${header.fileKind === 'tfjs' ? 'model' : 'file'}, the model given is read as ${format.kind}: fetch the payload made for this model's format`, { expected: header.fileKind, found: format.kind });
  }
  const hasher = options.hasher && typeof options.hasher === 'object' ? options.hasher : await getHasher(options.hasher ? { prefer: options.hasher } : undefined);
  const what = header.files ? 'files' : 'file';
  const result = (status: RebuildResult['status'], files: ModelFile[], values?: ApplyResult): RebuildResult => ({
    status,
    bytes: files.length === 1 ? files[0].bytes : concatModelFiles(files),
    ...(header.files ? { files } : {}),
    header,
    signature: opened.signature,
    ...(values ? { values } : {}),
    ...(recorded !== undefined ? { previousSequence: recorded } : {}),
  });

  // The base, before anything else is done with the payload (already fingerprinted: read only
  // once it is known to be the payload's).
  const known = 'fingerprint' in given ? given : undefined;
  const baseFingerprint = known ? known.fingerprint : fingerprintOf(hasher, format.open(given as readonly ModelFile[]));
  const reader = known?.reader && header.fileKind !== 'tfjs' ? known.reader : undefined;
  const baseFiles = (): readonly ModelFile[] => {
    if (!known) return given as readonly ModelFile[];
    if (!known.files) throw new UsageError(`the base of this ${header.fileKind} payload was given without files()${header.fileKind === 'tfjs' ? ' (a TF.js model\'s byte delta reads its model JSON rewritten, so a reader cannot stand for its files)' : ''}: pass the files; nothing was written`, { kind: header.fileKind });
    return known.files();
  };
  if (baseFingerprint === header.targetFingerprint) {
    if (known?.reader && !known.files) {
      const { files: _none, ...unread } = result('already-applied', []);
      return unread;
    }
    return result('already-applied', [...baseFiles()]);
  }
  checkNotReplayed(header, recorded, baseFingerprint);
  checkNotExpired(header, (options.now ?? Date.now)());
  if (baseFingerprint !== header.baseFingerprint) {
    throw new BaseMismatchError(`payload targets base ${header.baseFingerprint.slice(0, 8)}…, this model is ${baseFingerprint.slice(0, 8)}…: fetch the full model, or the update made for base ${baseFingerprint.slice(0, 8)}…`, { expected: header.baseFingerprint, found: baseFingerprint });
  }

  // The rebuild, then the intermediate: the base's files read whole, or (a reader) only where
  // the byte delta copies from.
  const base = reader ? undefined : baseFiles();
  const baseBytes = base ? deltaBaseBytes(header.fileKind, base) : deltaBaseOf(reader as ModelFilesReader);
  const modelPath = (base ?? (reader as ModelFilesReader).files)[0].path;
  const cap = options.maxFileBytes ?? defaultMaxFileBytes(baseBytes.length);
  if (header.files) {
    // The files' lengths must be the delta's output, checked before the output exists.
    const declared = readByteDeltaHeader(payload.rebuild, cap, 'structural payload "rb"').outputLength;
    const listed = header.files.reduce((n, f) => n + f.length, 0);
    if (declared !== listed) fail(`"fl" lists ${listed} bytes of files, the byte delta "rb" writes ${declared}`);
  }
  const intermediate = applyByteDelta(baseBytes, payload.rebuild, cap, 'structural payload "rb"');
  const interFiles = header.files ? splitModelFiles(intermediate, header.files) : [{ path: modelPath, bytes: intermediate }];
  let store: FilesModelStore;
  try {
    store = format.open(interFiles);
  } catch (e) {
    throw new TargetMismatchError(`the ${what} rebuilt by the payload's byte delta ${header.files ? 'are' : 'is'} not a valid ${header.fileKind} model (${(e as Error).message}): the payload is inconsistent; nothing was written: fetch it again or the full model`, { stage: 'intermediate' });
  }
  checkElements(store, intermediate.length, what);
  const intermediateFingerprint = fingerprintOf(hasher, store);
  if (intermediateFingerprint !== header.intermediateFingerprint) {
    throw new TargetMismatchError(`the rebuilt ${what} ${header.files ? 'are' : 'is'} ${intermediateFingerprint.slice(0, 8)}…, the payload expects the intermediate ${header.intermediateFingerprint.slice(0, 8)}…: the payload is inconsistent${header.files ? ' or this model\'s files are not byte for byte the ones it was made from' : ''}; nothing was written: fetch it again or the full model`, { stage: 'intermediate', expected: header.intermediateFingerprint, found: intermediateFingerprint });
  }

  // The value patches on the intermediate, in memory; the target checked by the applier, then
  // the bytes the store writes read back.
  const values = await applyVerifiedPayload(store, payload.verifiedValues, { hasher });
  const files = store.modelFiles();
  let written: string;
  try {
    written = fingerprintOf(hasher, format.open(files));
  } catch (e) {
    if (!(e instanceof NeuralDiffError)) throw e;
    written = `unreadable (${e.message})`;
  }
  if (written !== header.targetFingerprint) {
    throw new TargetMismatchError(`the patched ${what} read${header.files ? '' : 's'} back as ${written.slice(0, 8)}…, not the target ${header.targetFingerprint.slice(0, 8)}…: nothing was written: fetch the full model`, { stage: 'target', expected: header.targetFingerprint, found: written });
  }
  return result('applied', files, values);
}

export { applyByteDelta, readByteDeltaHeader, type ByteDeltaBase, LITERALS_RAW, LITERALS_RANGE_CODED, INSTRUCTIONS_RANGE_CODED, MODELLED, MODELLED_CONTEXT, MODELLED_MAX_CONTEXT_BITS, BYTE_DELTA_MAX_BASE, BYTE_DELTA_MAX_SPAN, type ByteDeltaHeader } from '../core/byte-delta.ts';
export * from '../core/errors.ts';
export { checkModelFileList, modelPathProblem, concatModelFiles, splitModelFiles, MAX_MODEL_FILES, MAX_MODEL_PATH, MAX_MODEL_PATHS_TOTAL, type ModelFile, type ModelFilesReader } from '../core/model-files.ts';
export { getHasher, type Hasher } from '../core/hasher.ts';
export type { SequenceStore, SequenceRecord } from './freshness.ts';
