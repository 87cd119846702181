/**
 * The device applier: verify a payload against the model in a {@link WeightStore}, patch the
 * weights in place, check the result, and undo everything if any check fails.
 *
 * Order of work (no weight is written before step 6; the store persists nothing before step 8):
 *  1. size cap, then the signature policy on the raw bytes (signature.ts): nothing is decoded
 *     before a required signature verified;
 *  2. bounded decode and structural validation of the payload (format.ts, msgpack-read.ts),
 *     every position and value included (checked on their bytes, not kept);
 *  3. model id, and the sequence against the highest one applied (freshness.ts);
 *  4. every patch checked against the model: tensor exists, shape matches, storage grid;
 *  5. the digests of the tensors the payload does not write (hashed, or vouched for by the store).
 *     If they and the payload's own base digests of the patched tensors make its base
 *     fingerprint, and the model being the base would not be refused (replay, expiry), the
 *     patched tensors are hashed as the base in step 6, while they are patched. Otherwise they
 *     are hashed now and the model decided on before anything is written: already the target →
 *     done; a second update under an applied sequence, or an expired payload → refused; not
 *     the base → refused;
 *  6. each patch decoded once, a piece or a region at a time, on its way to the weights, with an
 *     undo log; each region of a patched tensor hashed as the base before its first write and
 *     as the target after its last (region-kernel.ts does all of it for sparse and dense patches
 *     where WebAssembly runs). A tensor that turns out not to be the base stops the pass: every
 *     write is undone, then the model is decided on as in step 5;
 *  7. target digests and fingerprint checked; undo on mismatch;
 *  8. `store.commit(changed)`; undo in memory if it throws;
 *  9. the optional health check; on failure the store goes back to the previous version
 *     (`revertCommit` of a two-phase store, else the restored values are committed again);
 * 10. `confirmCommit` of a two-phase store (it drops the previous version);
 * 11. the sequence is recorded in the sequence store.
 *
 * Every refusal after step 5 comes after the undo: the weights are as before, bit for bit.
 */
import { BaseMismatchError, HealthCheckError, ModelMismatchError, NeuralDiffError, NonFiniteValueError, PayloadFormatError, SignatureError, StateStoreError, TargetMismatchError, UsageError } from '../core/errors.ts';
import { combineDigests, tensorDigest, tensorDigestStream, type TensorDigestStream } from '../core/fingerprint.ts';
import { openPayload, patchSource, type DecodeOptions, type OpenedPayload, type Payload, type PatchSource } from '../core/format.ts';
import { exactBits } from '../core/values.ts';
import { kernelTakes, patchRegions, type KernelStream } from '../core/region-kernel.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { describeGrid, sameGrid, type StorageGrid } from '../core/grid.ts';
import { applyRange, ExceptionLog, pieceLength, subtractRange } from '../core/patch-math.ts';
import { readForDigest, type WeightStore } from '../core/weight-store.ts';
import { checkNotExpired, checkNotReplayed, checkNotStale, readRecordedSequence, short, type SequenceStore } from './freshness.ts';
import { openSignedPayload, parseTrustedKeys, type SignatureCheck, type SignaturePolicy } from './signature.ts';

/**
 * Runs after the new version is committed and before it is confirmed (e.g. one inference on a
 * known input). Returning `false` or throwing rolls the update back.
 */
export type HealthCheck = (info: { store: WeightStore; result: ApplyResult }) => boolean | void | Promise<boolean | void>;

export interface ApplyOptions extends DecodeOptions, SignaturePolicy {
  /** Hash implementation: `'wasm'` (default where WebAssembly exists), `'pure'`, or a ready {@link Hasher}. */
  hasher?: Hasher | 'wasm' | 'pure';
  /** When set, refuse payloads whose model id differs. */
  expectedModelId?: string;
  /**
   * Where the highest applied sequence per model id is kept. With it, payloads whose sequence
   * is below the recorded one are refused, and so is a second update under the recorded one.
   */
  sequenceStore?: SequenceStore;
  /** The clock for expiry checks, in milliseconds since 1970 (default `Date.now`). */
  now?: () => number;
  /** Decides whether the new version is kept; see {@link HealthCheck}. */
  healthCheck?: HealthCheck;
}

