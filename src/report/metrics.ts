/**
 * A user's metrics files as report rows: what `ndiff train --metrics-out` writes (a TF.js or an
 * ONNX base, with labels or with a teacher and no labels) and what `ndiff diff --eval ...
 * --metrics-out` writes (a post-hoc diff measured against its target). A run with no labelled
 * evaluation data still makes a row: its closeness to the teacher is what it is compared by.
 */
import { UsageError } from '../core/errors.ts';
import { REPORT_METHODS, type ReportMethod, type ReportRow } from './results.ts';

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const obj = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
const orNull = (v: unknown): number | null => (num(v) ? v : null);

/** Whether a parsed JSON value is one metrics document (rather than a benchmark row). */
export function isMetricsDocument(v: unknown): v is Record<string, unknown> {
  const o = obj(v);
  return !!o && (o.kind === 'ndiff-train-metrics' || o.kind === 'ndiff-diff-metrics' || ('accuracyAfter' in o && 'modelBytes' in o && !('update' in o)));
}

/**
 * The budget as it was asked for and as a share of the model: `--budget 1%` is labelled `1%`
 * (its bytes make 0.9996%); a budget in bytes keeps its words (`40KB`) with the share it makes.
 * Files that did not record what was asked get the share of their budget's bytes, rounded to two
 * significant digits when that is within 0.2% of it (`1%` for 0.9996%).
 */
export function askedBudget(asked: unknown, budgetBytes: unknown, modelBytes: number): { budget: string | null; budgetPct: number | null } {
  const text = typeof asked === 'string' ? asked.trim() : '';
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(text);
  if (pct) return { budget: `${Number(pct[1])}%`, budgetPct: Number(pct[1]) };
  if (text.toLowerCase() === 'all') return { budget: 'all', budgetPct: null };
  if (!num(budgetBytes) || budgetBytes <= 0) return { budget: text || null, budgetPct: null };
  const share = (100 * budgetBytes) / modelBytes;
  const round = Number(share.toPrecision(2));
  const budgetPct = Math.abs(share - round) <= 0.002 * round ? round : Number(share.toPrecision(3));
  return { budget: text || `${budgetPct}%`, budgetPct };
}

