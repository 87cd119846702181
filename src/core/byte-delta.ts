/**
 * The byte delta (docs/FORMAT.md §16): a file rebuilt from another file's bytes by COPY(offset,
 * length) instructions that take bytes of the base or of the output already written, and
 * INSERT(length) instructions that take the next bytes of a literal section, raw or range-coded with codec `xr`'s coder (one byte a value,
 * no raw low bytes), or, in the modelled coding, each field of an instruction through its own model. It carries a model file's frame when its structure changed (format v7: the
 * base file rebuilt into one with the target's structure, kept and renamed tensors as copies of
 * the base's bytes, new ones inserted).
 *
 * Decoding is pure and bounded: the output length is declared up front and capped by the caller,
 * every instruction is read and checked (lengths, copy ranges against the base, the totals)
 * before the output is allocated, and nothing is written past the declared length. Device code:
 * no I/O, no node:* or tfjs imports.
 */

import { PayloadFormatError } from './errors.ts';

/** Literal section coding: the inserted bytes as they are. */
export const LITERALS_RAW = 0;
/** Literal section coding: the inserted bytes range-coded (codec `xr`'s coder, 0 low bytes). */
export const LITERALS_RANGE_CODED = 1;

/** The largest base a copy can address: 2^31 - 1 bytes. */
export const BYTE_DELTA_MAX_BASE = 0x7fffffff;
/** The longest instruction: 2^30 - 1 bytes (`4 x length + kind` fits 32 bits). */
export const BYTE_DELTA_MAX_SPAN = 0x3fffffff;

/** Coding bit: the instructions range-coded (added to the literal coding, {@link LITERALS_RAW} or {@link LITERALS_RANGE_CODED}). */
export const INSTRUCTIONS_RANGE_CODED = 2;
/**
 * Coding 4: the instructions' fields (kind, length, offset) and the literals each through their
 * own adaptive models, with repeat offsets: two streams of one binary range coder (§16).
 */
export const MODELLED = 4;
/**
 * Coding 5: the modelled coding with the literals' context chosen by the delta (§16): `X` gives
 * `lc` (0 to 8), the high bits of the byte before that are context, and `lp` (0 to 4), the low
 * bits of the literal's output position (a float32 tensor's exponent bytes sit at one position
 * in 4), `lc + lp` at most 10. Coding 4 is `lc` = 8, `lp` = 0.
 */
export const MODELLED_CONTEXT = 5;
/** The most context bits (`lc + lp`) a coding-5 delta may ask for: 2^10 trees of 256 probabilities. */
export const MODELLED_MAX_CONTEXT_BITS = 10;
/** Modelled coding: probabilities of the instruction stream (8 kind trees of 8, 10 number models of 1056) and of the literals (256 trees of 256). */
export const MODEL_NUMBERS = 64;
export const MODEL_SIZE = MODEL_NUMBERS + 10 * 1056;

/**
 * Range-coded bytes come out of at most this many times their coded size (plus 64): the coder's
 * probabilities stop 31/2048 short of certainty, so a byte costs at least 8 x 0.0222 bits. A
 * larger declared count is hostile, and refused before anything is decoded.
 */
const MAX_RANGE_CODED_RATIO = 64;

/** The varints that open a byte delta. */
export interface ByteDeltaHeader {
  /** Length of the rebuilt output, in bytes. */
  outputLength: number;
  /** Length of the base the copies read from; the delta applies to no other. */
  baseLength: number;
  /** Number of instructions (each produces at least one byte). */
  instructionCount: number;
  /** {@link LITERALS_RAW} or {@link LITERALS_RANGE_CODED} (bit 0 of the coding; range-coded in the modelled codings). */
  literalCoding: number;
  /** Whether the instructions are range-coded (bit 1 of the coding, {@link INSTRUCTIONS_RANGE_CODED}; always in the modelled codings). */
  instructionsCoded: boolean;
  /** Total bytes the INSERT instructions take from the literal section. */
  literalLength: number;
  /** Where the instructions start in the delta. */
  instructionsAt: number;
  /** Coding 4 ({@link MODELLED}) or 5 ({@link MODELLED_CONTEXT}): instructions and literals through their fields' models. */
  modelled: boolean;
  /** Modelled: the literal context, the byte before's high `lc` bits and the output position's low `lp` bits (coding 4: 8 and 0). */
  lc?: number;
  lp?: number;
  /** With coded instructions: their bytes once decoded, and the coded stream's length (with {@link MODELLED}, only the stream's length). */
  instructionBytes?: number;
  codedInstructionBytes?: number;
}

