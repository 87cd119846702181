/** Any JSON `ndiff report` accepts, as report rows: benchmark results and metrics files alike. */
import { UsageError } from '../core/errors.ts';
import { isMetricsDocument, metricsToRow } from './metrics.ts';
import { checkRowFields, type ReportRow } from './results.ts';

/**
 * Rows from parsed JSON: one metrics document (`ndiff train --metrics-out`, `ndiff diff --eval
 * ... --metrics-out`), an array of them, or an array of benchmark rows (examples/keyword-spotting
 * /results/full.json). Errors name the source, the row and the field.
 */
export function reportRows(data: unknown, source = 'results'): ReportRow[] {
  if (isMetricsDocument(data)) return [{ ...metricsToRow(data, source), source }];
  if (!Array.isArray(data)) throw new UsageError(`${source}: expected a metrics file of \`ndiff train --metrics-out\` or \`ndiff diff --metrics-out\`, or a JSON array of result rows, found ${data === null ? 'null' : typeof data}`);
  if (data.length === 0) throw new UsageError(`${source}: the results array is empty`);
  return data.map((r, i) => {
    const where = `${source}: row ${i}`;
    if (isMetricsDocument(r)) return { ...metricsToRow(r, where), source };
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new UsageError(`${where} is not an object`);
    checkRowFields(r as Record<string, unknown>, where, false);
    const row = r as ReportRow;
    if (row.accAll == null && typeof row.agreement !== 'number') throw new UsageError(`${where}: no "accAll" and no "agreement": a row needs one of them to be compared`);
    return { ...row, accAll: row.accAll ?? null, source };
  });
}
