/**
 * Typed errors. Every error a caller can act on is a subclass of {@link NeuralDiffError}
 * with a stable `code`, and a message that says what was expected, what was found and
 * what to do. The applier guarantees that when it throws one of these the model is
 * untouched (or restored byte for byte).
 */
export class NeuralDiffError extends Error {
  /** Stable machine-readable code, e.g. `ND_BASE_MISMATCH`: one of {@link NeuralDiffErrorCode}. */
  readonly code: NeuralDiffErrorCode;
  /** Structured detail for logs and programmatic handling. */
  readonly details: Record<string, unknown>;
  /**
   * @param code - the stable code (each subclass passes its own)
   * @param message - what was expected, what was found and what to do
   * @param details - structured detail for logs and programmatic handling
   */
  constructor(code: NeuralDiffErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** The bytes are not a well-formed payload (truncated, corrupt, hostile, or not a payload at all). */
export class PayloadFormatError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_PAYLOAD_FORMAT', message, details);
  }
}

/** The payload is larger than the limit the caller set for decoding. */
export class PayloadTooLargeError extends NeuralDiffError {
  /** @param message replaces the default words (for a limit that is not maxPayloadBytes). */
  constructor(found: number, limit: number, message?: string) {
    super(
      'ND_PAYLOAD_TOO_LARGE',
      message ?? `payload is ${found} bytes, the limit is ${limit} bytes: raise maxPayloadBytes if this payload is expected, otherwise discard it`,
      { found, limit },
    );
  }
}

/** The payload was written in a format version this applier does not read. */
export class UnsupportedVersionError extends NeuralDiffError {
  /** @param whatToDo replaces the default advice (update neural-diff, or ask for an older payload). */
  constructor(found: unknown, supported: readonly number[], whatToDo?: string) {
    super(
      'ND_UNSUPPORTED_VERSION',
      `payload format version ${String(found)} is not supported (this applier reads ${supported.join(', ')}): ${whatToDo ?? `update neural-diff on the device or ask the server for a v${supported[supported.length - 1]} payload`}`,
      { found, supported },
    );
  }
}

/** The payload targets a different base model than the one in the store. */
export class BaseMismatchError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_BASE_MISMATCH', message, details);
  }
}

/** The payload does not fit the model: unknown tensor, shape mismatch, position out of range. */
export class ModelMismatchError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_MODEL_MISMATCH', message, details);
  }
}

/** After patching, the weights did not hash to the target fingerprint; the patch was undone. */
export class TargetMismatchError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_TARGET_MISMATCH', message, details);
  }
}

/** A value in the payload or in the model is NaN or infinite. */
export class NonFiniteValueError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_NON_FINITE', message, details);
  }
}

/** The payload cannot be made to fit the requested byte budget. */
export class BudgetError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_BUDGET', message, details);
  }
}

/** A model on disk (or in another store) is missing files or is malformed. */
export class ModelFormatError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_MODEL_FORMAT', message, details);
  }
}

/**
 * A model folder's apply lock is held from where this process cannot tell whether its holder
 * still runs: another host sharing the folder (a network file system), or another PID namespace
 * on this machine (another container sharing the volume). It is not broken as stale; `details`
 * name the lock file, its holder's host and pid, and why (`reason`). A {@link ModelFormatError},
 * so callers that handle a held lock handle it too.
 */
export class LockHeldElsewhereError extends ModelFormatError {}

/** A signature is missing, invalid, or made with an untrusted key. */
export class SignatureError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_SIGNATURE', message, details);
  }
}

/** The payload is older than (or as old as) what the device already applied, or has expired. */
export class FreshnessError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_FRESHNESS', message, details);
  }
}

/** Wrong usage from the caller (bad option values, bad budget string). */
export class UsageError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_USAGE', message, details);
  }
}

/**
 * The health check run after an update (e.g. one inference) failed or threw: the update was
 * rolled back and the model is the previous version again.
 */
export class HealthCheckError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_HEALTH_CHECK', message, details);
  }
}

/**
 * A model holds an update that was switched in but never confirmed (the process was killed or
 * the power went while its health check ran), and the command meeting it has no health check
 * to finish it with: nothing was changed. `details.model` is the model; run the command again
 * with the health check (`--health-check`, `healthCheck`): the update is confirmed if it passes
 * and rolled back if not.
 */
export class PendingUpdateError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_PENDING_UPDATE', message, details);
  }
}

/**
 * The device's record of applied sequence numbers (its state file or store) cannot be read or
 * written. `details.applied` says whether the model was updated before the failure.
 */
export class StateStoreError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_STATE', message, details);
  }
}

/**
 * Training or evaluation data is missing or malformed (a `.npy` file that is not one, labels out
 * of range, counts that differ, inputs of the wrong shape). The model files are not involved.
 */
export class DataError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_DATA', message, details);
  }
}

/**
 * An optional dependency that this part of neural-diff needs is not installed (the trainers need
 * `@tensorflow/tfjs` and `@tensorflow/tfjs-backend-wasm`). `details.install` is the command.
 */
export class MissingDependencyError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_MISSING_DEPENDENCY', message, details);
  }
}

/**
 * Training gave nothing better than the base model on validation data (every run diverged, or
 * the best result is worse): nothing is shipped. `details.candidates` lists what was tried.
 */
export class NoImprovementError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_NO_IMPROVEMENT', message, details);
  }
}