function fail(where: string, message: string, details: Record<string, unknown> = {}): never {
  throw new PayloadFormatError(`${where}: ${message}; the payload is corrupt or was not made for this file: fetch it again or fall back to the full model`, details);
}

// One unsigned LEB128 varint of at most 5 bytes and 32 bits (as src/core/varint.ts reads them);
// the value is left in `value` and the next offset returned, -1 when truncated or too long.
let value = 0;
function readVarint(bytes: Uint8Array, at: number): number {
  let v = 0;
  for (let shift = 0, p = at; ; shift += 7) {
    if (p >= bytes.length) return -1;
    const b = bytes[p++];
    if (shift === 28) {
      if (b > 0x0f) return -1;
      value = v + b * 0x10000000;
      return p;
    }
    v |= (b & 0x7f) << shift;
    if (b < 0x80) {
      value = v >>> 0;
      return p;
    }
  }
}

function varintAt(bytes: Uint8Array, at: number, where: string, what: string): number {
  const next = readVarint(bytes, at);
  if (next < 0) fail(where, `${what} at byte ${at} must be a varint of at most 5 bytes and 32 bits, found ${at >= bytes.length ? 'the end of the delta' : 'a truncated or longer one'}`, { at });
  return next;
}

/**
 * Read and check the header of a byte delta (`where` names it in errors).
 * @throws PayloadFormatError when a varint is malformed, the output is longer than
 *   `maxOutputBytes`, the coding is unknown, or the instruction count or the coded instructions cannot fit.
 */
export function readByteDeltaHeader(delta: Uint8Array, maxOutputBytes: number, where = 'byte delta'): ByteDeltaHeader {
  const fields: number[] = [];
  let at = 0;
  for (const what of ['the output length', 'the base length', 'the instruction count', 'the literal coding', 'the literal length']) {
    at = varintAt(delta, at, where, what);
    fields.push(value);
  }
  const [outputLength, baseLength, instructionCount, coding, literalLength] = fields;
  if (outputLength > maxOutputBytes) fail(where, `the output is declared ${outputLength} bytes, the limit is ${maxOutputBytes}`, { outputLength, maxOutputBytes });
  if (baseLength > BYTE_DELTA_MAX_BASE) fail(where, `the base is declared ${baseLength} bytes, at most ${BYTE_DELTA_MAX_BASE}`);
  if (coding > 5) fail(where, `the coding must be 0 to 5 (bit 0: literals range-coded, bit 1: instructions range-coded; 4: modelled; 5: modelled with its literal context), found ${coding}`);
  if (literalLength > outputLength) fail(where, `${literalLength} literal bytes declared for an output of ${outputLength}`);
  // The modelled codings range-code both their streams.
  const modelled = coding >= MODELLED;
  const h: ByteDeltaHeader = { outputLength, baseLength, instructionCount, literalCoding: modelled ? LITERALS_RANGE_CODED : coding & 1, instructionsCoded: modelled || (coding & 2) !== 0, literalLength, instructionsAt: at, modelled, lc: 8, lp: 0 };
  // Every instruction takes at least one byte of the instructions and gives at least one of output.
  let room = delta.length - at;
  if (coding === MODELLED_CONTEXT) {
    at = varintAt(delta, at, where, 'the literal context');
    h.lc = value & 15;
    h.lp = value >>> 4;
    if (h.lc > 8 || h.lp > 4 || h.lc + h.lp > MODELLED_MAX_CONTEXT_BITS) fail(where, `the literal context X = 16 x lp + lc must have lc 0 to 8, lp 0 to 4 and lc + lp at most ${MODELLED_MAX_CONTEXT_BITS}, found ${value} (lc ${h.lc}, lp ${h.lp})`, { context: value });
  }
  if (h.modelled) {
    // One stream of S bytes: an instruction decodes at least 8 binary decisions, at least 0.18 bits.
    at = varintAt(delta, at, where, 'the instruction stream length');
    if (value > delta.length - at) fail(where, `the instruction stream is declared ${value} bytes, ${delta.length - at} remain`);
    h.codedInstructionBytes = value;
    h.instructionsAt = at;
    room = MAX_RANGE_CODED_RATIO * value + 64;
  } else if (h.instructionsCoded) {
    at = varintAt(delta, at, where, 'the instruction bytes');
    const raw = value;
    at = varintAt(delta, at, where, 'the coded instruction bytes');
    const coded = value;
    if (coded > delta.length - at) fail(where, `the coded instructions are declared ${coded} bytes, ${delta.length - at} remain`);
    if (raw > MAX_RANGE_CODED_RATIO * coded + 64) fail(where, `${raw} instruction bytes cannot come out of a ${coded}-byte range-coded stream (at most ${MAX_RANGE_CODED_RATIO} x + 64)`, { raw, coded });
    h.instructionBytes = raw;
    h.codedInstructionBytes = coded;
    h.instructionsAt = at;
    room = raw;
  }
  if (instructionCount > outputLength || instructionCount > room) {
    fail(where, `${instructionCount} instructions cannot fit: at most one per output byte (${outputLength}) and per instruction byte (${room})`, { instructionCount });
  }
  return h;
}