export interface ApplyResult {
  /** `applied`: the model now is the target. `already-applied`: it was the target before; nothing was written. */
  status: 'applied' | 'already-applied';
  baseFingerprint: string;
  targetFingerprint: string;
  sequence: number;
  /** Names of the tensors that changed. */
  changedTensors: string[];
  /** Number of weight values the patch wrote. */
  writtenValues: number;
  /**
   * How the model's tensors were identified: hashed from their values, or by a digest the
   * store vouched for ({@link WeightStore.digest}; never a tensor the payload writes).
   */
  baseCheck: { hashedTensors: number; recordedTensors: number };
  /** The header, and each patch without its arrays (`decodePayload` gives them). */
  payload: OpenedPayload;
  /** What the signature check found. */
  signature: SignatureCheck;
  /** The sequence recorded before this apply (undefined without a store, or none recorded). */
  previousSequence?: number;
  /** True when this call recorded `sequence` in the sequence store. */
  sequenceRecorded: boolean;
}

/**
 * A store that keeps the previous version after {@link WeightStore.commit} until told which
 * one to keep (the TF.js folder store of src/io/tfjs/folder-update.ts is one).
 */
export interface TwoPhaseWeightStore extends WeightStore {
  /** The new version is good: drop the previous one. */
  confirmCommit(): void | Promise<void>;
  /** The new version is bad: make the previous one current again, durably. */
  revertCommit(): void | Promise<void>;
}

function isTwoPhase(store: WeightStore): store is TwoPhaseWeightStore {
  return typeof (store as Partial<TwoPhaseWeightStore>).confirmCommit === 'function' && typeof (store as Partial<TwoPhaseWeightStore>).revertCommit === 'function';
}

/** A payload that passed the signature policy and the decoder; made only by {@link verifyPayload}. */
export interface VerifiedPayload {
  /** The header, and each patch checked but not kept decoded (see `openPayload`). */
  readonly payload: OpenedPayload;
  readonly signature: SignatureCheck;
  /** Size of the bytes that were verified (envelope included). */
  readonly byteLength: number;
}
const verifiedPayloads = new WeakSet<VerifiedPayload>();

/** Values per region of a patched tensor (64 KiB): hashed as the base, patched, then hashed as the target while in cache. */
const REGION = 1 << 14;

/** What the pass wrote into one tensor: enough to undo it bit for bit. */
interface PatchWrites {
  src: PatchSource;
  /** The exceptions of every range written (tensor positions). */
  log: ExceptionLog;
  /**
   * How far the patch was applied, in order: its first `applied` entries (sparse) or values
   * (dense), or tensor positions [0, applied) of a hashed, low-rank or composite patch.
   */
  applied: number;
}

