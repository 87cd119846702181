/**
 * The device applier: verify a payload against the model in a {@link WeightStore}, patch the
 * weights in place, check the result, and undo everything if any check fails.
 *
 * Order of work (nothing is written before step 7):
 *  1. size cap, then the signature policy on the raw bytes (signature.ts): nothing is decoded
 *     before a required signature verified;
 *  2. bounded decode and structural validation of the payload (format.ts, msgpack-guard.ts);
 *  3. model id, and the sequence against the highest one applied (freshness.ts);
 *  4. every patch checked against the model: tensor exists, shape matches;
 *  5. model fingerprint: already the target → done (nothing written); a second update under an
 *     applied sequence, or an expired payload → refused; not the base → refused;
 *  6. patches applied with an undo log; target digests and fingerprint checked, undo on mismatch;
 *  7. `store.commit(changed)`; undo in memory if it throws;
 *  8. the optional health check; on failure the store goes back to the previous version
 *     (`revertCommit` of a two-phase store, else the restored values are committed again);
 *  9. `confirmCommit` of a two-phase store (it drops the previous version);
 * 10. the sequence is recorded in the sequence store.
 */
import { BaseMismatchError, HealthCheckError, ModelMismatchError, NeuralDiffError, NonFiniteValueError, SignatureError, StateStoreError, TargetMismatchError, UsageError } from '../core/errors.ts';
import { combineDigests, tensorDigest } from '../core/fingerprint.ts';
import { openPayload, patchSource, type DecodeOptions, type OpenedPayload, type Payload, type PatchSource, type TensorPatch } from '../core/format.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { describeGrid, sameGrid, type StorageGrid } from '../core/grid.ts';
import { applyTensorPatch, undoTensorPatch, type ExceptionBlock } from '../core/patch-math.ts';
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
 * one to keep (the TF.js folder store of src/io/model-dir-update.ts is one).
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

/** The values a piece of a patch applies to: a dense piece's range, else the whole tensor. */
function piece(w: Float32Array, patch: TensorPatch, offset: number): Float32Array {
  return patch.kind === 'dense' ? w.subarray(offset, offset + patch.values.length) : w;
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
      `payload is for model ${JSON.stringify(header.modelId)}, this device holds ${JSON.stringify(options.expectedModelId)}: fetch the payload published for ${JSON.stringify(options.expectedModelId)}`,
      { expected: options.expectedModelId, found: header.modelId },
    );
  }
  const sequences = options.sequenceStore;
  const recorded = sequences ? await readRecordedSequence(sequences, header.modelId) : undefined;
  checkNotStale(header, recorded);
  checkPayloadFitsModel(payload, store);
  const hasher = await resolveHasher(options.hasher);

  // Base check: per tensor first (to name the culprit), then the whole model. Tensors the
  // payload writes are always hashed, from the values about to be patched (a store reading
  // from disk reads them once); for the others the store may vouch (recorded digests).
  const patched = new Set(payload.patches.map((p) => p.name));
  const digests = new Map<string, string>();
  let vouched = 0;
  for (const t of store.list()) {
    const isPatched = patched.has(t.name);
    const known = isPatched ? undefined : store.digest?.(t.name);
    if (known !== undefined) vouched++;
    digests.set(t.name, known ?? tensorDigest(hasher, t.name, t.shape, isPatched ? store.values(t.name) : readForDigest(store, t.name)));
  }
  const modelFingerprint = combineDigests(hasher, digests);
  const baseCheck = { hashedTensors: digests.size - vouched, recordedTensors: vouched };
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
  if (modelFingerprint === header.targetFingerprint) return record(result('already-applied', [], 0));
  checkNotReplayed(header, recorded, modelFingerprint);
  checkNotExpired(header, (options.now ?? Date.now)());
  // The model must be the payload's base, and (per part) every tensor about to be written the
  // one the payload was built against: with bf matching, a differing b means the payload
  // contradicts itself.
  const differing = payload.patches.filter((p) => digests.get(p.name) !== p.baseDigest).map((p) => p.name);
  if (modelFingerprint !== header.baseFingerprint) {
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

  // Apply with an undo log; nothing above has written. Each patch is decoded again a piece at
  // a time; the log keeps per piece only the exceptions (where subtracting the delta again
  // would not give the old bits back), and undoing decodes the pieces once more.
  const undo: { src: PatchSource; parts: ExceptionBlock[][] }[] = [];
  const restore = () => {
    for (const { src, parts } of undo) {
      const w = store.values(src.name);
      let k = 0;
      for (const { patch, offset } of src.chunks()) {
        if (k === parts.length) break;
        undoTensorPatch(piece(w, patch, offset), { name: src.name, kind: 'inverse', patch, exceptions: parts[k++] });
      }
    }
  };
  const changed = payload.patches.map((p) => p.name);
  let written = 0;
  try {
    for (const src of payload.patches) {
      const w = store.values(src.name);
      const parts: ExceptionBlock[][] = [];
      undo.push({ src, parts });
      for (const { patch, offset } of src.chunks()) {
        const wp = piece(w, patch, offset);
        const rec = applyTensorPatch(wp, patch, true);
        if (!rec) continue;
        parts.push(rec.exceptions);
        // Codec x writes exact bits and logs nothing: check what it wrote.
        if (patch.codec === 'x' && !patch.grid) {
          const at = patch.kind === 'sparse' ? patch.positions : null;
          for (let j = 0, n = at ? at.length : wp.length; j < n; j++) {
            const x = wp[at ? at[j] : j];
            if (x - x !== 0) throw new NonFiniteValueError(`after patching, tensor ${JSON.stringify(src.name)} holds ${x}: the payload's exact bits make a weight NaN or infinite, which no valid payload does; the patch was undone and the model is unchanged: rebuild it or fetch the full model`);
          }
        }
        // A weight the patch made non-finite overflowed float32 (finite deltas can: 3e38 +
        // 3e38, or a low-rank product). Subtracting its delta again would not give the old value
        // back, so it is among the logged exceptions: checking those finds it. (A payload for a
        // model holding NaN or infinity in a patched tensor cannot be built: the encoder refuses
        // non-finite targets; so the device refuses them too.)
        for (const { positions } of rec.exceptions) {
          for (let j = 0; j < positions.length; j++) {
            const x = wp[positions[j]];
            if (x - x !== 0) {
              throw new NonFiniteValueError(`after patching, tensor ${JSON.stringify(src.name)} holds ${x} where a finite weight was (the payload overflows float32); the patch was undone and the model is unchanged: the payload is inconsistent, rebuild it or fetch the full model`);
            }
          }
        }
      }
      written += src.written;
    }
    const after = new Map(digests);
    const wrong: string[] = [];
    for (const p of payload.patches) {
      const d = tensorDigest(hasher, p.name, p.shape, store.values(p.name));
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

  // Committed. From here a failure must bring back the previous version, in memory and in the store.
  const applied = result('applied', changed, written);
  const goBack = async (why: string): Promise<void> => {
    restore();
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
      const found = cause === undefined ? 'it returned false' : `it threw: ${(cause as Error)?.message ?? String(cause)}`;
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
