/**
 * The rows behind `ndiff report`: one per (update, method, budget). Benchmark rows
 * ({@link ResultRow}, as the keyword-spotting benchmark writes them in
 * examples/keyword-spotting/results/full.json) always carry an accuracy; the rows made from a
 * user's metrics files ({@link ReportRow}, see metrics.ts) may carry only how close the update
 * comes to the new version a team trained (a teacher run without labelled evaluation data).
 */
import { UsageError } from '../core/errors.ts';

/** Every method a report knows, in the order it lists them. */
export const REPORT_METHODS = ['sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain', 'lowbit', 'auto', 'topk', 'drop', 'lowrank', 'full', 'exact', 'zstd', 'ongrid'] as const;
/** A method of a report row. */
export type ReportMethod = (typeof REPORT_METHODS)[number];

/** The fields every report row has, whatever made it. */
export interface RowFields {
  /** Update number in the chain, 1-based. */
  update: number;
  method: ReportMethod;
  /** Budget as a percentage of the model as stored; null for `full`, `exact` and `zstd` (no budget). */
  budgetPct: number | null;
  /** Bytes a device downloads for this update (0: nothing shipped). */
  bytes: number;
  /** Accuracy on the classes known before this update (null: not measured). */
  accOld?: number | null;
  /** Accuracy on this update's new data (null: not measured). */
  accNew?: number | null;
  /** Full fine-tuning chain's accAll minus this chain's, same update (positive: behind full; null: no full chain). */
  driftFromFull?: number | null;
  /** Training time in seconds (null: not measured). */
  trainSeconds?: number | null;
  /** Trained toward a teacher (the new version a team trained) rather than from labels alone. */
  teacher?: boolean;
  /**
   * Made after the fact from the new version's weights (`ndiff diff`), not trained: a post-hoc
   * lowbit payload is another setting than a trained one of the same method and budget.
   */
  postHoc?: boolean;
  /** Share (0-1) of held-out predictions equal to the teacher's (null: not measured). */
  agreement?: number | null;
  /** Accuracy of the model the device held before this update, on the same data (null: not measured). */
  accBefore?: number | null;
  /** Agreement with the teacher of the model the device held before this update (null: not measured). */
  agreementBefore?: number | null;
  /**
   * The version the row's chain started from: devices that held it and took every update since
   * (the row is `update - start` updates into that chain). Absent: one chain from the first
   * model (0).
   */
  start?: number;
  /**
   * Share (0-1) of the evaluation examples the model at the chain's start got right that the
   * model after this update gets wrong (newly wrong, the chain's negative flips; null: not measured).
   */
  newlyWrong?: number | null;
  /** Optional free-form fields (e.g. update name, epochs). */
  [extra: string]: unknown;
}

/** One benchmark result: a row with its accuracy measured. */
export interface ResultRow extends RowFields {
  /** Accuracy (0-1) on the evaluation data of every class so far. */
  accAll: number;
}

/** A row as a report renders it: a benchmark row, or one metrics file. */
export interface ReportRow extends RowFields {
  /** Accuracy (0-1) on the evaluation data (null: the run had no labels to measure it). */
  accAll: number | null;
  /** The budget as it was asked for (`1%`, `40KB`): how the report labels it. */
  budget?: string | null;
  /** Mean absolute difference of the outputs from the teacher's (for outputs without classes); with `distance: 'kl'`, the mean KL(target || model) of a language model's next-token distributions instead. */
  meanAbsDiff?: number | null;
  /** What `meanAbsDiff` holds: `kl` for a GGUF payload measured through llama.cpp (absent: a mean absolute difference). */
  distance?: 'kl';
  /** The same for the model before the update. */
  meanAbsDiffBefore?: number | null;
  /** The teacher's own accuracy on the same data (null: not measured). */
  teacherAccAll?: number | null;
  /** Bytes of the teacher's weights as stored: what shipping it whole costs. */
  teacherBytes?: number | null;
  /** The file the row came from. */
  source?: string;
  /** `ndiff train --method auto`: the method it chose (the row's method), and how many candidates it trained (their time is the row's). */
  auto?: string;
  autoCandidates?: number;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const optionalNum = (v: unknown) => v === undefined || v === null || num(v);

/** Check one benchmark row's fields; `where` names it in errors. */
export function checkRowFields(row: Record<string, unknown>, where: string, accuracyRequired: boolean): void {
  if (!Number.isInteger(row.update) || (row.update as number) < 1) throw new UsageError(`${where}: "update" must be a positive integer, found ${JSON.stringify(row.update)}`);
  if (!REPORT_METHODS.includes(row.method as ReportMethod)) throw new UsageError(`${where}: "method" must be one of ${REPORT_METHODS.join(', ')}, found ${JSON.stringify(row.method)}`);
  if (row.budgetPct !== null && !num(row.budgetPct)) throw new UsageError(`${where}: "budgetPct" must be a number or null, found ${JSON.stringify(row.budgetPct)}`);
  if (!num(row.bytes) || (row.bytes as number) < 0) throw new UsageError(`${where}: "bytes" must be a number >= 0, found ${JSON.stringify(row.bytes)}`);
  if (accuracyRequired ? !num(row.accAll) : !optionalNum(row.accAll)) throw new UsageError(`${where}: "accAll" must be a finite number${accuracyRequired ? '' : ' or null'}, found ${JSON.stringify(row.accAll)}`);
  for (const k of ['accOld', 'accNew', 'driftFromFull', 'trainSeconds', 'agreement', 'accBefore', 'agreementBefore']) {
    if (!optionalNum(row[k])) throw new UsageError(`${where}: "${k}" must be a finite number or null, found ${JSON.stringify(row[k])}`);
  }
  if (row.start !== undefined && (!Number.isInteger(row.start) || (row.start as number) < 0 || (row.start as number) >= (row.update as number))) throw new UsageError(`${where}: "start" must be the version the chain started from, a whole number from 0 to update - 1 (${(row.update as number) - 1}), found ${JSON.stringify(row.start)}`);
  if (row.newlyWrong !== undefined && row.newlyWrong !== null && !(num(row.newlyWrong) && (row.newlyWrong as number) >= 0 && (row.newlyWrong as number) <= 1)) throw new UsageError(`${where}: "newlyWrong" must be a share from 0 to 1 or null, found ${JSON.stringify(row.newlyWrong)}`);
  for (const k of ['teacher', 'postHoc']) if (row[k] !== undefined && typeof row[k] !== 'boolean') throw new UsageError(`${where}: "${k}" must be true or false, found ${JSON.stringify(row[k])}`);
}

/**
 * Check parsed JSON is benchmark results: an array of result rows, each with its accuracy.
 * Errors name the source, the row and the field. (Metrics files of `ndiff train` and `ndiff
 * diff` are read by `reportRows`.)
 */
export function validateResults(data: unknown, source = 'results'): ResultRow[] {
  if (!Array.isArray(data)) throw new UsageError(`${source}: expected a JSON array of result rows, found ${data === null ? 'null' : typeof data}`);
  if (data.length === 0) throw new UsageError(`${source}: the results array is empty`);
  return data.map((r, i) => {
    const where = `${source}: row ${i}`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new UsageError(`${where} is not an object`);
    checkRowFields(r as Record<string, unknown>, where, true);
    return r as ResultRow;
  });
}