/** One metrics document (`ndiff train` or `ndiff diff`) as a report row; `where` names it in errors. */
export function metricsToRow(m: Record<string, unknown>, where: string): ReportRow {
  const diff = m.kind === 'ndiff-diff-metrics';
  if (!REPORT_METHODS.includes(m.method as ReportMethod)) throw new UsageError(`${where}: "method" must be one of ${REPORT_METHODS.join(', ')}, found ${JSON.stringify(m.method)}`);
  for (const k of ['bytes', 'modelBytes']) if (!num(m[k]) || (m[k] as number) <= 0) throw new UsageError(`${where}: "${k}" must be a positive number, found ${JSON.stringify(m[k])}`);
  const method = m.method as ReportMethod;
  const modelBytes = m.modelBytes as number;
  const { budget, budgetPct } = method === 'full' ? { budget: null, budgetPct: null } : askedBudget(m.budgetRequested, m.budgetBytes, modelBytes);

  // Closeness to the teacher: ndiff train --teacher (TF.js: teacher.eval; ONNX: teacherEval),
  // or ndiff diff --eval, whose --target is the version the team trained.
  let close: { agreement: number | null; agreementBefore: number | null; meanAbsDiff: number | null; meanAbsDiffBefore: number | null; teacherAccAll: number | null } | undefined;
  let teacherBytes: number | null = null;
  const teacher = obj(m.teacher);
  const tEval = obj(teacher?.eval);
  const onnxEval = obj(m.teacherEval);
  const dEval = obj(m.eval);
  // A GGUF payload measured through llama.cpp: its distance to the target is the mean KL(target || model).
  const distanceKl = diff && dEval?.kind === 'gguf-llama';
  if (diff) {
    teacherBytes = orNull(m.targetModelBytes);
    if (dEval) {
      const [base, patched] = [obj(dEval.base), obj(dEval.patched)];
      const distance = distanceKl ? 'meanKl' : 'meanAbsDiff';
      close = { agreement: orNull(patched?.agreement), agreementBefore: orNull(base?.agreement), meanAbsDiff: orNull(patched?.[distance]), meanAbsDiffBefore: orNull(base?.[distance]), teacherAccAll: orNull(dEval.accuracyTarget) };
    }
  } else if (teacher || onnxEval) {
    teacherBytes = orNull(teacher?.modelBytes ?? m.teacherModelBytes);
    if (onnxEval) {
      // An ONNX run measures the patched file as onnxruntime runs it: that is the figure.
      const [before, after] = [obj(onnxEval.before), obj(onnxEval.after)];
      close = { agreement: orNull(after?.agreement), agreementBefore: orNull(before?.agreement), meanAbsDiff: orNull(after?.meanAbsDiff), meanAbsDiffBefore: orNull(before?.meanAbsDiff), teacherAccAll: null };
    } else if (tEval) close = { agreement: orNull(tEval.agreementAfter), agreementBefore: orNull(tEval.agreementBefore), meanAbsDiff: orNull(tEval.meanAbsDiffAfter), meanAbsDiffBefore: orNull(tEval.meanAbsDiffBefore), teacherAccAll: orNull(tEval.teacherAccuracy) };
  }
  const accAll = orNull(m.accuracyAfter);
  if (accAll === null && close?.agreement == null && close?.meanAbsDiff == null) {
    throw new UsageError(`${where}: nothing measured on evaluation data (no accuracy, no closeness to a teacher): run it with --eval DATA (with y.npy for accuracy; with --teacher, or ndiff diff --eval, inputs alone are enough) to compare it in a report`);
  }

  // --also-consider: which payload was written, when it was not this run's own.
  const chosen = Array.isArray(m.selection) ? (m.selection as unknown[]).map(obj).find((c) => c?.chosen === true) : undefined;
  const first = Array.isArray(m.selection) ? obj((m.selection as unknown[])[0]) : undefined;
  const shippedFrom = chosen && chosen !== first && typeof chosen.label === 'string' ? chosen.label.replace(/^--also-consider /, '') : undefined;

  // --method auto trained every candidate: the run took all their time, not only the chosen one's
  // (files written before train counted them all hold the chosen candidate's in trainSeconds).
  const auto = obj(m.auto);
  const candidates = Array.isArray(auto?.candidates) ? (auto.candidates as unknown[]).map(obj).filter((c) => num(c?.seconds)) : [];
  const autoSeconds = candidates.length ? candidates.reduce((t, c) => t + (c?.seconds as number), 0) : null;

  return {
    update: Number.isInteger(m.sequence) && (m.sequence as number) >= 1 ? (m.sequence as number) : 1,
    method,
    budgetPct,
    budget,
    bytes: m.bytes as number,
    accAll,
    accBefore: orNull(m.accuracyBefore),
    trainSeconds: autoSeconds !== null ? Math.max(autoSeconds, orNull(m.trainSeconds) ?? 0) : orNull(m.trainSeconds),
    modelBytes,
    ...(diff || teacher || onnxEval ? { teacher: true, teacherBytes } : {}),
    // ndiff diff made it from --target's weights: another setting than a trained payload of its method.
    ...(diff ? { postHoc: true } : {}),
    ...(auto && typeof auto.chosen === 'string' ? { auto: auto.chosen, autoCandidates: candidates.length } : {}),
    ...(close ?? {}),
    ...(distanceKl ? { distance: 'kl' as const } : {}),
    ...(shippedFrom ? { shippedFrom } : {}),
    ...(typeof m.modelId === 'string' ? { name: m.modelId } : {}),
  };
}