/** The first index in `positions[from, to)` holding a value >= `limit` (they increase), or `to`. */
function firstAtOrAbove(positions: Uint32Array, limit: number, from: number, to: number): number {
  let lo = from;
  let hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (positions[mid] < limit) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Patch the tensor `w` with `src`, a region of {@link REGION} values at a time: each region the
 * patch writes into is hashed as the base (when `base` is given) just before its first write
 * and as the target once its last write is done, while it is in cache; regions it skips are
 * hashed as both. Refuses (NonFiniteValueError) a weight the patch made NaN or infinite.
 */
function patchAndHash(w: Float32Array, src: PatchSource, rec: PatchWrites, base: TensorDigestStream | undefined, target: TensorDigestStream): void {
  const { wire } = src;
  if (wire && !exactBits(src.codec) && src.codec !== 'l' && (src.kind === 'dense' || wire.coding === 'gaps') && !(src.grid && src.grid.dtype !== 'float32') && kernelTakes(target.stream, src.codec) && (!base || kernelTakes(base.stream, src.codec))) {
    // Sparse (gap-coded) and dense patches without a storage grid: decoded and applied by the
    // region kernel, the regions hashed in its memory.
    const res = patchRegions(w, { count: src.written, gaps: src.kind === 'sparse' ? wire.positions : undefined, values: wire.values, codec: src.codec, scale: src.scale }, rec.log, base?.stream as KernelStream | undefined, target.stream);
    rec.applied = res.applied;
    if (res.fault?.kind === 'overflow') throw overflow(src.name, w[res.fault.position]);
    if (res.fault) {
      // Only bytes changed since the check get here: say what the check says of them now.
      src.check();
      throw new PayloadFormatError(`patch for tensor ${JSON.stringify(src.name)}: its bytes changed while it was applied (the payload's buffer was written to after verifyPayload); the patch was undone and the model is unchanged: keep the payload's bytes unchanged until the apply returns`);
    }
    return;
  }
  const n = w.length;
  let open = 0; // [0, open) hashed as the base
  let done = 0; // [0, done) hashed as the target
  // Make position `pos` writable; returns the end of its region.
  const reach = (pos: number): number => {
    if (pos < open) return open;
    target.update(w, done, open);
    const start = pos - (pos % REGION);
    base?.update(w, open, start);
    target.update(w, open, start);
    open = Math.min(n, start + REGION);
    base?.update(w, start, open);
    done = start;
    return open;
  };
  const xorOnly = exactBits(src.codec) && !(src.grid && src.grid.dtype !== 'float32');
  let before = 0; // entries or values of the pieces before this one
  for (const { patch, offset } of src.chunks()) {
    const len = pieceLength(patch, n);
    for (let k = 0; k < len;) {
      const end =
        patch.kind === 'sparse' ? firstAtOrAbove(patch.positions, reach(patch.positions[k]), k, len)
          : patch.kind === 'dense' ? Math.min(len, reach(offset + k) - offset)
            : reach(k);
      const logged = rec.log.size;
      const start = k;
      applyRange(w, patch, offset, k, end, rec.log);
      rec.applied = before + (k = end);
      // A weight the patch made non-finite overflowed float32 (finite deltas can: 3e38 + 3e38,
      // or a low-rank product). Subtracting its delta again would not give the old value back,
      // so it is among the logged exceptions: checking those finds it. (A payload for a model
      // holding NaN or infinity in a patched tensor cannot be built: the encoder refuses
      // non-finite targets; so the device refuses them too.)
      const bad = rec.log.nonFiniteSince(w, logged);
      if (bad >= 0) throw overflow(src.name, w[bad]);
      // Codecs x and xr write exact bits and log nothing (off a storage grid): check what they wrote.
      if (xorOnly) {
        for (let j = start; j < end; j++) {
          const x = w[patch.kind === 'sparse' ? patch.positions[j] : offset + j];
          if (x - x !== 0) throw new NonFiniteValueError(`after patching, tensor ${JSON.stringify(src.name)} holds ${x}: the payload's exact bits make a weight NaN or infinite, which no valid payload does; the patch was undone and the model is unchanged: rebuild it or fetch the full model`);
        }
      }
    }
    before += len;
  }
  target.update(w, done, open);
  base?.update(w, open, n);
  target.update(w, open, n);
}

function overflow(name: string, found: number): NonFiniteValueError {
  return new NonFiniteValueError(`after patching, tensor ${JSON.stringify(name)} holds ${found} where a finite weight was (the payload overflows float32); the patch was undone and the model is unchanged: the payload is inconsistent, rebuild it or fetch the full model`);
}

/**
 * Undo what {@link patchAndHash} wrote into `w`, bit for bit: the applied part is decoded again
 * (only that part: a fault the pass stopped at is not decoded again) and subtracted, then the
 * logged old bits are put back.
 */
function undoPatchWrites(w: Float32Array, rec: PatchWrites): void {
  if (rec.applied > 0) {
    const whole = rec.src.kind === 'hash' || rec.src.kind === 'lowrank' || rec.src.kind === 'composite';
    for (const { patch, offset } of rec.src.chunks(rec.applied)) subtractRange(w, patch, offset, 0, whole ? rec.applied : pieceLength(patch, w.length));
  }
  rec.log.restore(w);
}

async function resolveHasher(h: ApplyOptions['hasher']): Promise<Hasher> {
  if (h && typeof h === 'object') return h;
  return getHasher(h ? { prefer: h } : undefined);
}

/**
 * Check that a decoded payload fits the store's model (names and shapes) without writing.
 * @throws ModelMismatchError
 */
export function checkPayloadFitsModel(payload: { patches: readonly { name: string; shape: readonly number[]; grid?: StorageGrid }[] }, store: WeightStore): void {
  const shapes = new Map(store.list().map((t) => [t.name, t.shape] as const));
  for (const p of payload.patches) {
    const shape = shapes.get(p.name);
    if (!shape) {
      const known = [...shapes.keys()];
      throw new ModelMismatchError(
        `payload patches tensor ${JSON.stringify(p.name)}, which this model does not have (it has ${known.length} tensors, e.g. ${known.slice(0, 3).map((n) => JSON.stringify(n)).join(', ')}): the payload was built for another architecture; fetch the full model or a payload for this one`,
        { tensor: p.name },
      );
    }
    if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
      throw new ModelMismatchError(
        `tensor ${JSON.stringify(p.name)} has shape [${shape.join(', ')}] in this model but the payload expects [${p.shape.join(', ')}]: the payload was built for another architecture; fetch the full model or a payload for this one`,
        { tensor: p.name, expected: p.shape, found: shape },
      );
    }
    const stored = p.grid && store.grid?.(p.name);
    if (stored && !sameGrid(stored, p.grid)) {
      throw new ModelMismatchError(
        `tensor ${JSON.stringify(p.name)} is stored as ${describeGrid(stored)} in this model but the payload rounds it onto ${describeGrid(p.grid)}: the payload was built for another encoding of the model; fetch the full model or a payload for this one`,
        { tensor: p.name, expected: p.grid, found: stored },
      );
    }
  }
}