// What an instruction reader leaves for walk(): the instruction's kind (0 INSERT, 1 COPY from
// the base, 2 COPY from the output), its length, and where its copy reads from.
let kind = 0;
let length = 0;
let from = 0;

/**
 * Walk `h.instructionCount` instructions, each given by `next(k, written)` (which sets kind,
 * length and from): check each one and, when `out` is given, carry it out (`literal(at, n)`
 * writes the next n literal bytes at output byte `at`).
 */
function walk(base: Uint8Array | ByteDeltaBase, h: ByteDeltaHeader, where: string, next: (k: number, written: number) => void, out?: Uint8Array, literal?: (at: number, n: number) => void): void {
  let written = 0;
  let inserted = 0;
  for (let k = 0; k < h.instructionCount; k++) {
    next(k, written);
    if (length === 0) fail(where, `instruction ${k} has length 0; every instruction gives at least one byte`, { instruction: k });
    if (length > h.outputLength - written) fail(where, `instruction ${k} gives ${length} bytes at output byte ${written}, past the declared output length ${h.outputLength}`, { instruction: k });
    if (kind === 1) {
      if (from < 0 || from + length > h.baseLength) fail(where, `copy ${k} reads base bytes ${from}..${from + length}, the base is ${h.baseLength} bytes`, { instruction: k, offset: from, length });
      if (out) {
        if (base instanceof Uint8Array) out.set(base.subarray(from, from + length), written);
        else base.copy(from, out.subarray(written, written + length));
      }
    } else if (kind === 2) {
      // A copy of output already written (a name or a tensor that appears twice in the file):
      // it reads only bytes written before it.
      if (from < 0 || from + length > written) fail(where, `copy ${k} reads ${length} output bytes from output byte ${from}: only the ${written} bytes written before it`, { instruction: k, from, length });
      out?.copyWithin(written, from, from + length);
    } else {
      if (length > h.literalLength - inserted) fail(where, `insert ${k} takes ${length} literal bytes after ${inserted}, past the ${h.literalLength} declared`, { instruction: k });
      literal?.(written, length);
      inserted += length;
    }
    written += length;
  }
  if (written !== h.outputLength) fail(where, `the instructions give ${written} bytes, the output is declared ${h.outputLength}`);
  if (inserted !== h.literalLength) fail(where, `the inserts take ${inserted} literal bytes, ${h.literalLength} are declared`);
}

/**
 * The reader of varint instructions (codings 0-3) from byte `at` of `bytes`; `end()` is where they end.
 * A base copy's offset is coded from the base offset after the last base copy (the cursor), an
 * output copy's as its gap back from the bytes it writes.
 */
