/** The few sentences at the top of a report that say how to read it and choose a budget. */
import { MEASURE_WORDS, type ReportSummary } from './summary.ts';

/** How to read this report, in sentences fitted to what it holds (measure, teacher, several updates). */
export function howToRead(s: ReportSummary): string[] {
  const tol = `${s.tolerance} point${s.tolerance === 1 ? '' : 's'}`;
  const teacher = s.updates.some((u) => u.teacher);
  const teacherRef = s.updates.some((u) => u.teacher && (s.measure !== 'accuracy' || u.teacher.accAll !== null));
  const base = s.updates.some((u) => u.base.accuracy || u.base.agreement || u.base.closeness);
  const out = [
    `Payloads are compared by ${MEASURE_WORDS[s.measure].what}${s.measure === 'accuracy' ? ', measured on the weights a device holds after applying each payload' : ''}.`,
    `In the charts each point is a payload: its bytes (x, log scale) against its ${MEASURE_WORDS[s.measure].name} (y). ${base ? 'The dashed grey line is the base, the model devices hold before the update (zero bytes). ' : ''}The shaded band reaches ${tol} below ${teacherRef ? 'the teacher' : 'the best result'}: a point inside it is good enough, and the leftmost one is the cheapest such payload. The recommendation above picks it for you${s.updates.length > 1 ? ', for a setting that stays inside on every update' : ''}.`,
    'One point can stand for several budgets that shipped the same payload (its tooltip names them). The y-axis fits the learned methods: a result far below (a post-hoc baseline, the base) is marked ▼ at the edge and named under the chart.',
  ];
  if (teacher) out.push(`Rows marked "(teacher)" were trained toward the teacher, the new version your team trained; their agreement is the share of evaluation inputs on which they predict what the teacher predicts. ${teacherRef ? 'Their reference is the teacher itself.' : "The teacher's own accuracy is not in these files, so the reference is the best result."}`);
  if (!base) out.push("These rows do not carry the base model's figures (the accuracy before the update, accBefore), so there is no base row.");
  out.push('In the tables, ✓ marks a row within the tolerance; "vs best" or "vs teacher" is its difference from the reference in points.');
  return out;
}