/**
 * Stages 1-2 without a model: size cap, signature policy, bounded decode. Use it to refuse a bad
 * payload before touching anything, then {@link applyVerifiedPayload}.
 *
 * @throws PayloadTooLargeError, SignatureError, PayloadFormatError, UnsupportedVersionError, NonFiniteValueError, UsageError
 */
export async function verifyPayload(payloadBytes: Uint8Array, options: SignaturePolicy & DecodeOptions = {}): Promise<VerifiedPayload> {
  const opened = await openSignedPayload(payloadBytes, options);
  const payload = openPayload(opened.payload, options);
  const verified: VerifiedPayload = Object.freeze({ payload, signature: opened.signature, byteLength: payloadBytes.length });
  verifiedPayloads.add(verified);
  return verified;
}

/**
 * Verify `payloadBytes` (a payload, or a signed envelope) against the model in `store` and
 * patch it in place.
 *
 * On any error the store's values are exactly as before (restored from the undo log if the
 * failure came after writing, and the previous version made current again if it came after
 * the commit) and a typed {@link NeuralDiffError} says what to do.
 */
export async function applyPayload(store: WeightStore, payloadBytes: Uint8Array, options: ApplyOptions = {}): Promise<ApplyResult> {
  return applyVerifiedPayload(store, await verifyPayload(payloadBytes, options), options);
}

/** {@link applyPayload} for the result of {@link verifyPayload}. */
export async function applyVerifiedPayload(store: WeightStore, verified: VerifiedPayload, options: ApplyOptions = {}): Promise<ApplyResult> {
  if (!verifiedPayloads.has(verified)) {
    throw new UsageError('applyVerifiedPayload takes the object verifyPayload returned, found another: call verifyPayload(bytes, options) first, or applyPayload(store, bytes, options)');
  }
  const keys = parseTrustedKeys(options.trustedKeys);
  if ((options.requireSignature ?? keys.length > 0) && !(verified.signature.verified && keys.some((k) => k.keyId === verified.signature.keyId))) {
    throw new SignatureError(
      `this apply requires a payload signed by a trusted key, but it was verified ${verified.signature.verified ? `with key id ${verified.signature.keyId}, which is not among this call's trusted keys` : 'without a signature check'}: pass the same trustedKeys to verifyPayload and applyVerifiedPayload`,
      { keyId: verified.signature.keyId },
    );
  }
  return applyChecked(store, verified.payload, verified.signature, options);
}

/**
 * {@link applyPayload} for a payload already decoded with `decodePayload`. It cannot check a
 * signature (the signed bytes are gone): with a signature policy set it refuses; use
 * {@link applyPayload} or {@link verifyPayload} + {@link applyVerifiedPayload} then.
 */
export async function applyDecodedPayload(store: WeightStore, payload: Payload, options: ApplyOptions = {}): Promise<ApplyResult> {
  if (options.requireSignature || (options.trustedKeys?.length ?? 0) > 0) {
    throw new UsageError('applyDecodedPayload cannot check a signature (it gets a decoded payload, not the signed bytes): pass the bytes to applyPayload, or use verifyPayload + applyVerifiedPayload');
  }
  return applyChecked(store, { header: payload.header, patches: payload.patches.map(patchSource) }, { signed: false, verified: false }, options);
}

