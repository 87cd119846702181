/**
 * Einsum over any equation numpy accepts: explicit (`ij,jk->ik`) or implicit output (the labels
 * seen once, in alphabetical order, after the ellipsis), `...` broadcast as numpy aligns it (from
 * the right), repeated labels in one operand (a diagonal), labels summed away. Each operand first
 * takes its diagonals and sums the labels no one else needs; operands then contract pairwise,
 * left to right, as one batched matMul (shared labels still needed later are the batch, the
 * others are contracted); the result is summed and transposed to the output's order. Only
 * transposes, reshapes, broadcasts, multiplications by an identity, sums and matMuls: as
 * differentiable as they are. Integer operands compute in float32 (exact below 2^24).
 */
import * as tf from '@tensorflow/tfjs';
import { need, str, unsupported, type OpArgs, type OpTable } from './op.ts';

/** An operand with one label per axis (a letter, or `.k` for the k-th axis the ellipsis stands for). */
interface Labeled {
  t: tf.Tensor;
  labels: string[];
}

/** The labels of each input and of the output; throws a plain message when the equation does not fit the inputs. */
function parseEinsum(equation: string, ranks: number[]): { inputs: string[][]; output: string[] } {
  const eq = equation.replace(/\s+/g, '');
  const [lhs, rhs] = eq.split('->');
  const terms = lhs.split(',');
  if (terms.length !== ranks.length) throw new Error(`${terms.length} operands in ${JSON.stringify(equation)} for ${ranks.length} inputs`);
  const split = (term: string): { before: string[]; ellipsis: boolean; after: string[] } => {
    const at = term.indexOf('...');
    const check = (s: string) => {
      if (!/^[a-zA-Z]*$/.test(s)) throw new Error(`term ${JSON.stringify(term)} of ${JSON.stringify(equation)}: labels are letters, with at most one "..."`);
      return [...s];
    };
    return at < 0 ? { before: check(term), ellipsis: false, after: [] } : { before: check(term.slice(0, at)), ellipsis: true, after: check(term.slice(at + 3)) };
  };
  const parts = terms.map(split);
  const ellipsisRanks = parts.map((p, i) => {
    const e = ranks[i] - p.before.length - p.after.length;
    if (e < 0 || (!p.ellipsis && e !== 0)) throw new Error(`term ${JSON.stringify(terms[i])} has ${p.before.length + p.after.length} labels for a rank-${ranks[i]} input`);
    return e;
  });
  const widest = Math.max(0, ...ellipsisRanks);
  // The ellipsis of an operand with e axes stands for the last e of the widest one.
  const dots = (e: number) => Array.from({ length: e }, (_, k) => `.${widest - e + k}`);
  const inputs = parts.map((p, i) => [...p.before, ...dots(ellipsisRanks[i]), ...p.after]);
  let output: string[];
  if (rhs !== undefined) {
    const p = split(rhs);
    output = [...p.before, ...(p.ellipsis ? dots(widest) : []), ...p.after];
    const seen = new Set(inputs.flat());
    for (const l of output) if (!seen.has(l)) throw new Error(`output label ${JSON.stringify(l)} of ${JSON.stringify(equation)} is in no input`);
    if (new Set(output).size !== output.length) throw new Error(`output of ${JSON.stringify(equation)} repeats a label`);
  } else {
    const counts = new Map<string, number>();
    for (const l of inputs.flat()) counts.set(l, (counts.get(l) ?? 0) + 1);
    output = [...dots(widest), ...[...counts].filter(([l, c]) => c === 1 && !l.startsWith('.')).map(([l]) => l).sort()];
  }
  return { inputs, output };
}

/** The operand with each repeated label reduced to its diagonal. */
function diagonals(x: Labeled): Labeled {
  let { t, labels } = x;
  for (;;) {
    const a = labels.findIndex((l, i) => labels.indexOf(l) !== i);
    if (a < 0) return { t, labels };
    const first = labels.indexOf(labels[a]);
    const n = t.shape[first];
    // Move the two axes last, keep their diagonal: [..., n, n] × I summed over the last.
    const rest = labels.map((_, i) => i).filter((i) => i !== first && i !== a);
    t = tf.sum(tf.mul(tf.transpose(t, [...rest, first, a]), tf.eye(n)), -1);
    labels = [...rest.map((i) => labels[i]), labels[first]];
  }
}