function varintInstructions(bytes: Uint8Array, at: number, where: string) {
  let cursor = 0;
  return {
    next(k: number, written: number): void {
      at = varintAt(bytes, at, where, `instruction ${k}`);
      kind = value % 4;
      length = Math.floor(value / 4);
      if (kind === 3) fail(where, `instruction ${k} is of kind 3; the kinds are 0 (INSERT), 1 (COPY from the base) and 2 (COPY from the output)`, { instruction: k });
      if (kind) at = varintAt(bytes, at, where, `the offset of copy ${k}`);
      if (kind === 1) cursor = (from = cursor + (value & 1 ? -(value + 1) / 2 : value / 2)) + length;
      else from = written - length - value;
    },
    end: () => at,
  };
}

/**
 * The reader of a modelled instruction stream (coding 4): each kind in the context of the one
 * before, each length and new offset through its own model, copies at the last two base
 * displacements (offset - output position) and the last three output distances.
 */
function modelledInstructions(stream: Uint8Array, where: string) {
  const d = rangeDecoder(stream, MODEL_SIZE, `${where} instructions`);
  let p = 0;
  let r0 = 0;
  let r1 = 0;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  return {
    next(k: number, written: number): void {
      p = d.tree(p * 8, 3);
      length = d.num(p);
      if (p === 1) [r0, r1] = [r0 + zigzag(d.num(8) - 1), r0];
      else if (p === 5) [r0, r1] = [r1, r0];
      else if (p === 2) [s0, s1, s2] = [length + d.num(9) - 1, s0, s1];
      else if (p === 6) [s0, s1] = [s1, s0];
      else if (p === 7) [s0, s1, s2] = [s2, s0, s1];
      kind = p === 1 || p === 3 || p === 5 ? 1 : p && 2;
      from = kind === 1 ? written + r0 : written - s0;
    },
    ended: d.ended,
  };
}

const zigzag = (z: number): number => (z & 1 ? -(z + 1) / 2 : z / 2);

/**
 * LZMA's binary range decoder (as codec `xr`'s: 11-bit probabilities starting at 1024, shift 5)
 * over one stream whose first 4 bytes start the code, with `size` probabilities; it refuses to
 * read past the stream's end, so a hostile stream stops within 360 decisions a byte.
 */
function rangeDecoder(bytes: Uint8Array, size: number, where: string) {
  if (bytes.length < 4) fail(where, `a range-coded stream is at least 4 bytes, found ${bytes.length}`);
  const p = new Uint16Array(size).fill(1024);
  let at = 4;
  let range = 0xffffffff;
  let code = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
  const bit = (i: number): number => {
    const q = p[i];
    const bound = (range >>> 11) * q;
    let b = 0;
    if (code < bound) {
      range = bound;
      p[i] = q + ((2048 - q) >> 5);
    } else {
      code -= bound;
      range -= bound;
      p[i] = q - (q >> 5);
      b = 1;
    }
    if (range < 0x1000000) {
      if (at >= bytes.length) fail(where, `the range-coded stream ends at byte ${at} before its values do`);
      range *= 256;
      code = ((code << 8) | bytes[at++]) >>> 0;
    }
    return b;
  };
  // A bit tree of `n` bits at probabilities base + 1 .. base + 2^n - 1, most significant bit first.
  const tree = (base: number, n: number): number => {
    let t = 1;
    for (let k = 0; k < n; k++) t += t + bit(base + t);
    return t - (1 << n);
  };
  return {
    tree,
    // A number of 1 to 2^32 - 1 in model `m`: its bit length less one (a 5-bit tree), then the bits below its top one.
    num(m: number): number {
      const base = MODEL_NUMBERS + m * 1056;
      const top = tree(base, 5);
      let v = 1;
      for (let i = top - 1; i >= 0; i--) v = 2 * v + bit(base + 32 + top * 32 + i);
      return v;
    },
    ended: () => at === bytes.length && code === 0,
  };
}

/**
 * `n` bytes range-coded as codec `xr`'s high bytes (each a value of one 8-bit tree): none from an
 * empty stream, else a stream of at least 4 bytes that ends exactly with code 0.
 */
function rangeBytes(stream: Uint8Array, n: number, where: string): Uint8Array {
  if (!n) {
    if (stream.length) fail(where, `no values range-coded in ${stream.length} bytes: the stream must be empty`);
    return stream;
  }
  const d = rangeDecoder(stream, 256, where);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = d.tree(0, 8);
  if (!d.ended()) fail(where, `the range-coded stream (${stream.length} bytes for ${n} values) does not end exactly at its end with code 0`);
  return out;
}