async function applyChecked(store: WeightStore, payload: OpenedPayload, signature: SignatureCheck, options: ApplyOptions): Promise<ApplyResult> {
  const { header } = payload;
  if (options.expectedModelId !== undefined && header.modelId !== options.expectedModelId) {
    throw new ModelMismatchError(
      `payload is for model ${JSON.stringify(header.modelId)}, this device holds ${JSON.stringify(options.expectedModelId)}: nothing was written. Either the payload was built for another model (fetch the payload published for ${JSON.stringify(options.expectedModelId)}), or the build server gave it the wrong id: build it again with --model-id ${JSON.stringify(options.expectedModelId)} (\`ndiff release\` keeps it in its record) and keep that id for every later update`,
      { expected: options.expectedModelId, found: header.modelId },
    );
  }
  const sequences = options.sequenceStore;
  const recorded = sequences ? await readRecordedSequence(sequences, header.modelId) : undefined;
  checkNotStale(header, recorded);
  checkPayloadFitsModel(payload, store);
  if (store.prepare) await store.prepare();
  const hasher = await resolveHasher(options.hasher);
  let clock: number | undefined;
  const now = () => (clock ??= (options.now ?? Date.now)());

  // Base check, first part, before anything is written: the tensors the payload does not write,
  // hashed, or vouched for by the store (recorded digests). The tensors it writes are always
  // hashed from the values about to be patched (a store reading from disk reads them once).
  const tensors = store.list();
  const patched = new Set(payload.patches.map((p) => p.name));
  const digests = new Map<string, string>();
  let vouched = 0;
  for (const t of tensors) {
    if (patched.has(t.name)) continue;
    const known = store.digest?.(t.name);
    if (known !== undefined) vouched++;
    digests.set(t.name, known ?? tensorDigest(hasher, t.name, t.shape, readForDigest(store, t.name)));
  }
  const baseCheck = { hashedTensors: tensors.length - vouched, recordedTensors: vouched };
  const result = (status: ApplyResult['status'], changedTensors: string[], writtenValues: number): ApplyResult => ({
    status,
    baseFingerprint: header.baseFingerprint,
    targetFingerprint: header.targetFingerprint,
    sequence: header.sequence,
    changedTensors,
    writtenValues,
    payload,
    signature,
    baseCheck,
    ...(recorded !== undefined ? { previousSequence: recorded } : {}),
    sequenceRecorded: false,
  });
  const record = async (res: ApplyResult): Promise<ApplyResult> => {
    if (!sequences || (recorded !== undefined && header.sequence <= recorded)) return res;
    try {
      await sequences.set(header.modelId, header.sequence, { fingerprint: header.targetFingerprint });
    } catch (e) {
      throw new StateStoreError(
        `the model is now ${short(header.targetFingerprint)} (sequence ${header.sequence}), but recording sequence ${header.sequence} in the device's sequence store failed (${(e as Error).message}): until it is recorded, older payloads are not refused as replays; fix the store (disk full? permissions?) and run the same apply again: it reports already applied and records the sequence`,
        { modelId: header.modelId, sequence: header.sequence, cause: (e as Error).message, applied: true },
      );
    }
    return { ...res, sequenceRecorded: true };
  };
  // The patched tensors not hashed yet, hashed from their current values (nothing is written).
  const hashUnpatched = () => {
    for (const p of payload.patches) if (!digests.has(p.name)) digests.set(p.name, tensorDigest(hasher, p.name, p.shape, store.values(p.name)));
  };
  // The model's fingerprint against the payload, once every base digest is known: already the
  // target, or refused (replay, expiry, not the base, a payload that contradicts itself), or on.
  const decide = (): 'already-applied' | 'apply' => {
    const modelFingerprint = combineDigests(hasher, digests);
    if (modelFingerprint === header.targetFingerprint) return 'already-applied';
    checkNotReplayed(header, recorded, modelFingerprint);
    checkNotExpired(header, now());
    // The model must be the payload's base, and (per part) every tensor about to be written the
    // one the payload was built against: with bf matching, a differing b means the payload
    // contradicts itself.
    const differing = payload.patches.filter((p) => digests.get(p.name) !== p.baseDigest).map((p) => p.name);
    if (modelFingerprint !== header.baseFingerprint) {
      // A payload built before TF.js folders had a frame in their fingerprint (docs/FORMAT.md,
      // section 14): refused, saying so, since it was never checked against this graph.
      if (digests.has('tfjs:frame')) {
        const weightsOnly = new Map(digests);
        weightsOnly.delete('tfjs:frame');
        const withoutFrame = combineDigests(hasher, weightsOnly);
        if (withoutFrame === header.baseFingerprint || withoutFrame === header.targetFingerprint) {
          const which = withoutFrame === header.baseFingerprint
            ? `payload targets base ${short(header.baseFingerprint)}, which is this model's fingerprint without its frame`
            : `payload targets ${short(header.targetFingerprint)}, which is this model's fingerprint without its frame (its weights are already that target)`;
          throw new BaseMismatchError(
            `${which} (tfjs:frame: topology, signature, integer tensors); the payload was built by a version of neural-diff whose TF.js fingerprints left the frame out, so it was never checked against this model's graph: rebuild it with this version (ndiff diff against this model), or fetch the full model`,
            { expected: header.baseFingerprint, found: modelFingerprint, differing, withoutFrame: true },
          );
        }
      }
      const where = differing.length
        ? `${differing.length} patched tensor(s) differ from the expected base (first: ${JSON.stringify(differing[0])})`
        : 'the patched tensors match but other tensors differ';
      throw new BaseMismatchError(
        `payload targets base ${short(header.baseFingerprint)}, this model is ${short(modelFingerprint)}; ${where}: fetch the full model, or the diff made for base ${short(modelFingerprint)}`,
        { expected: header.baseFingerprint, found: modelFingerprint, differing },
      );
    }
    if (differing.length) {
      throw new BaseMismatchError(
        `this model is the payload's base ${short(header.baseFingerprint)}, but ${differing.length} patched tensor(s) differ from the payload's own per-tensor base digests (first: ${JSON.stringify(differing[0])}): the payload contradicts itself (a faulty build or a tampered payload); nothing was written: fetch the payload again or rebuild it`,
        { expected: header.baseFingerprint, found: modelFingerprint, differing },
      );
    }
    return 'apply';
  };

  // Base check, second part. When the rest of the model is the payload's base (its digests with
  // the payload's own base digests for the patched tensors give bf) and the model being the base
  // would not be refused (replay, expiry), the patched tensors are hashed as the base in the pass
  // that patches them, region by region, and the pass stops at the first tensor that is not
  // the base: its writes are undone before anything else is decided. Otherwise they are hashed
  // first, and the model decided on, before anything is written.
  const predicted = new Map(digests);
  for (const p of payload.patches) predicted.set(p.name, p.baseDigest);
  let fused = header.baseFingerprint !== header.targetFingerprint && combineDigests(hasher, predicted) === header.baseFingerprint;
  if (fused) {
    try {
      checkNotReplayed(header, recorded, header.baseFingerprint);
      checkNotExpired(header, now());
    } catch {
      fused = false;
    }
  }
  if (!fused) {
    hashUnpatched();
    if (decide() === 'already-applied') return record(result('already-applied', [], 0));
  }

  // Apply with an undo log. Each patch is decoded again a piece at a time; its log keeps only
  // the exceptions (where subtracting the delta again would not give the old bits back), and
  // undoing decodes the pieces once more.
  const undo: PatchWrites[] = [];
  // Before a commit, a store may forget the patched values instead (its stored copy is the base);
  // after one, only the undo log brings the base back.
  const restore = (forget = true) => {
    for (const rec of undo) if (!(forget && store.forget?.(rec.src.name))) undoPatchWrites(store.values(rec.src.name), rec);
  };
  const targets = new Map<string, string>();
  let written = 0;
  let failure: { error: unknown } | undefined;
  // The patched tensors not yet settled (see WeightStore.settled). A store that prepares its
  // commit as tensors settle gets them in its own order (the order of its files), so what it
  // prepares is ready as early as can be; the patches touch distinct tensors, so the order
  // changes nothing else.
  const pending = new Set(payload.patches.map((p) => p.name));
  let order = payload.patches;
  if (store.settled) {
    const position = new Map(tensors.map((t, i) => [t.name, i]));
    order = [...order].sort((a, b) => (position.get(a.name) as number) - (position.get(b.name) as number));
  }
  try {
    for (const src of order) {
      const rec: PatchWrites = { src, log: new ExceptionLog(), applied: 0 };
      undo.push(rec);
      const base = fused ? tensorDigestStream(hasher, src.name, src.shape) : undefined;
      const target = tensorDigestStream(hasher, src.name, src.shape);
      patchAndHash(store.values(src.name), src, rec, base, target);
      const reached = target.digest();
      targets.set(src.name, reached);
      written += src.written;
      if (base) {
        const d = base.digest();
        digests.set(src.name, d);
        if (d !== src.baseDigest) break; // not the base: decided below, once undone
      }
      if (store.settled && reached === src.targetDigest) {
        pending.delete(src.name);
        await store.settled(src.name, pending);
      }
    }
  } catch (e) {
    failure = { error: e };
  }
  if (fused || failure) {
    // A refusal from here on comes after the writes are undone, as if nothing had been written.
    let next: 'already-applied' | 'apply' = 'apply';
    if (fused) {
      const complete = !failure && payload.patches.every((p) => digests.has(p.name));
      if (!complete) restore();
      try {
        hashUnpatched();
        next = decide();
      } catch (e) {
        if (complete) restore();
        throw e;
      }
      if (next === 'already-applied') {
        if (complete) restore();
        return record(result('already-applied', [], 0));
      }
    } else restore();
    if (failure) throw failure.error;
  }

  const changed = payload.patches.map((p) => p.name);
  try {
    const after = new Map(digests);
    const wrong: string[] = [];
    for (const p of payload.patches) {
      const d = targets.get(p.name) as string;
      after.set(p.name, d);
      if (d !== p.targetDigest) wrong.push(p.name);
    }
    const targetFingerprint = combineDigests(hasher, after);
    if (wrong.length || targetFingerprint !== header.targetFingerprint) {
      throw new TargetMismatchError(
        `after patching, the model is ${short(targetFingerprint)} but the payload promised ${short(header.targetFingerprint)}` +
          (wrong.length ? ` (${wrong.length} tensor(s) differ, first ${JSON.stringify(wrong[0])})` : '') +
          `; the patch was undone and the model is unchanged: the payload is inconsistent, rebuild it or fetch the full model`,
        { expected: header.targetFingerprint, found: targetFingerprint, wrong },
      );
    }
    if (store.commit) await store.commit(changed, { digests: after, fingerprint: targetFingerprint });
  } catch (e) {
    restore();
    if (e instanceof NeuralDiffError) throw e;
    throw new NeuralDiffError('ND_COMMIT_FAILED', `saving the patched model failed (${(e as Error).message}); the weights in memory were restored: retry, or fetch the full model`, { cause: e });
  }
  const modelFingerprint = header.baseFingerprint;

  // Committed. From here a failure must bring back the previous version, in memory and in the store.
  const applied = result('applied', changed, written);
  const goBack = async (why: string): Promise<void> => {
    restore(false);
    try {
      if (isTwoPhase(store)) await store.revertCommit();
      else if (store.commit) await store.commit(changed, { digests, fingerprint: modelFingerprint });
    } catch (e) {
      throw new NeuralDiffError(
        'ND_ROLLBACK_FAILED',
        `${why}, and going back to the previous version failed too (${(e as Error).message}): the weights in memory are the previous version, the stored copy may be the new one; run the apply again (a TF.js folder finishes its rollback on the next apply) or restore the model from the full download`,
        { cause: e },
      );
    }
  };
  if (options.healthCheck) {
    let healthy = false;
    let cause: unknown;
    try {
      healthy = (await options.healthCheck({ store, result: applied })) !== false;
    } catch (e) {
      cause = e;
    }
    if (!healthy) {
      const found = cause === undefined ? 'it returned false' : `it failed: ${(cause as Error)?.message ?? String(cause)}`;
      await goBack(`the health check rejected the updated model ${short(header.targetFingerprint)} (${found})`);
      throw new HealthCheckError(
        `the health check rejected the updated model ${short(header.targetFingerprint)} (sequence ${header.sequence}): expected it to pass, ${found}; the update was rolled back and the model is ${short(header.baseFingerprint)} again: report the payload to its publisher, and keep the current model`,
        { target: header.targetFingerprint, base: header.baseFingerprint, cause: cause === undefined ? undefined : (cause as Error)?.message ?? String(cause) },
      );
    }
  }
  if (isTwoPhase(store)) {
    try {
      await store.confirmCommit();
    } catch (e) {
      const msg = `confirming the update failed (${(e as Error).message})`;
      await goBack(msg);
      throw new NeuralDiffError('ND_COMMIT_FAILED', `${msg}; the update was rolled back and the model is ${short(header.baseFingerprint)} again: retry, or fetch the full model`, { cause: e });
    }
  }
  return record(applied);
}