/** Sum away the labels of `x` that are not in `keep`. */
function sumAway(x: Labeled, keep: Set<string>): Labeled {
  const axes = x.labels.map((l, i) => (keep.has(l) ? -1 : i)).filter((i) => i >= 0);
  if (!axes.length) return x;
  return { t: tf.sum(x.t, axes), labels: x.labels.filter((l) => keep.has(l)) };
}

/** Contract two operands over their shared labels that are not in `keep`; the shared ones in `keep` are the batch. */
function contract(a: Labeled, b: Labeled, keep: Set<string>): Labeled {
  const inB = new Set(b.labels);
  const shared = a.labels.filter((l) => inB.has(l));
  const batch = shared.filter((l) => keep.has(l));
  const summed = shared.filter((l) => !keep.has(l));
  const aOnly = a.labels.filter((l) => !inB.has(l));
  const bOnly = b.labels.filter((l) => !a.labels.includes(l));
  const size = (l: string) => Math.max(a.t.shape[a.labels.indexOf(l)] ?? 1, b.t.shape[b.labels.indexOf(l)] ?? 1);
  // Broadcast shared axes of length 1 (the ellipsis' broadcasting) to the other operand's length.
  const arrange = (x: Labeled, order: string[]) => {
    const t = tf.transpose(x.t, order.map((l) => x.labels.indexOf(l)));
    const full = order.map((l, i) => (shared.includes(l) ? size(l) : t.shape[i]));
    return full.every((d, i) => d === t.shape[i]) ? t : tf.broadcastTo(t, full);
  };
  const count = (ls: string[], x?: Labeled) => ls.reduce((p, l) => p * (x ? x.t.shape[x.labels.indexOf(l)] : size(l)), 1);
  const at = arrange(a, [...batch, ...aOnly, ...summed]).reshape([count(batch), count(aOnly, a), count(summed)]);
  const bt = arrange(b, [...batch, ...summed, ...bOnly]).reshape([count(batch), count(summed), count(bOnly, b)]);
  const dims = [...batch.map(size), ...aOnly.map((l) => a.t.shape[a.labels.indexOf(l)]), ...bOnly.map((l) => b.t.shape[b.labels.indexOf(l)])];
  return { t: tf.matMul(at, bt).reshape(dims), labels: [...batch, ...aOnly, ...bOnly] };
}

function einsum(a: OpArgs): tf.Tensor[] {
  const xs = a.inputs.map((_, i) => need(a, i));
  if (!xs.length) throw unsupported(a, 'Einsum without inputs');
  const equation = str(a, 'equation', '');
  const { inputs, output } = parseEinsum(equation, xs.map((t) => t.rank));
  const integer = xs[0].dtype === 'int32';
  const operands = xs.map((t, i) => diagonals({ t: integer ? t.toFloat() : t, labels: inputs[i] }));
  /** Labels needed by the output or by operands from `from` on. */
  const needed = (from: number) => new Set([...output, ...operands.slice(from).flatMap((o) => o.labels)]);
  let acc = sumAway(operands[0], needed(1));
  for (let i = 1; i < operands.length; i++) {
    const keep = needed(i + 1);
    const next = sumAway(operands[i], new Set([...keep, ...acc.labels]));
    acc = contract(sumAway(acc, new Set([...keep, ...next.labels])), next, keep);
  }
  acc = sumAway(acc, new Set(output));
  let y = output.length > 1 ? tf.transpose(acc.t, output.map((l) => acc.labels.indexOf(l))) : acc.t;
  if (integer) y = y.round().toInt();
  return [y];
}

/** Einsum. */
export const einsumOps: OpTable = {
  Einsum: einsum,
};
