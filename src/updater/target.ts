/**
 * Where the device's model lives, as the updater sees it: read its fingerprint, apply a payload,
 * install a full package. Node and Electron have file targets for TF.js folders and ONNX files
 * (src/io/updater/targets.ts, crash-safe through the existing appliers); {@link weightStoreTarget}
 * serves a model held in memory (a browser tab, React Native) through any {@link WeightStore}.
 */
import { applyPayload } from '../apply/apply.ts';
import type { SequenceStore } from '../apply/freshness.ts';
import type { PublicKeyInput } from '../apply/signature.ts';
import { HealthCheckError, ModelMismatchError, TargetMismatchError } from '../core/errors.ts';
import { isStructuralPayload } from '../apply/rebuild.ts';
import { fingerprintStore } from '../core/fingerprint.ts';
import { getHasher } from '../core/hasher.ts';
import type { WeightStore } from '../core/weight-store.ts';

/** Decides, after an update is in place and before it is kept, whether the model works. */
export type UpdateHealthCheck = (info: { kind: 'payload' | 'full'; version: number; fingerprint: string }) => boolean | void | Promise<boolean | void>;

/** What {@link ModelTarget.applyPayload} may return. */
export interface TargetApplyResult {
  /** Said to the device's owner; none refuses the payload (e.g. a data file the new version no longer names kept because another model names it). */
  warnings?: string[];
}

/** What the updater passes to {@link ModelTarget.applyPayload}. */
export interface TargetApplyOptions {
  trustedKeys: readonly PublicKeyInput[];
  expectedModelId: string;
  sequenceStore: SequenceStore;
  now: () => number;
  /** Runs once the new version is in place; false or a throw rolls back (HealthCheckError). */
  healthCheck?: () => boolean | void | Promise<boolean | void>;
}

/** What the updater passes to {@link ModelTarget.installPackage}. */
export interface TargetInstallOptions {
  modelId: string;
  /** The fingerprint the package must have: refused (TargetMismatchError) before the switch otherwise. */
  fingerprint: string;
  /** Runs once the new version is in place; false or a throw rolls back (HealthCheckError). */
  healthCheck?: () => boolean | void | Promise<boolean | void>;
}

/** A file of a full package, verified against the manifest. */
export interface PackageFileBytes {
  path: string;
  bytes: Uint8Array;
}

/**
 * How {@link ModelTarget.settlePending} finished an update an earlier run switched in and never
 * confirmed (killed during its health check).
 */
export interface PendingUpdateOutcome {
  /** `confirmed`: the version in place stays; `rolled-back`: the previous version is back. */
  outcome: 'confirmed' | 'rolled-back';
  /** The health check run on it now (`none`: the updater has none, and the interrupted update awaited none). */
  healthCheck: 'passed' | 'failed' | 'none';
  /** Why the health check failed. */
  why?: string;
  /** What was found and done, one sentence each. */
  actions: string[];
}

/** The health check {@link ModelTarget.settlePending} runs on the version in place (`kind`: how it was switched in). */
export type PendingCheck = (info: { kind: 'payload' | 'full'; fingerprint: string }) => boolean | void | Promise<boolean | void>;

