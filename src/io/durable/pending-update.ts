/**
 * An unconfirmed switch: an update whose new version was switched into place but never confirmed
 * or rolled back, because the process was killed (or the power went) between its switch and its
 * confirmation, usually while its health check ran. The model then runs the new version, and a
 * kept previous version and a journal wait beside it.
 *
 * Every command that meets one finishes it here, the same way (docs/guides/safety.md), before it
 * reads the model's fingerprint or applies anything, and says which way it went:
 *
 * - with a health check of its own (`--health-check`, `healthCheck`), it runs it on the version
 *   in place: passed, the update is confirmed; failed, it is rolled back;
 * - without one, if the interrupted update had a health check to pass, it refuses
 *   ({@link PendingUpdateError}), nothing changed: neither keeping a version no check has passed
 *   nor silently putting back the previous one while the device reported the new one;
 * - without one, if the interrupted update had none either (it was killed in the instant between
 *   its switch and its confirmation), the switch is rolled back, as before, and reported.
 *
 * Imports no model format: the TF.js folder journal (src/io/tfjs/folder-journal.ts), the file
 * journal (weights-file-update.ts) and the full install (src/io/updater/targets.ts) each say how
 * to confirm and how to roll back.
 */
import { PendingUpdateError } from '../../core/errors.ts';

/** The part of a recovery's report ({@link RecoveryReport}) a settlement fills in. */
interface SettlementReport {
  actions: string[];
  rolledBack: boolean;
  pending?: PendingSettlement;
}

/** The health check a command finishes an unconfirmed switch with: false or a throw rolls back. */
export type PendingHealthCheck = () => boolean | void | Promise<boolean | void>;

/** How a recovery treats an unconfirmed switch. */
export interface PendingOptions {
  /** The command's own health check, run on the version in place (module doc). */
  healthCheck?: PendingHealthCheck;
  /**
   * `settle` (default): as the module doc says. `roll-back`: always roll back, for the clean-up
   * of a failed write by the same apply that made it (its own switch, never confirmed by it).
   */
  unconfirmed?: 'settle' | 'roll-back';
}

/** An unconfirmed switch found by a recovery. */
export interface PendingSwitch {
  /** The model (a path), for messages. */
  model: string;
  /** What was switched in: `update 3fa2…`, `the rebuild of vad.onnx`. */
  what: string;
  /** True when the interrupted update was to be confirmed by a health check (its journal says so). */
  awaitsHealthCheck: boolean;
  /** Keep the version in place: the commit point of the confirmation (the rest of the clean-up may follow). */
  confirm(): Promise<void>;
  /** Put the previous version back. */
  rollBack(): Promise<void>;
}

/** What a recovery (`recoverModelDir`, `recoverGgufFile`, `recoverGgufInOpfs`) found and did. */
export interface RecoveryReport {
  /** One sentence per action (or file deliberately left alone); empty when the folder was clean. */
  actions: string[];
  /** True when an unconfirmed update was rolled back to the previous version. */
  rolledBack: boolean;
  /** Files deleted, relative to the folder. */
  removed: string[];
  /**
   * Set when an update switched in but never confirmed was found and finished: confirmed after
   * the command's health check passed, or rolled back (src/io/durable/pending-update.ts).
   */
  pending?: PendingSettlement;
}

/** How an unconfirmed switch ended, in a {@link RecoveryReport} (`pending`). */
export interface PendingSettlement {
  /** `confirmed`: the version in place is kept; `rolled-back`: the previous version is back. */
  outcome: 'confirmed' | 'rolled-back';
  /** The health check this command ran on it (`none`: it had none, and the interrupted update waited for none). */
  healthCheck: 'passed' | 'failed' | 'none';
  /** Why the health check failed. */
  why?: string;
}

/**
 * Finish the unconfirmed switch `pending` (module doc), record it in `report` (an action line,
 * `pending`, `rolledBack`: see `RecoveryReport`), and return how it ended.
 *
 * @throws PendingUpdateError when the interrupted update awaited a health check and `options`
 *   has none (nothing is changed).
 */
export async function settlePendingSwitch(pending: PendingSwitch, options: PendingOptions, report: SettlementReport): Promise<PendingSettlement> {
  const found = `${pending.what} was interrupted after its switch but before it was confirmed`;
  let settlement: PendingSettlement;
  if (options.unconfirmed === 'roll-back') {
    await pending.rollBack();
    settlement = { outcome: 'rolled-back', healthCheck: 'none' };
    report.actions.push(`${found}: rolled back to the previous version`);
  } else if (options.healthCheck) {
    let why: string | undefined;
    try {
      if ((await options.healthCheck()) === false) why = 'it returned false';
    } catch (e) {
      why = `it threw: ${(e as Error)?.message ?? String(e)}`;
    }
    if (why === undefined) {
      await pending.confirm();
      settlement = { outcome: 'confirmed', healthCheck: 'passed' };
      report.actions.push(`${found}: the health check passed now: confirmed, the new version stays`);
    } else {
      await pending.rollBack();
      settlement = { outcome: 'rolled-back', healthCheck: 'failed', why };
      report.actions.push(`${found}: the health check failed now (${why}): rolled back to the previous version`);
    }
  } else if (pending.awaitsHealthCheck) {
    throw new PendingUpdateError(
      `${pending.model}: ${found} (its health check never finished): the model runs the new version, switched in but never confirmed by a health check, and this command has no health check to finish it with. Nothing was changed: run the command again with the health check (ndiff: --health-check CMD; the library: healthCheck): the update is confirmed if it passes and rolled back if not (--health-check true keeps it, --health-check false rolls it back)`,
      { model: pending.model, pending: pending.what },
    );
  } else {
    await pending.rollBack();
    settlement = { outcome: 'rolled-back', healthCheck: 'none' };
    report.actions.push(`${found}: rolled back to the previous version (no health check was to confirm it)`);
  }
  report.pending = settlement;
  if (settlement.outcome === 'rolled-back') report.rolledBack = true;
  return settlement;
}
