/**
 * The comparison results behind `ndiff report`: one row per (update, method, budget), as the
 * keyword-spotting benchmark writes them (examples/keyword-spotting/results/full.json), or the
 * metrics JSON of single `ndiff train --metrics-out` runs, which become rows too.
 */
import { UsageError } from '../core/errors.ts';

export const REPORT_METHODS = ['sparse', 'hash', 'lora', 'sparse-lora', 'topk-retrain', 'topk', 'drop', 'lowrank', 'full', 'zstd'] as const;
export type ReportMethod = (typeof REPORT_METHODS)[number];

export interface ResultRow {
  /** Update number in the chain, 1-based. */
  update: number;
  method: ReportMethod;
  /** Budget as a percentage of the model as stored; null for `full` and `zstd` (no budget). */
  budgetPct: number | null;
  /** Bytes a device downloads for this update. */
  bytes: number;
  /** Accuracy (0-1) on the evaluation data of every class so far. */
  accAll: number;
  /** Accuracy on the classes known before this update (null: not measured). */
  accOld?: number | null;
  /** Accuracy on this update's new data (null: not measured). */
  accNew?: number | null;
  /** Full fine-tuning chain's accAll minus this chain's, same update (positive: behind full; null: no full chain). */
  driftFromFull?: number | null;
  /** Training time in seconds (null: not measured). */
  trainSeconds?: number | null;
  /** Optional free-form fields (e.g. update name, epochs). */
  [extra: string]: unknown;
}

/** What `ndiff train --metrics-out` writes (the fields the report reads). */
export interface TrainMetrics {
  kind: 'ndiff-train-metrics';
  method: string;
  budgetBytes: number;
  bytes: number;
  modelBytes: number;
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  trainSeconds: number;
  sequence?: number;
  [extra: string]: unknown;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const optionalNum = (v: unknown) => v === undefined || v === null || num(v);

function isMetrics(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && ((v as Record<string, unknown>).kind === 'ndiff-train-metrics' || (v as Record<string, unknown>).kind === 'ndiff-diff-metrics' || ('accuracyAfter' in v && 'modelBytes' in v));
}

/** One `ndiff train --metrics-out` document as a result row. */
export function metricsToRow(m: Record<string, unknown>, where: string): ResultRow {
  if (!REPORT_METHODS.includes(m.method as ReportMethod)) throw new UsageError(`${where}: "method" must be one of ${REPORT_METHODS.join(', ')}, found ${JSON.stringify(m.method)}`);
  for (const k of ['bytes', 'modelBytes']) if (!num(m[k]) || (m[k] as number) <= 0) throw new UsageError(`${where}: "${k}" must be a positive number, found ${JSON.stringify(m[k])}`);
  if (!num(m.accuracyAfter)) {
    throw new UsageError(`${where}: no accuracy after the update (the run had no labelled evaluation data): run it with --eval DATA holding y.npy (ndiff train, or ndiff diff) to compare it in a report`);
  }
  const method = m.method as ReportMethod;
  const update = Number.isInteger(m.sequence) && (m.sequence as number) >= 1 ? (m.sequence as number) : 1;
  // The budget as the user asked for it (`--budget 1%`) when it was a share of the model; else
  // the share the bytes make (a budget in bytes, or older metrics files).
  const asked = typeof m.budgetRequested === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(m.budgetRequested) : null;
  const budgetPct = method === 'full' || !num(m.budgetBytes) ? null : asked ? Number(asked[1]) : Number(((100 * (m.budgetBytes as number)) / (m.modelBytes as number)).toPrecision(4));
  return {
    update,
    method,
    budgetPct,
    bytes: m.bytes as number,
    accAll: m.accuracyAfter as number,
    accOld: null,
    accNew: null,
    driftFromFull: null,
    trainSeconds: num(m.trainSeconds) ? m.trainSeconds : null,
    ...(num(m.accuracyBefore) ? { accBefore: m.accuracyBefore } : {}),
    ...(typeof m.modelId === 'string' ? { name: m.modelId } : {}),
  };
}

/**
 * Check parsed JSON is results: an array of result rows, one `ndiff train --metrics-out`
 * document, or an array of them. Errors name the source, the row and the field.
 */
export function validateResults(data: unknown, source = 'results'): ResultRow[] {
  if (isMetrics(data)) return [metricsToRow(data, source)];
  if (!Array.isArray(data)) throw new UsageError(`${source}: expected a JSON array of result rows or an \`ndiff train --metrics-out\` document, found ${data === null ? 'null' : typeof data}`);
  if (data.length === 0) throw new UsageError(`${source}: the results array is empty`);
  return data.map((r, i) => {
    const where = `${source}: row ${i}`;
    if (typeof r !== 'object' || r === null) throw new UsageError(`${where} is not an object`);
    if (isMetrics(r)) return metricsToRow(r, where);
    const row = r as Record<string, unknown>;
    if (!Number.isInteger(row.update) || (row.update as number) < 1) throw new UsageError(`${where}: "update" must be a positive integer, found ${JSON.stringify(row.update)}`);
    if (!REPORT_METHODS.includes(row.method as ReportMethod)) throw new UsageError(`${where}: "method" must be one of ${REPORT_METHODS.join(', ')}, found ${JSON.stringify(row.method)}`);
    if (row.budgetPct !== null && !num(row.budgetPct)) throw new UsageError(`${where}: "budgetPct" must be a number or null`);
    for (const k of ['bytes', 'accAll']) {
      if (!num(row[k])) throw new UsageError(`${where}: "${k}" must be a finite number, found ${JSON.stringify(row[k])}`);
    }
    for (const k of ['accOld', 'accNew', 'driftFromFull', 'trainSeconds']) {
      if (!optionalNum(row[k])) throw new UsageError(`${where}: "${k}" must be a finite number or null, found ${JSON.stringify(row[k])}`);
    }
    return row as ResultRow;
  });
}
