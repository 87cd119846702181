/**
 * The comparison results behind `ndiff report`: one row per (update, method, budget), as the
 * keyword-spotting benchmark writes them (examples/keyword-spotting/results/full.json).
 */
import { UsageError } from '../core/errors.ts';

export const REPORT_METHODS = ['sparse', 'hash', 'topk', 'drop', 'lowrank', 'full', 'zstd'] as const;
export type ReportMethod = (typeof REPORT_METHODS)[number];

export interface ResultRow {
  /** Update number in the chain, 1-based. */
  update: number;
  method: ReportMethod;
  /** Budget as a percentage of the float32 model; null for `full` and `zstd` (no budget). */
  budgetPct: number | null;
  /** Bytes a device downloads for this update. */
  bytes: number;
  /** Accuracy (0-1) on the evaluation data of every word so far. */
  accAll: number;
  /** Accuracy on the words known before this update. */
  accOld: number;
  /** Accuracy on this update's new data. */
  accNew: number;
  /** Full fine-tuning chain's accAll minus this chain's, same update (positive: behind full). */
  driftFromFull: number;
  trainSeconds: number;
  /** Optional free-form fields (e.g. update name, epochs). */
  [extra: string]: unknown;
}

const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

/** Check parsed JSON is a results array; errors name the row and field. */
export function validateResults(data: unknown, source = 'results'): ResultRow[] {
  if (!Array.isArray(data)) throw new UsageError(`${source}: expected a JSON array of result rows, found ${data === null ? 'null' : typeof data}`);
  if (data.length === 0) throw new UsageError(`${source}: the results array is empty`);
  data.forEach((r, i) => {
    const where = `${source}: row ${i}`;
    if (typeof r !== 'object' || r === null) throw new UsageError(`${where} is not an object`);
    const row = r as Record<string, unknown>;
    if (!Number.isInteger(row.update) || (row.update as number) < 1) throw new UsageError(`${where}: "update" must be a positive integer, found ${JSON.stringify(row.update)}`);
    if (!REPORT_METHODS.includes(row.method as ReportMethod)) throw new UsageError(`${where}: "method" must be one of ${REPORT_METHODS.join(', ')}, found ${JSON.stringify(row.method)}`);
    if (row.budgetPct !== null && !num(row.budgetPct)) throw new UsageError(`${where}: "budgetPct" must be a number or null`);
    for (const k of ['bytes', 'accAll', 'accOld', 'accNew', 'driftFromFull', 'trainSeconds']) {
      if (!num(row[k])) throw new UsageError(`${where}: "${k}" must be a finite number, found ${JSON.stringify(row[k])}`);
    }
  });
  return data as ResultRow[];
}
