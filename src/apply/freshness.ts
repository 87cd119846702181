/**
 * Freshness: refuse payloads older than (or as old as) what the device applied, and expired
 * ones. The device keeps the highest applied sequence per model id in a {@link SequenceStore}:
 * a state file on Node (src/io/durable/sequence-file.ts), anything the caller provides elsewhere
 * (AsyncStorage, IndexedDB, a row in the app's database).
 */
import { FreshnessError, StateStoreError } from '../core/errors.ts';
import type { PayloadHeader } from '../core/format.ts';

/** What the applier records with a sequence number (for diagnostics). */
export interface SequenceRecord {
  /** The model fingerprint the device holds after this update. */
  fingerprint: string;
}

/** Where a device keeps the highest payload sequence it applied, per model id. */
export interface SequenceStore {
  /** The highest sequence applied for `modelId`, or undefined if none was. */
  get(modelId: string): number | undefined | Promise<number | undefined>;
  /**
   * Record that `sequence` is now applied for `modelId`. Called only after the update was
   * committed and confirmed, and only with a sequence above the recorded one. Must be durable
   * when it resolves.
   */
  set(modelId: string, sequence: number, record: SequenceRecord): void | Promise<void>;
}

/** A {@link SequenceStore} in memory (tests; apps that persist it themselves). */
export class MemorySequenceStore implements SequenceStore {
  readonly sequences = new Map<string, number>();
  get(modelId: string): number | undefined {
    return this.sequences.get(modelId);
  }
  set(modelId: string, sequence: number): void {
    this.sequences.set(modelId, sequence);
  }
}

/** A fingerprint's first 8 hex chars, for messages. */
export function short(fp: string): string {
  return fp.slice(0, 8) + '…';
}

/** Read the recorded sequence, refusing anything that is not a non-negative integer. */
export async function readRecordedSequence(store: SequenceStore, modelId: string): Promise<number | undefined> {
  let v: unknown;
  try {
    v = await store.get(modelId);
  } catch (e) {
    throw new StateStoreError(
      `cannot read the applied sequence of model ${JSON.stringify(modelId)} from the device's sequence store (${(e as Error).message}): nothing was applied; fix the store (file permissions, storage) and retry`,
      { modelId, cause: (e as Error).message, applied: false },
    );
  }
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new StateStoreError(
      `the device's sequence store holds ${JSON.stringify(v)} for model ${JSON.stringify(modelId)}: expected a non-negative integer; nothing was applied: repair or restore the store (deleting it drops rollback protection)`,
      { modelId, found: v, applied: false },
    );
  }
  return v;
}

/** Refuse a sequence below the recorded one (checked before the model is read). */
export function checkNotStale(header: PayloadHeader, recorded: number | undefined): void {
  if (recorded !== undefined && header.sequence < recorded) {
    throw new FreshnessError(
      `payload sequence ${header.sequence} for model ${JSON.stringify(header.modelId)} is older than sequence ${recorded}, the highest this device has applied: it is a replayed or rolled-back update and was refused; fetch the current update (sequence above ${recorded}). To go back to an old model on purpose, publish it as a new update with a higher sequence`,
      { reason: 'stale', modelId: header.modelId, sequence: header.sequence, recorded },
    );
  }
}

/** Refuse a second, different update under the sequence already applied. */
export function checkNotReplayed(header: PayloadHeader, recorded: number | undefined, modelFingerprint: string): void {
  if (recorded !== undefined && header.sequence === recorded) {
    const back = modelFingerprint === header.baseFingerprint;
    throw new FreshnessError(
      back
        ? `payload sequence ${header.sequence} for model ${JSON.stringify(header.modelId)} was already applied on this device, yet the model it holds now (${short(modelFingerprint)}) is that payload's base, not its target: the device went back to a model older than the sequence it recorded (the app loaded its original files again?). Nothing was written: keep the updated model where the app loads it from (browser: model.save('indexeddb://NAME')), or install the full model`
        : `payload sequence ${header.sequence} for model ${JSON.stringify(header.modelId)} was already applied on this device, and this model (${short(modelFingerprint)}) is not that payload's target (${short(header.targetFingerprint)}): a second update under one sequence number is refused as a replay; publish the update with a sequence above ${recorded}`,
      { reason: back ? 'model-went-back' : 'replayed', modelId: header.modelId, sequence: header.sequence, recorded, model: modelFingerprint, target: header.targetFingerprint },
    );
  }
}

/** Refuse an expired payload: `expiresAt` is the first second it is no longer valid. */
export function checkNotExpired(header: PayloadHeader, nowMs: number): void {
  if (header.expiresAt === undefined) return;
  if (!Number.isFinite(nowMs)) throw new FreshnessError(`the device clock returned ${nowMs}: expected milliseconds since 1970; cannot check the payload's expiry, so it was refused: fix the clock source`, { reason: 'clock' });
  if (nowMs >= header.expiresAt * 1000) {
    const at = new Date(header.expiresAt * 1000).toISOString();
    const now = new Date(nowMs).toISOString();
    throw new FreshnessError(
      `payload for model ${JSON.stringify(header.modelId)} (sequence ${header.sequence}) expired at ${at} and the device clock says ${now}: an expired payload is refused (a withheld-update attack serves old ones); fetch a fresh payload. If the device clock is wrong, fix it first`,
      { reason: 'expired', modelId: header.modelId, sequence: header.sequence, expiresAt: header.expiresAt, now: nowMs },
    );
  }
}
