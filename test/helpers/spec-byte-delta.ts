/**
 * The independent byte-delta decoder, written from docs/FORMAT.md §16 alone (its modelled coding
 * in spec-modelled-delta.ts): test/format-vectors.test.ts checks the byte-delta vectors with it,
 * and the structural reading (spec-structural.ts) rebuilds a model's intermediate files with it.
 */
import { bad, specRangeBytes } from './spec-payload.ts';
import { specModelledDelta } from './spec-modelled-delta.ts';

/** FORMAT.md §16, step by step: header, every instruction checked, then the output built. */
export function specByteDelta(base: Uint8Array, d: Uint8Array, maxOutput: number): Uint8Array {
  let src = d;
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    for (let j = 0; j < 5; j++) {
      if (pos >= src.length) bad('varint runs past the end');
      const b = src[pos++];
      if (j === 4 && b > 0x0f) bad('varint over 32 bits or longer than 5 bytes');
      v += (b & 0x7f) * 2 ** (7 * j);
      if (b < 0x80) return v;
    }
    return v;
  };
  const L = varint();
  const baseLength = varint();
  const N = varint();
  const coding = varint();
  const lit = varint();
  if (L > maxOutput) bad('output over the cap');
  if (baseLength !== base.length) bad('base length');
  if (coding > 5) bad('coding');
  if (lit > L) bad('literal count');
  if (coding >= 4) return specModelledDelta(base, d, pos, L, N, lit, coding, bad);
  let literalsAt: number;
  if (coding & 2) {
    const R = varint();
    const S = varint();
    if (S > d.length - pos) bad('coded instructions past the end');
    if (R > 64 * S + 64) bad('more instruction bytes than a range-coded stream gives');
    if (N > L || N > R) bad('instruction count');
    src = specRangeBytes(d.subarray(pos, pos + S), R);
    literalsAt = pos + S;
    pos = 0;
  } else {
    if (N > L || N > d.length - pos) bad('instruction count');
    literalsAt = -1;
  }
  const ops: { kind: number; offset: number; length: number }[] = [];
  let total = 0;
  let inserted = 0;
  let cursor = 0;
  for (let k = 0; k < N; k++) {
    const op = varint();
    const kind = op % 4;
    const length = Math.floor(op / 4);
    if (kind === 3) bad('unknown instruction kind');
    if (length === 0) bad('zero-length instruction');
    if (total + length > L) bad('past the declared output');
    if (kind === 1) {
      const z = varint();
      const offset = cursor + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
      if (offset < 0 || offset + length > base.length) bad('copy outside the base');
      cursor = offset + length;
      ops.push({ kind, offset, length });
    } else if (kind === 2) {
      // distance back from the bytes it writes: reads only output already written
      const from = total - length - varint();
      if (from < 0) bad('copy of output not yet written');
      ops.push({ kind, offset: from, length });
    } else {
      inserted += length;
      if (inserted > lit) bad('literals past the declared count');
      ops.push({ kind, offset: 0, length });
    }
    total += length;
  }
  if (total !== L || inserted !== lit) bad('totals');
  if (coding & 2 && pos !== src.length) bad('decoded instruction bytes left over');
  const section = d.subarray(literalsAt < 0 ? pos : literalsAt);
  let literals: Uint8Array;
  if ((coding & 1) === 0) {
    if (section.length !== lit) bad('raw literal section length');
    literals = section;
  } else {
    literals = specRangeBytes(section, lit);
  }
  const out = new Uint8Array(L);
  let at = 0;
  let l = 0;
  for (const op of ops) {
    if (op.kind === 2) for (let j = 0; j < op.length; j++) out[at + j] = out[op.offset + j];
    else out.set(op.kind === 1 ? base.subarray(op.offset, op.offset + op.length) : literals.subarray(l, (l += op.length)), at);
    at += op.length;
  }
  return out;
}
