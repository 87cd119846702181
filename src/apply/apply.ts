/**
 * The device applier: verify a payload against the model in a {@link WeightStore}, patch the
 * weights in place, check the result, and undo everything if any check fails.
 *
 * Order of work (nothing is written before step 4):
 *  1. bounded decode and structural validation of the payload (format.ts);
 *  2. every patch checked against the model: tensor exists, shape matches;
 *  3. base fingerprint of the model checked (per tensor, then whole);
 *  4. patches applied with an undo log;
 *  5. target digests of patched tensors and the target fingerprint checked; undo on mismatch;
 *  6. `store.commit(changed)`; undo in memory if it throws.
 */
import { BaseMismatchError, ModelMismatchError, NeuralDiffError, TargetMismatchError } from '../core/errors.ts';
import { combineDigests, tensorDigest } from '../core/fingerprint.ts';
import { decodePayload, shapeSize, type Payload, type DecodeOptions } from '../core/format.ts';
import { getHasher, type Hasher } from '../core/hasher.ts';
import { applyTensorPatch, undoTensorPatch, type UndoRecord } from '../core/patch-math.ts';
import type { WeightStore } from '../core/weight-store.ts';

export interface ApplyOptions extends DecodeOptions {
  /** Hash implementation: `'wasm'` (default where WebAssembly exists), `'pure'`, or a ready {@link Hasher}. */
  hasher?: Hasher | 'wasm' | 'pure';
  /** When set, refuse payloads whose model id differs. */
  expectedModelId?: string;
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
  payload: Payload;
}

function short(fp: string): string {
  return fp.slice(0, 8) + '…';
}

async function resolveHasher(h: ApplyOptions['hasher']): Promise<Hasher> {
  if (h && typeof h === 'object') return h;
  return getHasher(h ? { prefer: h } : undefined);
}

/**
 * Check that a decoded payload fits the store's model (names and shapes) without writing.
 * @throws ModelMismatchError
 */
export function checkPayloadFitsModel(payload: Payload, store: WeightStore): void {
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
    if (shapeSize(shape) !== p.shape.reduce((a, b) => a * b, 1)) throw new ModelMismatchError(`tensor ${p.name}: size mismatch`);
  }
}

/**
 * Verify `payloadBytes` against the model in `store` and patch it in place.
 *
 * On any error the store's values are exactly as before (restored from the undo log if the
 * failure came after writing) and a typed {@link NeuralDiffError} says what to do.
 */
export async function applyPayload(store: WeightStore, payloadBytes: Uint8Array, options: ApplyOptions = {}): Promise<ApplyResult> {
  const payload = decodePayload(payloadBytes, options);
  return applyDecodedPayload(store, payload, options);
}

/** {@link applyPayload} for a payload already decoded with `decodePayload`. */
export async function applyDecodedPayload(store: WeightStore, payload: Payload, options: ApplyOptions = {}): Promise<ApplyResult> {
  const { header } = payload;
  if (options.expectedModelId !== undefined && header.modelId !== options.expectedModelId) {
    throw new ModelMismatchError(
      `payload is for model ${JSON.stringify(header.modelId)}, this device holds ${JSON.stringify(options.expectedModelId)}: fetch the payload published for ${JSON.stringify(options.expectedModelId)}`,
      { expected: options.expectedModelId, found: header.modelId },
    );
  }
  checkPayloadFitsModel(payload, store);
  const hasher = await resolveHasher(options.hasher);

  // Base check: per tensor first (to name the culprit), then the whole model.
  const digests = new Map<string, string>();
  for (const t of store.list()) digests.set(t.name, tensorDigest(hasher, t.name, t.shape, store.values(t.name)));
  const modelFingerprint = combineDigests(hasher, digests);
  const result = (status: ApplyResult['status'], changedTensors: string[], writtenValues: number): ApplyResult => ({
    status,
    baseFingerprint: header.baseFingerprint,
    targetFingerprint: header.targetFingerprint,
    sequence: header.sequence,
    changedTensors,
    writtenValues,
    payload,
  });
  if (modelFingerprint === header.targetFingerprint) return result('already-applied', [], 0);
  if (modelFingerprint !== header.baseFingerprint) {
    const differing = payload.patches.filter((p) => digests.get(p.name) !== p.baseDigest).map((p) => p.name);
    const where = differing.length
      ? `${differing.length} patched tensor(s) differ from the expected base (first: ${JSON.stringify(differing[0])})`
      : 'the patched tensors match but other tensors differ';
    throw new BaseMismatchError(
      `payload targets base ${short(header.baseFingerprint)}, this model is ${short(modelFingerprint)}; ${where}: fetch the full model, or the diff made for base ${short(modelFingerprint)}`,
      { expected: header.baseFingerprint, found: modelFingerprint, differing },
    );
  }

  // Apply with an undo log; nothing above has written.
  const undo: UndoRecord[] = [];
  const restore = () => {
    for (let k = undo.length - 1; k >= 0; k--) undoTensorPatch(store.values(undo[k].name), undo[k]);
  };
  let written = 0;
  try {
    for (const p of payload.patches) {
      const w = store.values(p.name);
      undo.push(applyTensorPatch(w, p, true) as UndoRecord);
      written += p.kind === 'sparse' ? p.positions.length : w.length;
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
    if (store.commit) await store.commit(payload.patches.map((p) => p.name));
  } catch (e) {
    restore();
    if (e instanceof NeuralDiffError) throw e;
    throw new NeuralDiffError('ND_COMMIT_FAILED', `saving the patched model failed (${(e as Error).message}); the weights in memory were restored: retry, or fetch the full model`, { cause: e });
  }
  return result('applied', payload.patches.map((p) => p.name), written);
}
