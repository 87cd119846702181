/**
 * Byte delta test vectors (docs/FORMAT.md §16): base and target files, the delta the reference
 * encoder (src/diff/byte-delta.ts) writes between them, and hostile deltas written by hand with
 * the error a decoder must raise. Part of the payload vector folder: generate.ts writes them
 * beside the payloads, and test/format-vectors.test.ts checks them with an independent decoder.
 */
import { encodeByteDelta } from '../../../src/diff/byte-delta.ts';
import { ModelEncoder } from '../../../src/diff/byte-delta-model.ts';
import { MODEL_SIZE } from '../../../src/core/byte-delta.ts';

export interface ByteDeltaVector {
  name: string;
  description: string;
  base: string;
  delta: string;
  target: string;
  /** Header fields as decoded (`coding` is `C`: 0 to 3, or 4 and 5 for the modelled codings). */
  outputLength: number;
  coding: number;
  literalCoding: number;
  instructionCoding: number;
  copies: number;
  inserts: number;
}

export interface InvalidByteDeltaVector {
  name: string;
  description: string;
  base: string;
  delta: string;
  /** The largest output the decoder is told to accept. */
  maxOutputBytes: number;
  error: 'PayloadFormatError';
  code: 'ND_PAYLOAD_FORMAT';
}

const utf8 = new TextEncoder();

/** Unsigned LEB128, for the hand-written deltas (any value up to 2^32 - 1). */
function leb(...values: number[]): number[] {
  const out: number[] = [];
  for (let v of values) {
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
  }
  return out;
}

// A file in the spirit of a model: a small frame naming two tensors, then their bytes. The target
// renames "conv.w" to "stem.w", swaps the two tensors, and adds a third one.
const f32 = (values: number[]): number[] => Array.from(new Uint8Array(Float32Array.from(values).buffer));
const MOVED_BASE = Uint8Array.from([...utf8.encode('NDFILE1 conv.w[8] bias[4];'), ...f32([0.5, -1, 2, 0.25, 3, -0.125, 1.5, 8]), ...f32([1, 2, 3, 4])]);
const MOVED_TARGET = Uint8Array.from([...utf8.encode('NDFILE1 bias[4] stem.w[8] gain[2];'), ...f32([1, 2, 3, 4]), ...f32([0.5, -1, 2, 0.25, 3, -0.125, 1.5, 8]), ...f32([7, 7])]);

// A target that adds a tensor of new float32 values (small weights: their exponent bytes gather
// on a few values, their mantissa bytes are close to random), after the base's frame.
const NEW_TENSOR_TARGET = Uint8Array.from([
  ...MOVED_BASE,
  ...f32(
    Array.from({ length: 256 }, (_, i) => {
      const u = (Math.imul(i + 1, 0x9e3779b1) >>> 0) / 2 ** 32;
      return (u - 0.5) * 0.2;
    }),
  ),
]);

