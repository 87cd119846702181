/**
 * `ndiff report`: the size/accuracy comparison a user picks a budget from, as Markdown and as a
 * self-contained HTML page with SVG charts, from benchmark results or a user's metrics files.
 * What it concludes (measure, references, per-budget summary, recommendation) is summary.ts.
 *
 * @module
 */
export { renderMarkdown, markdownOf } from './markdown.ts';
export { renderHtml, htmlOf } from './html.ts';
export { summarize, withinPoints, DEFAULT_TOLERANCE } from './summary.ts';
export type { Measure, ReportOptions, RenderOptions, ReportSummary, Recommendation, BudgetSummary, UpdateSummary, TeacherRef, BaseModel, Range, TargetCheck } from './summary.ts';
export { METHOD_COLORS, METHOD_LABELS } from './labels.ts';