/**
 * The ONNX graph uses an operator (or an operator's attribute or input combination) that the
 * tfjs executor of `neural-diff/train` does not implement, so the model cannot be trained (nothing
 * ran). `details` names the `op`, the `node`, the `domain` and the `opset` of the model.
 */
export class UnsupportedOperatorError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_UNSUPPORTED_OPERATOR', message, details);
  }
}

/**
 * A release file could not be downloaded intact from any mirror: every URL failed (network,
 * HTTP status, timeout), or what it served had the wrong length or SHA-256. `details.attempts`
 * lists each try. Nothing was applied from it.
 */
export class DownloadError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_DOWNLOAD', message, details);
  }
}

/**
 * Every `code` a {@link NeuralDiffError} can carry, so a caller can switch on it exhaustively.
 * The CLI maps each to an exit code (`ndiff --help` lists them).
 */
export type NeuralDiffErrorCode =
  /** {@link PayloadFormatError}: not a well-formed payload. */
  | 'ND_PAYLOAD_FORMAT'
  /** {@link PayloadTooLargeError}: larger than `maxPayloadBytes`. */
  | 'ND_PAYLOAD_TOO_LARGE'
  /** {@link UnsupportedVersionError}: a format version this applier does not read. */
  | 'ND_UNSUPPORTED_VERSION'
  /** {@link BaseMismatchError}: the model is not the payload's base. */
  | 'ND_BASE_MISMATCH'
  /** {@link ModelMismatchError}: another architecture, tensor, shape or model id. */
  | 'ND_MODEL_MISMATCH'
  /** {@link TargetMismatchError}: the patched weights missed the promised target (undone). */
  | 'ND_TARGET_MISMATCH'
  /** {@link NonFiniteValueError}: NaN or infinity in the payload or the model. */
  | 'ND_NON_FINITE'
  /** {@link BudgetError}: the byte budget cannot be met. */
  | 'ND_BUDGET'
  /** {@link ModelFormatError}: model files missing or malformed. */
  | 'ND_MODEL_FORMAT'
  /** {@link SignatureError}: signature missing, invalid or untrusted. */
  | 'ND_SIGNATURE'
  /** {@link FreshnessError}: stale, replayed or expired. */
  | 'ND_FRESHNESS'
  /** {@link UsageError}: wrong options from the caller. */
  | 'ND_USAGE'
  /** {@link HealthCheckError}: the health check failed (rolled back). */
  | 'ND_HEALTH_CHECK'
  /** {@link PendingUpdateError}: an unconfirmed update waits for its health check (nothing changed). */
  | 'ND_PENDING_UPDATE'
  /** {@link StateStoreError}: the device's sequence store cannot be read or written. */
  | 'ND_STATE'
  /** {@link DataError}: training or evaluation data missing or malformed. */
  | 'ND_DATA'
  /** {@link MissingDependencyError}: an optional dependency is not installed. */
  | 'ND_MISSING_DEPENDENCY'
  /** {@link NoImprovementError}: training gave nothing better than the base on validation. */
  | 'ND_NO_IMPROVEMENT'
  /** Saving the patched model failed; the weights were restored. */
  | 'ND_COMMIT_FAILED'
  /** Restoring the previous model after a failure failed too: the store needs attention. */
  | 'ND_ROLLBACK_FAILED'
  /** {@link UnsupportedOperatorError}: an ONNX operator the tfjs executor does not implement. */
  | 'ND_UNSUPPORTED_OPERATOR'
  /** Running an ONNX graph in the tfjs executor failed (a node read an undefined value, an operator threw). */
  | 'ND_ONNX_EXECUTION'
  /** {@link DownloadError}: a release file could not be downloaded intact from any mirror. */
  | 'ND_DOWNLOAD'
  /** The updater found no payload path and no full package left to reach the latest version (the device keeps its model). */
  | 'ND_NO_UPDATE_PATH'
  /** {@link TrainingWorkerError}: a training worker thread failed. */
  | 'ND_TRAINING_WORKER'
  /** {@link TrainingStepError}: a compiled training step failed after changing the optimizer's state. */
  | 'ND_TRAINING_STEP'
  /** {@link DiffWorkerError}: a worker thread coding a payload's chunks failed. */
  | 'ND_DIFF_WORKER';

/**
 * A training worker thread failed (could not load the model or its backend, threw during a step,
 * or exited): the run stops instead of waiting on it. The model is untouched; run again with
 * `threads: 1` (`--threads 1`) to train without workers, or fix what the message names.
 */
export class TrainingWorkerError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_TRAINING_WORKER', message, details);
  }
}

/**
 * A worker thread coding a GGUF payload's chunks on the build side threw or exited: the diff
 * stops (nothing is written). Diff again with one thread (`threads: 1`, `--threads 1`), or fix
 * what the message names (often memory).
 */
export class DiffWorkerError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_DIFF_WORKER', message, details);
  }
}

/**
 * A compiled training step failed after some of its kernels had written the optimizer's state in
 * place (the fused Adam's moments): the weights are those of before the step, but running the step
 * again would count its gradient twice in those moments, so training stops here instead of going
 * on silently wrong. `details.variables` names them; train again from the weights held (or the last
 * checkpoint), or with eager steps (`step: 'eager'`, `--step eager`).
 */
export class TrainingStepError extends NeuralDiffError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ND_TRAINING_STEP', message, details);
  }
}
