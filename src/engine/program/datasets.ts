/**
 * Examples of a graph program as the trainer and the measures take them: one array per model
 * input (examples on the first axis), each example's sequence for stateful models, labels when
 * known; several sets (training, replayed, validation, evaluation) joined into one id space.
 */
import { DataError } from '../../core/errors.ts';
import type { ProgramExamples, ProgramInputValues } from './training-model.ts';

/** Examples of a graph program: one array per model input, and for stateful models each example's sequence. */
export interface ProgramDataset {
  /** Per-example inputs by model input name (examples on the first axis). */
  inputs: Record<string, ProgramInputValues>;
  /** Stateful models: the sequence of each example (a sequence's frames consecutive, in order). */
  sequence?: Int32Array;
  /** Class index per example (optional with a teacher). */
  labels?: Int32Array;
}

/**
 * Datasets as one id space for a `ProgramTrainingModel`, in the order given (training first when
 * training), each set's range of ids in `ranges`; stateful models' sequence ids renumbered so no
 * two sets share one. Shared inputs (`shared`) are fed to every example.
 * @throws DataError when the sets give other inputs, shapes, example counts or sequence ids.
 */
export function joinDatasets(sets: { name: string; data: ProgramDataset }[], shared: Record<string, ProgramInputValues> | undefined, stateful: boolean): { examples: ProgramExamples; ranges: Map<string, [number, number]> } {
  const ranges = new Map<string, [number, number]>();
  const first = sets[0].data;
  const names = Object.keys(first.inputs);
  let count = 0;
  for (const s of sets) {
    const keys = Object.keys(s.data.inputs);
    if (keys.length !== names.length || keys.some((k) => !names.includes(k))) throw new DataError(`the ${s.name} examples give inputs ${keys.join(', ')}, the ${sets[0].name} examples ${names.join(', ')}: give the same inputs`);
    const n = countOf(s.data, s.name);
    if (stateful && !s.data.sequence) throw new DataError(`the ${s.name} examples have no sequence ids: a stateful model trains and is evaluated on sequences (sequence.npy, one id per frame)`);
    if (stateful && s.data.sequence?.length !== n) throw new DataError(`the ${s.name} examples: ${s.data.sequence?.length} sequence ids for ${n} examples; give one id per frame (sequence.npy)`);
    ranges.set(s.name, [count, n]);
    count += n;
  }
  const inputs: Record<string, ProgramInputValues> = {};
  for (const name of names) {
    const shape = first.inputs[name].shape;
    const isInt = first.inputs[name].values instanceof Int32Array;
    const values = isInt ? new Int32Array(count * shape.reduce((a, d) => a * d, 1)) : new Float32Array(count * shape.reduce((a, d) => a * d, 1));
    let at = 0;
    for (const s of sets) {
      const v = s.data.inputs[name];
      if (v.shape.join('x') !== shape.join('x')) throw new DataError(`input ${name}: the ${s.name} examples are [${v.shape.join(', ')}] each, the ${sets[0].name} examples [${shape.join(', ')}]`);
      values.set(v.values as never, at);
      at += v.values.length;
    }
    inputs[name] = { values, shape };
  }
  let sequence: Int32Array | undefined;
  if (stateful) {
    sequence = new Int32Array(count);
    let next = 0;
    for (const s of sets) {
      const [from, n] = ranges.get(s.name) as [number, number];
      const ids = s.data.sequence as Int32Array;
      for (let i = 0; i < n; i++) {
        if (i > 0 && ids[i] !== ids[i - 1]) next++;
        sequence[from + i] = next;
      }
      next++;
    }
  }
  return { examples: { count, inputs, ...(shared ? { shared } : {}), ...(sequence ? { sequence } : {}) }, ranges };
}

function countOf(d: ProgramDataset, what: string): number {
  const counts = Object.entries(d.inputs).map(([name, v]) => ({ name, n: v.values.length / Math.max(1, v.shape.reduce((a, x) => a * x, 1)) }));
  if (!counts.length) throw new DataError(`the ${what} examples give no inputs`);
  const n = counts[0].n;
  const odd = counts.find((c) => c.n !== n || !Number.isInteger(c.n));
  if (odd) throw new DataError(`the ${what} examples: input ${counts[0].name} holds ${n} examples, ${odd.name} ${odd.n}: every input needs one value per example`);
  return n;
}