/**
 * A byte delta's base read a range at a time, for a base too big to hold whole (an ONNX model's
 * gigabytes of external data): {@link applyByteDelta} reads only the bytes its copies take, once
 * every instruction is checked and the output allocated.
 */
export interface ByteDeltaBase {
  /** The base's length in bytes. */
  readonly length: number;
  /** Fill `into` with the base's bytes from offset `from` (`from + into.length` is at most {@link length}). */
  copy(from: number, into: Uint8Array): void;
}

/**
 * Rebuild a file from `base` and a byte delta. Every instruction is checked before the output is
 * allocated; `base` is only read (a {@link ByteDeltaBase}: only the ranges the copies take, after
 * those checks).
 * @param maxOutputBytes - the largest output the caller accepts (a delta declaring more is refused before anything is allocated)
 * @param where - names the delta in errors, e.g. `payload "rb"`
 * @throws PayloadFormatError naming what was expected and found: a malformed varint, an output
 *   over the cap, a base of another length, a copy outside the base, an instruction past the
 *   declared output, literals that do not add up, or bytes left over.
 */
export function applyByteDelta(base: Uint8Array | ByteDeltaBase, delta: Uint8Array, maxOutputBytes: number, where = 'byte delta'): Uint8Array {
  const h = readByteDeltaHeader(delta, maxOutputBytes, where);
  if (base.length !== h.baseLength) fail(where, `the delta reads a base of ${h.baseLength} bytes, this one is ${base.length}`, { expected: h.baseLength, found: base.length });
  if (h.modelled) {
    const stream = delta.subarray(h.instructionsAt, h.instructionsAt + (h.codedInstructionBytes as number));
    const section = delta.subarray(h.instructionsAt + stream.length);
    const check = modelledInstructions(stream, where);
    walk(base, h, where, check.next);
    if (!check.ended()) fail(where, `the instruction stream does not end exactly at its ${stream.length}th byte with code 0`);
    if (h.literalLength ? section.length < 4 : section.length) fail(where, `the literal stream must be ${h.literalLength ? 'at least 4 bytes' : 'empty'}, found ${section.length}`);
    const out = new Uint8Array(h.outputLength);
    const lc = h.lc as number;
    const lp = h.lp as number;
    const literals = h.literalLength ? rangeDecoder(section, 256 << (lc + lp), `${where} literals`) : null;
    // Each literal byte in the context of the high lc bits of the output byte before it and the low lp bits of its position.
    const mask = (1 << lp) - 1;
    walk(base, h, where, modelledInstructions(stream, where).next, out, (at, n) => {
      for (let i = at; i < at + n; i++) out[i] = (literals as ReturnType<typeof rangeDecoder>).tree((((i & mask) << lc) | ((i ? out[i - 1] : 0) >> (8 - lc))) * 256, 8);
    });
    if (literals && !literals.ended()) fail(where, `the literal stream does not end exactly at its ${section.length}th byte with code 0`);
    return out;
  }
  // The instructions: in the delta, or range-coded there and decoded first (at most 64 x their size).
  let instructions = delta;
  let start = h.instructionsAt;
  let section: Uint8Array;
  if (h.instructionsCoded) {
    const raw = h.instructionBytes as number;
    const coded = h.codedInstructionBytes as number;
    instructions = rangeBytes(delta.subarray(start, start + coded), raw, `${where} instructions`);
    section = delta.subarray(start + coded);
    start = 0;
  }
  const check = varintInstructions(instructions, start, where);
  walk(base, h, where, check.next);
  if (h.instructionsCoded) {
    if (check.end() !== instructions.length) fail(where, `the instructions end before their ${instructions.length} decoded bytes do`);
  } else section = delta.subarray(check.end());
  const literals = h.literalCoding === LITERALS_RAW ? section! : rangeBytes(section!, h.literalLength, `${where} literals`);
  if (literals.length !== h.literalLength) fail(where, `the literal section must be ${h.literalLength} raw bytes, found ${literals.length}`);
  let next = 0;
  const out = new Uint8Array(h.outputLength);
  walk(base, h, where, varintInstructions(instructions, start, where).next, out, (at, n) => out.set(literals.subarray(next, (next += n)), at));
  return out;
}