// Literals worth range-coding: a run of repeated text the base does not hold.
const CODED_BASE = utf8.encode('header: model v1; tensors follow. '.repeat(2));
const CODED_TARGET = utf8.encode('header: model v1; tensors follow. ' + 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz' + 'header: model v1; tensors follow. ');

/** The vector files (name -> bytes), including `byte-delta.json`, the index. */
export function generateByteDeltaVectors(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const valid: ByteDeltaVector[] = [];
  const invalid: InvalidByteDeltaVector[] = [];
  const addValid = (name: string, description: string, base: Uint8Array, target: Uint8Array, modelled = false): void => {
    const { bytes, stats } = encodeByteDelta(base, target, { modelled });
    files.set(`delta-${name}.base.bin`, base);
    files.set(`delta-${name}.target.bin`, target);
    files.set(`delta-${name}.bdelta`, bytes);
    // C, the fourth varint of the header (every earlier one is below 2^14 here: at most 2 bytes).
    let at = 0;
    for (let k = 0; k < 3; k++) while (bytes[at++] >= 0x80);
    const coding = bytes[at];
    valid.push({ name: `delta-${name}`, description, base: `delta-${name}.base.bin`, delta: `delta-${name}.bdelta`, target: `delta-${name}.target.bin`, outputLength: target.length, coding, literalCoding: stats.literalCoding === 'raw' ? 0 : 1, instructionCoding: stats.instructionCoding === 'raw' ? 0 : modelled ? coding : 2, copies: stats.copies, inserts: stats.inserts });
  };
  addValid('moved', 'A frame renaming one tensor and adding one, the two kept tensors swapped: their bytes are copies from wherever they sit in the base; the new name, the new tensor and the changed frame text are raw literals.', MOVED_BASE, MOVED_TARGET);
  addValid('range-coded', 'A run of 64 "z" bytes that the base does not hold: 16 of them inserted, range-coded, the rest copies of the output already written.', CODED_BASE, CODED_TARGET);
  addValid('self-copy', 'A name the base does not hold, written twice in the target: the second time it is a copy of the output already written (source offset past the base).', utf8.encode('graph: conv -> relu -> out;'), utf8.encode('graph: conv -> block_7/expand/kernel:0 -> relu -> block_7/expand/kernel:0 -> out;'));
  addValid('coded-instructions', 'Forty layer names renamed in a text frame: many short copies and inserts, so the instructions are range-coded, and the literals too (coding 3).', utf8.encode(Array.from({ length: 40 }, (_, i) => `model/layer_${String(i).padStart(3, '0')}/conv2d/kernel:0 shape=[3, 3, 16, 16] dtype=float32\n`).join('')), utf8.encode(Array.from({ length: 40 }, (_, i) => `model/block_${i}/conv2d/kernel:0 shape=[3, 3, 16, 16] dtype=float32\n`).join('')));
  addValid('empty-base', 'Nothing to copy from: the whole target is one insert.', new Uint8Array(0), utf8.encode('a new file'));
  addValid('empty-target', 'An empty output: no instructions, no literals.', MOVED_BASE, new Uint8Array(0));
  addValid('modelled', 'The forty renamed layer names of delta-coded-instructions in the modelled coding: the copies that continue at the same displacement after a renamed digit are repeat copies of a few bits; its 40 one-digit literals code smallest with no context at all (coding 5, X = 0: one tree learns the ten digits fastest).', utf8.encode(Array.from({ length: 40 }, (_, i) => `model/layer_${String(i).padStart(3, '0')}/conv2d/kernel:0 shape=[3, 3, 16, 16] dtype=float32\n`).join('')), utf8.encode(Array.from({ length: 40 }, (_, i) => `model/block_${i}/conv2d/kernel:0 shape=[3, 3, 16, 16] dtype=float32\n`).join('')), true);
  addValid('modelled-moved', 'delta-moved in the modelled coding: a copy at a new displacement, copies of the output and literals.', MOVED_BASE, MOVED_TARGET, true);
  addValid('modelled-context', 'A new float32 tensor of 256 small weights after delta-moved\'s frame, in the modelled coding with its literal context (5): the literals are coded in the context of their position in 4 (X = 16 x lp + lc = 32: lp 2, lc 0), so each float\'s exponent byte has its own trees, where the byte before (the coding-4 context) says little about it.', MOVED_BASE, NEW_TENSOR_TARGET, true);
  addValid('modelled-empty-target', 'An empty output in the modelled coding: an instruction stream of 4 zero bytes, no literal stream.', MOVED_BASE, new Uint8Array(0), true);

  const base = 'delta-moved.base.bin';
  const B = MOVED_BASE.length; // 74
  const addInvalid = (name: string, description: string, bytes: number[], maxOutputBytes = 1 << 20): void => {
    files.set(`invalid-delta-${name}.bdelta`, Uint8Array.from(bytes));
    invalid.push({ name: `invalid-delta-${name}`, description, base, delta: `invalid-delta-${name}.bdelta`, maxOutputBytes, error: 'PayloadFormatError', code: 'ND_PAYLOAD_FORMAT' });
  };
  // header: output, base length, count, coding, literal length; then 4 x length + kind (0 INSERT, 1 COPY from the base + zigzag offset, 2 COPY from the output + distance)
  addInvalid('copy-out-of-range', `COPY of 8 bytes from offset ${B - 4}: past the end of the ${B}-byte base.`, [...leb(8, B, 1, 0, 0), ...leb(8 * 4 + 1, 2 * (B - 4))]);
  addInvalid('copy-before-start', 'COPY of 4 bytes at offset -1 (zigzag 1 from the start): before the base.', [...leb(4, B, 1, 0, 0), ...leb(4 * 4 + 1, 1)]);
  addInvalid('self-copy-ahead', 'INSERT of 4 bytes, then a COPY of 8 bytes from the output at distance 0: it would read output bytes -4..4, and only 4 are written before it.', [...leb(12, B, 2, 0, 4), ...leb(4 * 4), ...leb(8 * 4 + 2, 0), 1, 2, 3, 4]);
  addInvalid('unknown-kind', 'An instruction of kind 3 (op 4 x 4 + 3): the kinds are 0, 1 and 2.', [...leb(4, B, 1, 0, 0), ...leb(4 * 4 + 3, 0)]);
  addInvalid('past-declared-output', 'Output declared 10 bytes, then a COPY of 16.', [...leb(10, B, 1, 0, 0), ...leb(16 * 4 + 1, 0)]);
  addInvalid('short-of-declared-output', 'Output declared 20 bytes; the one COPY gives 16.', [...leb(20, B, 1, 0, 0), ...leb(16 * 4 + 1, 0)]);
  addInvalid('over-cap', 'Output declared 4096 bytes, the decoder is told to accept at most 1024: refused before anything else is read or allocated.', [...leb(4096, B, 1, 0, 0), ...leb(4096 * 4 + 1, 0)], 1024);
  addInvalid('truncated-varint', 'The delta ends inside the offset varint of its COPY (a continuation bit set on the last byte).', [...leb(4, B, 1, 0, 0), 4 * 4 + 1, 0x80]);
  addInvalid('varint-too-long', 'The output length written in 6 bytes: a varint is at most 5 bytes (32 bits).', [0x80, 0x80, 0x80, 0x80, 0x80, 0x00, ...leb(B, 0, 0, 0)]);
  addInvalid('count-bomb', 'An instruction count of 2^32 - 1 for a 4-byte output: refused from the header, before any instruction is read.', [...leb(4, B, 0xffffffff, 0, 0), ...leb(4 * 4 + 1, 0)]);
  addInvalid('zero-length', 'An INSERT of length 0: every instruction gives at least one byte.', [...leb(4, B, 2, 0, 4), ...leb(0, 4 * 4), 1, 2, 3, 4]);
  addInvalid('wrong-base-length', `The delta is for a base of ${B + 1} bytes; this one is ${B}.`, [...leb(4, B + 1, 1, 0, 0), ...leb(4 * 4 + 1, 0)]);
  addInvalid('literals-past-declared', 'An INSERT of 4 bytes with 3 literal bytes declared.', [...leb(4, B, 1, 0, 3), ...leb(4 * 4), 1, 2, 3]);
  addInvalid('literal-trailing-byte', 'An INSERT of 4 raw literal bytes, and a fifth byte after them.', [...leb(4, B, 1, 0, 4), ...leb(4 * 4), 1, 2, 3, 4, 5]);
  addInvalid('coding', 'Coding 6: the codings are 0 to 3 (bit 0 literals range-coded, bit 1 instructions range-coded), 4 (modelled) and 5 (modelled with its literal context).', [...leb(4, B, 1, 6, 4), ...leb(4 * 4), 1, 2, 3, 4]);
  addInvalid('instructions-ratio', 'Range-coded instructions declared as 1,000 bytes out of a 4-byte stream: a range-coded stream gives at most 64 x its size + 64.', [...leb(4, B, 1, 2, 0, 1000, 4), 0, 0, 0, 0]);
  addInvalid('range-coded-short', 'Range-coded literals (4 bytes) with a stream of 3 bytes: a stream is at least 4.', [...leb(4, B, 1, 1, 4), ...leb(4 * 4), 0, 0, 0]);
  {
    // The coded instructions of delta-coded-instructions, one byte of their stream flipped.
    const good = files.get('delta-coded-instructions.bdelta') as Uint8Array;
    const bad = good.slice();
    bad[20] ^= 0x5a;
    addInvalid('instructions-corrupt', 'delta-coded-instructions with a byte of its range-coded instructions changed (base delta-coded-instructions.base.bin): refused (the stream does not end where it must, or what it decodes to is not a valid walk).', [...bad]);
    invalid[invalid.length - 1].base = 'delta-coded-instructions.base.bin';
  }
  {
    // The range-coded stream of delta-range-coded, its last byte cut.
    const good = files.get('delta-range-coded.bdelta') as Uint8Array;
    addInvalid('range-coded-truncated', 'delta-range-coded with the last byte of its range-coded literals cut (base delta-range-coded.base.bin): the stream must end exactly at the end of the delta with code 0.', [...good.subarray(0, good.length - 1)]);
    invalid[invalid.length - 1].base = 'delta-range-coded.base.bin';
  }
  {
    // Every modelled kind once, written by hand: 12 literals, output copies at three new
    // distances, at the third-last (7), the second-last (6) and the last (4), then base copies
    // at the repeat displacement (3), a new one (1) and the one before (5).
    const steps: [number, number, number][] = [[0, 12, 0], [2, 4, 8], [2, 4, 16], [2, 4, 12], [7, 4, 0], [6, 4, 0], [4, 4, 0], [3, 4, 0], [1, 4, -40], [5, 4, 0]];
    const out: number[] = [...utf8.encode('aaaabbbbcccc')];
    const e = new ModelEncoder(MODEL_SIZE);
    const lits = new ModelEncoder(65536);
    out.forEach((b, i) => lits.tree(i ? 256 * out[i - 1] : 0, 8, b));
    let p = 0;
    let r = [0, 0];
    let d = [0, 0, 0];
    for (const [kind, n, x] of steps) {
      e.tree(8 * p, 3, kind);
      e.num(kind, n);
      p = kind;
      if (kind === 0) continue;
      if (kind === 1) {
        e.num(8, (x - r[0] >= 0 ? 2 * (x - r[0]) : -2 * (x - r[0]) - 1) + 1);
        r = [x, r[0]];
      } else if (kind === 5) r = [r[1], r[0]];
      else if (kind === 2) {
        e.num(9, x - n + 1);
        d = [x, d[0], d[1]];
      } else if (kind === 6) d = [d[1], d[0], d[2]];
      else if (kind === 7) d = [d[2], d[0], d[1]];
      const w = out.length;
      for (let j = 0; j < n; j++) out.push(kind % 2 && kind !== 7 ? MOVED_BASE[w + r[0] + j] : out[w - d[0] + j]);
    }
    const stream = e.finish();
    const target = Uint8Array.from(out);
    const bytes = Uint8Array.from([...leb(target.length, B, steps.length, 4, 12, stream.length), ...stream, ...lits.finish()]);
    files.set('delta-modelled-every-kind.base.bin', MOVED_BASE);
    files.set('delta-modelled-every-kind.target.bin', target);
    files.set('delta-modelled-every-kind.bdelta', bytes);
    valid.push({ name: 'delta-modelled-every-kind', description: 'Every kind of the modelled coding once, written by hand: 12 literals; output copies at new distances 8, 16 and 12, then at the third-last (kind 7), second-last (6) and last (4) distance; base copies at the repeat displacement 0 (3), at a new one, -40 (1), and at the one before, 0 again (5).', base: 'delta-modelled-every-kind.base.bin', delta: 'delta-modelled-every-kind.bdelta', target: 'delta-modelled-every-kind.target.bin', outputLength: target.length, coding: 4, literalCoding: 1, instructionCoding: 4, copies: 9, inserts: 1 });
  }
  // Modelled coding (4): header, then S, the instruction stream (written with the reference's
  // range coder, instructions chosen by hand), then the literal stream.
  const modelled = (L: number, N: number, K: number, write: (e: ModelEncoder) => void, literals: number[] = [], cut = 0, extra: number[] = []): number[] => {
    const e = new ModelEncoder(MODEL_SIZE);
    write(e);
    const stream = [...e.finish()].slice(0, cut ? -cut : undefined).concat(extra);
    return [...leb(L, B, N, 4, K, stream.length), ...stream, ...literals];
  };
  addInvalid('modelled-repeat-ahead', 'Modelled coding: an INSERT of 4 bytes, then a COPY of 4 output bytes at the second-last distance (kind 6), still 0: it would read the bytes it writes.', modelled(8, 2, 4, (e) => {
    e.tree(0, 3, 0);
    e.num(0, 4);
    e.tree(0, 3, 6);
    e.num(6, 4);
  }, [...literalStream(4)]));
  addInvalid('modelled-self-ahead', 'Modelled coding: the first instruction a COPY of 4 output bytes at the repeat distance s = 0: it would read bytes not yet written.', modelled(4, 1, 0, (e) => {
    e.tree(0, 3, 4);
    e.num(4, 4);
  }));
  addInvalid('modelled-copy-out-of-range', `Modelled coding: a COPY of 8 base bytes at displacement ${B - 4} (z = ${2 * (B - 4)}): past the end of the ${B}-byte base.`, modelled(8, 1, 0, (e) => {
    e.tree(0, 3, 1);
    e.num(1, 8);
    e.num(8, 2 * (B - 4) + 1);
  }));
  function literalStream(n: number): Uint8Array {
    const e = new ModelEncoder(65536);
    for (let i = 0; i < n; i++) e.tree(i ? 256 * i : 0, 8, i + 1);
    return e.finish();
  }
  const repeats = (e: ModelEncoder): void => {
    for (let k = 0; k < 64; k++) {
      e.tree(k ? 24 : 0, 3, 3);
      e.num(3, 1);
    }
  };
  addInvalid('modelled-overrun', 'Modelled coding: 64 one-byte repeat copies with the last byte of their instruction stream cut: the decoder would read past the stream\'s end.', modelled(64, 64, 0, repeats, [], 1));
  addInvalid('modelled-trailing', 'Modelled coding: 64 one-byte repeat copies and a byte after their instruction stream: it must end exactly at its S-th byte with code 0.', modelled(64, 64, 0, repeats, [], 0, [0]));
  addInvalid('modelled-count-bomb', 'Modelled coding: 2^20 instructions declared for a 4-byte instruction stream: at most 64 x S + 64.', [...leb(1 << 20, B, 1 << 20, 4, 0, 4), 0, 0, 0, 0]);
  addInvalid('modelled-context', 'Modelled coding with its literal context (5): X = 9, lc 9 of the byte before\'s 8 bits.', [...leb(4, B, 1, 5, 4, 9, 4), 0, 0, 0, 0, 0, 0, 0, 0]);
  addInvalid('modelled-context-bits', 'Modelled coding with its literal context (5): X = 72, lp 4 and lc 8, 12 context bits where at most 10 are allowed.', [...leb(4, B, 1, 5, 4, 72, 4), 0, 0, 0, 0, 0, 0, 0, 0]);
  addInvalid('modelled-literals-short', 'Modelled coding: an INSERT of 4 bytes with a literal stream of 3 bytes: a stream is at least 4.', modelled(4, 1, 4, (e) => {
    e.tree(0, 3, 0);
    e.num(0, 4);
  }, [0, 0, 0]));
  files.set(
    'byte-delta.json',
    utf8.encode(
      JSON.stringify(
        {
          description: 'Byte delta vectors (docs/FORMAT.md §16). Valid: applying "delta" to "base" gives exactly "target". Invalid: decoding "delta" against "base" with the given maxOutputBytes must be refused with the listed error before any output is produced. Regenerate with: node --import tsx test/vectors/payloads/generate.ts',
          valid,
          invalid,
        },
        null,
        2,
      ) + '\n',
    ),
  );
  return files;
}