/** The device's model, for the updater. */
export interface ModelTarget {
  /** `tfjs` (a model.json folder), `onnx` (a .onnx file), `tflite` (a .tflite file), `safetensors` (a .safetensors file), `gguf` (a .gguf model, patched in place) or `weights` (any store: installs need the app's help). */
  readonly kind: 'tfjs' | 'onnx' | 'tflite' | 'safetensors' | 'gguf' | 'weights';
  /**
   * Whether it installs a full package (default true). False for a model too large to hold whole
   * in memory or twice on the device (a `.gguf` file): the updater then plans payloads only, and
   * refuses, saying why and what to do, when only the full model would reach the newest version.
   */
  readonly installs?: boolean;
  /**
   * Whether it takes structural payloads (format v7: the model's files rebuilt). Default: true,
   * except for kind `weights`. The updater never downloads one for a target that cannot: it plans
   * around them (the full package instead).
   */
  readonly rebuilds?: boolean;
  /**
   * Finish or undo an install a crash interrupted, then give the fingerprint of the model held;
   * undefined when there is none or it cannot be read (the updater then installs the full model).
   * With `recover: false` (a check that changes nothing: `Updater.check`) nothing is finished
   * or undone: the fingerprint of the model in place is read as it is.
   */
  fingerprint(options?: { recover?: boolean }): Promise<string | undefined>;
  /**
   * Finish an update an earlier run switched in and never confirmed (the process was killed
   * during its health check), before the fingerprint is read: `healthCheck` passes, it is
   * confirmed; fails, rolled back; absent, it is refused (`PendingUpdateError`, nothing changed)
   * when that update awaited a health check, else rolled back. Undefined when there was none.
   * Targets whose model lives in memory have nothing to finish and leave it out.
   */
  settlePending?(healthCheck: PendingCheck | undefined): Promise<PendingUpdateOutcome | undefined>;
  /** Whether an earlier run left an update to finish (its journal, or a full install's kept model), read only: for a check that changes nothing. */
  hasPending?(): Promise<boolean>;
  /**
   * Apply one verified payload, crash-safely, recording its sequence in `sequenceStore`; what it
   * did that the device's owner should know (a data file another model names, kept) comes back
   * as warnings, which the updater reports on the step.
   */
  applyPayload(bytes: Uint8Array, options: TargetApplyOptions): Promise<void | TargetApplyResult>;
  /** Replace the model with a full package, crash-safely (the previous one kept until the health check passes). */
  installPackage(files: readonly PackageFileBytes[], options: TargetInstallOptions): Promise<void>;
}

/** Options of {@link weightStoreTarget}. */
export interface WeightStoreTargetOptions {
  /** The model in memory (e.g. a `MemoryWeightStore`, or the live tfjs model's store); undefined when none is loaded. */
  store: () => WeightStore | undefined;
  /**
   * Load a full package as the app's model (e.g. `tf.loadGraphModel` from the files in memory)
   * and return its store; the updater checks its fingerprint. Keep the previous model until
   * `commit` is called, and drop the new one on `discard`.
   */
  install: (files: readonly PackageFileBytes[]) => Promise<{ store: WeightStore; commit(): void | Promise<void>; discard(): void | Promise<void> }>;
}

/**
 * A target for a model held in memory. Payloads go through `applyPayload` (in place, undone on
 * any refusal or failed health check); full packages through the app's `install`. Nothing here
 * survives a reload: persist the model yourself (OPFS, IndexedDB) if it must.
 */
export function weightStoreTarget(options: WeightStoreTargetOptions): ModelTarget {
  return {
    kind: 'weights',
    rebuilds: false,
    async fingerprint() {
      const store = options.store();
      if (!store) return undefined;
      try {
        if (store.prepare) await store.prepare();
        return fingerprintStore(await getHasher(), store).fingerprint;
      } catch {
        return undefined;
      }
    },
    async applyPayload(bytes, o) {
      const store = options.store();
      if (!store) throw new TargetMismatchError('no model is loaded: the updater installs the full model instead');
      if (isStructuralPayload(bytes)) {
        throw new ModelMismatchError('this payload changes the model\'s structure (a structural payload, format v7): it rebuilds model files, so a model held in memory cannot take it; the updater installs the full model instead (keep the model in files, with a file target, to take such payloads), and a model loaded from files is reloaded from them after the rebuild', { structural: true });
      }
      await applyPayload(store, bytes, { trustedKeys: o.trustedKeys, expectedModelId: o.expectedModelId, sequenceStore: o.sequenceStore, now: o.now, ...(o.healthCheck ? { healthCheck: o.healthCheck } : {}) });
    },
    async installPackage(files, o) {
      const next = await options.install(files);
      if (next.store.prepare) await next.store.prepare();
      const found = fingerprintStore(await getHasher(), next.store).fingerprint;
      if (found !== o.fingerprint) {
        await next.discard();
        throw new TargetMismatchError(`the full package loaded as model ${found}, the manifest promises ${o.fingerprint}: the package and the manifest disagree (a faulty release); the previous model is kept`, { expected: o.fingerprint, found });
      }
      let healthy = true;
      let cause: unknown;
      try {
        healthy = (await o.healthCheck?.()) !== false;
      } catch (e) {
        healthy = false;
        cause = e;
      }
      if (!healthy) {
        await next.discard();
        throw new HealthCheckError(`the health check rejected the full model ${o.fingerprint} (${cause === undefined ? 'it returned false' : `it threw: ${(cause as Error)?.message ?? String(cause)}`}); the previous model is kept`, { target: o.fingerprint });
      }
      await next.commit();
    },
  };
}
