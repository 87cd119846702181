/**
 * The byte delta's modelled coding (coding 4, docs/FORMAT.md §16), build side: a cost-aware
 * parse of the target into inserts and copies, and the range coder that writes them.
 *
 * The parse is an optimal parse over windows of 4096 target bytes (as zstd's at -19): every
 * position's cheapest arrival, with the repeat state along that arrival (the last two base
 * displacements, the last three output distances), so a re-exported graph that names each node's
 * output again as the next node's input pays a few bits for a copy at a distance used just
 * before, and a renamed constant's digit costs one literal between two repeat copies. Candidates
 * at each position: the five repeat offsets (from 2 bytes) and a hash chain of 5-byte windows
 * over the base and the target written so far (32 deep). A match of 256 bytes or more is taken
 * whole. The first parse prices by static estimates, the next ones by the probabilities the
 * coding of the one before ended with. Deterministic: the same inputs always give the same bytes.
 */
import { MODEL_NUMBERS, MODEL_SIZE } from '../core/byte-delta.ts';

/**
 * The literals' context (§16, codings 4 and 5): the high `lc` bits of the output byte before a
 * literal and the low `lp` bits of its output position. Coding 4 is lc 8, lp 0.
 */
export interface LiteralContext {
  lc: number;
  lp: number;
}

/** Coding 4's literal context: the whole byte before. */
export const BYTE_BEFORE: LiteralContext = { lc: 8, lp: 0 };

/** The tree (0 to 2^(lc+lp) - 1) that codes the literal at output position `i` of `out`. */
export function literalTree(out: Uint8Array, i: number, { lc, lp }: LiteralContext): number {
  return ((i & ((1 << lp) - 1)) << lc) | ((i ? out[i - 1] : 0) >> (8 - lc));
}

/**
 * The contexts the encoder weighs: the byte before alone (text, names), the position alone (a
 * float32 or float16 tensor's bytes: its exponent bytes recur at one position in 4 or 2, the
 * mantissa bytes are close to random whatever came before), and mixes of the two.
 */
const CONTEXTS: readonly LiteralContext[] = [0, 1, 2].flatMap((lp) => [0, 1, 2, 3, 4, 8].map((lc) => ({ lc, lp })));

/** Bits a decision costs at each 11-bit probability (of the outcome taken). */
const LOG2 = new Float64Array(2049).map((_, q) => (q ? -Math.log2(q / 2048) : 24));

/** The literal bytes the context is chosen on: the first 2 MiB (a model file's new tensors, past its frame's few literals). */
const CHOOSE_ON = 1 << 21;

/**
 * The literal context under which the literals `ops` insert into `target` code smallest (the
 * adaptive coder simulated over the first `chooseOn` of them, {@link CHOOSE_ON} unless given; the
 * byte before on a tie, so deltas that gain nothing keep coding 4).
 */
export function chooseLiteralContext(target: Uint8Array, ops: readonly ModelOp[], chooseOn = CHOOSE_ON): LiteralContext {
  // The literals weighed, in order: each one's value, the byte before it and its position's low
  // bits (all a context reads), gathered once for every context.
  let count = 0;
  for (const op of ops) if (op.kind === 0 && count < chooseOn) count += Math.min(op.length, chooseOn - count);
  const value = new Uint8Array(count);
  const before = new Uint8Array(count);
  const position = new Uint8Array(count);
  let k = 0;
  let w = 0;
  for (const op of ops) {
    if (k >= count) break;
    if (op.kind === 0) {
      const n = Math.min(op.length, count - k);
      for (let i = w; i < w + n; i++, k++) {
        value[k] = target[i];
        before[k] = i ? target[i - 1] : 0;
        position[k] = i & 3;
      }
    }
    w += op.length;
  }
  let best = BYTE_BEFORE;
  let bestBits = Infinity;
  for (const ctx of [BYTE_BEFORE, ...CONTEXTS.filter((c) => c.lc !== 8 || c.lp !== 0)]) {
    const p = new Uint16Array(256 << (ctx.lc + ctx.lp)).fill(1024);
    // A context must save more than the byte X costs to be worth naming.
    const named = ctx === BYTE_BEFORE ? 0 : 8;
    // The bits only grow: a context past the best total so far cannot be chosen, and is dropped
    // there (checked every STRIDE literals; the choice is the one the whole sums would make).
    const limit = bestBits - named;
    const lc = ctx.lc;
    const lpMask = (1 << ctx.lp) - 1;
    const lcShift = 8 - lc;
    let bits = 0;
    for (let from = 0; from < count && bits < limit; from += STRIDE) {
      const to = Math.min(count, from + STRIDE);
      for (let j = from; j < to; j++) {
        const base = (((position[j] & lpMask) << lc) | (before[j] >> lcShift)) << 8;
        const v = value[j];
        for (let t = 1, b = 7; b >= 0; b--) {
          // Without branches (the bits of a float's mantissa are a coin toss each): for x = 1,
          // LOG2[2048 - q] and q - (q >> 5); for x = 0, LOG2[q] and q + ((2048 - q) >> 5).
          const x = (v >> b) & 1;
          const q = p[base + t];
          bits += LOG2[q + x * (2048 - 2 * q)];
          p[base + t] = q + ((((2048 - q) >> 5) & (x - 1)) - ((q >> 5) & -x));
          t = 2 * t + x;
        }
      }
    }
    if (bits + named < bestBits) {
      best = ctx;
      bestBits = bits + named;
    }
  }
  return best;
}

/** Literals weighed between two checks of a context against the best so far. */
const STRIDE = 4096;

/** One instruction of the modelled coding: kind 0 insert, 1-7 copies (see §16), `value` the coded field (z or g) for kinds 1 and 2. */
export interface ModelOp {
  kind: number;
  length: number;
  value: number;
}

/** LZMA's binary range encoder with adaptive 11-bit probabilities (the decoder is src/core/byte-delta.ts's). */
export class ModelEncoder {
  /** The code written so far: `out`'s first `written` bytes (a buffer that doubles). */
  private out = new Uint8Array(1024);
  private written = 0;
  readonly p: Uint16Array;
  private low = 0;
  private range = 0xffffffff;
  private cache = 0;
  private pending = 1;
  private first = true;
  constructor(size: number) {
    this.p = new Uint16Array(size).fill(1024);
  }
  private shiftLow(): void {
    if (this.low < 0xff000000 || this.low >= 0x100000000) {
      const carry = this.low >= 0x100000000 ? 1 : 0;
      this.emit((this.cache + carry) & 0xff);
      for (; this.pending > 1; this.pending--) this.emit((0xff + carry) & 0xff);
      this.pending = 0;
      this.cache = (this.low / 0x1000000) & 0xff;
    }
    this.pending++;
    // low < 2^33: its low 24 bits survive ToInt32.
    this.low = (this.low & 0xffffff) * 256;
  }
  private emit(b: number): void {
    if (!this.first) {
      if (this.written === this.out.length) {
        const next = new Uint8Array(2 * this.out.length);
        next.set(this.out);
        this.out = next;
      }
      this.out[this.written++] = b;
    } else if (b) throw new RangeError(`byte delta: the range coder's first byte is ${b}, expected 0`);
    this.first = false;
  }
  bit(i: number, bit: number): void {
    const q = this.p[i];
    const bound = (this.range >>> 11) * q;
    if (bit) {
      this.low += bound;
      this.range -= bound;
      this.p[i] = q - (q >> 5);
    } else {
      this.range = bound;
      this.p[i] = q + ((2048 - q) >> 5);
    }
    while (this.range < 0x1000000) {
      this.range *= 256;
      this.shiftLow();
    }
  }
  /**
   * The literals `target[from..to)`, each an 8-bit tree in its context `ctx` (as {@link tree} over
   * {@link literalTree} codes them, the same bytes): the coder's state in locals for the run, the
   * hot loop of a byte delta whose changed bytes are many (a GGUF model's changed blocks).
   */
  literals(target: Uint8Array, from: number, to: number, ctx: LiteralContext): void {
    const p = this.p;
    const lpMask = (1 << ctx.lp) - 1;
    const lcShift = 8 - ctx.lc;
    let low = this.low;
    let range = this.range;
    for (let i = from; i < to; i++) {
      const base = (((i & lpMask) << ctx.lc) | ((i ? target[i - 1] : 0) >> lcShift)) * 256;
      const v = target[i];
      for (let t = 1, b = 7; b >= 0; b--) {
        const x = (v >> b) & 1;
        const q = p[base + t];
        const bound = (range >>> 11) * q;
        if (x) {
          low += bound;
          range -= bound;
          p[base + t] = q - (q >> 5);
        } else {
          range = bound;
          p[base + t] = q + ((2048 - q) >> 5);
        }
        t = 2 * t + x;
        while (range < 0x1000000) {
          range *= 256;
          this.low = low;
          this.shiftLow();
          low = this.low;
        }
      }
    }
    this.low = low;
    this.range = range;
  }
  tree(base: number, n: number, v: number): void {
    let t = 1;
    for (let b = n - 1; b >= 0; b--) {
      const x = (v >>> b) & 1;
      this.bit(base + t, x);
      t = 2 * t + x;
    }
  }
  /** `v` from 1 to 2^32 - 1 in number model `m`. */
  num(m: number, v: number): void {
    const base = MODEL_NUMBERS + m * 1056;
    const top = 31 - Math.clz32(v);
    this.tree(base, 5, top);
    for (let i = top - 1; i >= 0; i--) this.bit(base + 32 + top * 32 + i, Math.floor(v / 2 ** i) & 1);
  }
  finish(): Uint8Array {
    for (let i = 0; i < 5; i++) this.shiftLow();
    return this.out.slice(0, this.written);
  }
}

/** The two streams of a modelled delta: the instructions, and the literals (each in its context, `ctx`). */
export function encodeModelled(target: Uint8Array, ops: readonly ModelOp[], ctx: LiteralContext = BYTE_BEFORE): { instructions: Uint8Array; literals: Uint8Array; literalCount: number; prices: Prices } {
  const ins = new ModelEncoder(MODEL_SIZE);
  const lit = new ModelEncoder(256 << (ctx.lc + ctx.lp));
  let prev = 0;
  let w = 0;
  let literalCount = 0;
  for (const op of ops) {
    ins.tree(prev * 8, 3, op.kind);
    ins.num(op.kind, op.length);
    if (op.kind === 1) ins.num(8, op.value + 1);
    else if (op.kind === 2) ins.num(9, op.value + 1);
    else if (op.kind === 0) {
      lit.literals(target, w, w + op.length, ctx);
      literalCount += op.length;
    }
    prev = op.kind;
    w += op.length;
  }
  return { instructions: ins.finish(), literals: literalCount ? lit.finish() : new Uint8Array(0), literalCount, prices: new Prices(ins.p, lit.p, ctx) };
}

const HASH = 5;
const CHAIN = 32;
const SUFFICIENT = 256;
const BLOCK = 4096;

/**
 * The repeat state after a copy of kind `kd` (§16): the base displacements r0, r1 and the output
 * distances s0, s1, s2 at `f` of `from`, written at `t` of `to`; `x` is the copy's displacement
 * (base) or distance (output).
 */
export function advance(from: Float64Array, f: number, to: Float64Array, t: number, kd: number, x: number): void {
  let r0 = from[f];
  let r1 = from[f + 1];
  let s0 = from[f + 2];
  let s1 = from[f + 3];
  let s2 = from[f + 4];
  if (kd === 1) [r0, r1] = [x, r0];
  else if (kd === 5) [r0, r1] = [r1, r0];
  else if (kd === 2) [s0, s1, s2] = [x, s0, s1];
  else if (kd === 6) [s0, s1] = [s1, s0];
  else if (kd === 7) [s0, s1, s2] = [s2, s0, s1];
  to[t] = r0;
  to[t + 1] = r1;
  to[t + 2] = s0;
  to[t + 3] = s1;
  to[t + 4] = s2;
}


/**
 * What the parse pays for a field: static estimates, or the bits under the probabilities a
 * first parse's coding ended with (the second parse then prices as the coder will code).
 */
export class Prices {
  private readonly numCache = new Float64Array(10 * 4096).fill(-1);
  constructor(private readonly ins?: Uint16Array, private readonly lit?: Uint16Array, readonly ctx: LiteralContext = BYTE_BEFORE) {}
  private treeBits(p: Uint16Array, base: number, n: number, v: number): number {
    let bits = 0;
    for (let t = 1, b = n - 1; b >= 0; b--) {
      const x = (v >>> b) & 1;
      bits += LOG2[x ? 2048 - p[base + t] : p[base + t]];
      t = 2 * t + x;
    }
    return bits;
  }
  kind(prev: number, kind: number): number {
    return this.ins ? this.treeBits(this.ins, prev * 8, 3, kind) : [2, 3, 3, 1.5, 2.5, 2.5, 3, 3][kind];
  }
  num(m: number, v: number): number {
    const top = 31 - Math.clz32(v);
    if (!this.ins) return 3 + top;
    const small = v < 4096;
    if (small && this.numCache[m * 4096 + v] >= 0) return this.numCache[m * 4096 + v];
    const base = MODEL_NUMBERS + m * 1056;
    let bits = this.treeBits(this.ins, base, 5, top);
    for (let i = top - 1; i >= 0; i--) {
      const q = this.ins[base + 32 + top * 32 + i];
      bits += LOG2[Math.floor(v / 2 ** i) & 1 ? 2048 - q : q];
    }
    if (small) this.numCache[m * 4096 + v] = bits;
    return bits;
  }
  /** The literal at output position `i` of `target`. */
  literal(target: Uint8Array, i: number, order0: Float64Array): number {
    return this.lit ? this.treeBits(this.lit, literalTree(target, i, this.ctx) * 256, 8, target[i]) : order0[target[i]];
  }
}

/**
 * The modelled instructions that rebuild `target` from `base` (module doc). The hash chain holds
 * an entry for each byte of both: the caller keeps them small enough.
 */
export function parseModelled(base: Uint8Array, target: Uint8Array, prices = new Prices()): ModelOp[] {
  const B = base.length;
  const T = target.length;
  const at = (q: number): number => (q < B ? base[q] : target[q - B]);
  let bits = 12;
  while (1 << bits < B + T && bits < 24) bits++;
  const head = new Int32Array(1 << bits).fill(-1);
  const chain = new Int32Array(B + T);
  const hashOf = (q: number): number => {
    let h = 0;
    for (let j = 0; j < HASH; j++) h = Math.imul(h ^ at(q + j), 0x01000193);
    return Math.imul(h, 0x9e3779b1) >>> (32 - bits);
  };
  const insert = (q: number): void => {
    const s = hashOf(q);
    chain[q] = head[s];
    head[s] = q;
  };
  for (let q = 0; q + HASH <= B; q++) insert(q);
  let indexed = 0; // target positions below this are in the chain
  // Literal prices from the target's byte histogram.
  const hist = new Float64Array(256).fill(1);
  for (let i = 0; i < T; i++) hist[target[i]]++;
  const litBits = hist.map((c) => Math.max(1, Math.log2((T + 256) / c)));
  const baseLen = (q: number, i: number, max: number): number => {
    if (q < 0 || q >= B) return 0;
    let n = 0;
    const lim = Math.min(max, B - q);
    while (n < lim && base[q + n] === target[i + n]) n++;
    return n;
  };
  const selfLen = (j: number, i: number, max: number): number => {
    if (j < 0 || j >= i) return 0;
    let n = 0;
    const lim = Math.min(max, i - j);
    while (n < lim && target[j + n] === target[i + n]) n++;
    return n;
  };

  // The arrivals of one window: price, how (a literal: kind 0; a copy: its kind, length and
  // field), the literal run it ends, and the repeat state after it (5 numbers each, see advance).
  const N = BLOCK + 1;
  const price = new Float64Array(N);
  const kind = new Int8Array(N);
  const len = new Int32Array(N);
  const val = new Float64Array(N);
  const run = new Int32Array(N);
  const rep = new Float64Array(5 * N);
  const ops: ModelOp[] = [];
  const push = (k: number, n: number, v: number): void => {
    const last = ops[ops.length - 1];
    if (k === 0 && last?.kind === 0) last.length += n;
    else ops.push({ kind: k, length: n, value: v });
  };
  const state = new Float64Array(5);
  let carried = 0; // the literal run the window starts in
  let carriedKind = 0; // and the kind before it
  const cands: number[] = []; // triples: kind, length, source (base offset or target position)
  const add = (kd: number, n: number, src: number, min: number): void => {
    if (n >= min) cands.push(kd, n, src);
  };
  for (let s = 0; s < T; ) {
    const E = Math.min(BLOCK, T - s);
    price.fill(Infinity);
    price[0] = 0;
    run[0] = carried;
    rep.set(state);
    let long = -1; // a copy of SUFFICIENT bytes or more found at window position `stop`
    let stop = E;
    for (let k = 0; k < E; k++) {
      const i = s + k;
      const here = price[k];
      const r = 5 * k;
      for (; indexed < i && indexed + HASH <= T; indexed++) insert(B + indexed);
      // A literal.
      const prev = k ? kind[k] : carriedKind;
      const lp = here + prices.literal(target, i, litBits) + (run[k] ? prices.num(0, run[k] + 1) - prices.num(0, run[k]) : prices.kind(prev, 0) + prices.num(0, 1));
      if (lp < price[k + 1]) {
        price[k + 1] = lp;
        kind[k + 1] = 0;
        len[k + 1] = 1;
        run[k + 1] = run[k] + 1;
        rep.copyWithin(r + 5, r, r + 5);
      }
      // Copies: the repeat offsets, then the chain's.
      const max = Math.min(T - i, SUFFICIENT);
      cands.length = 0;
      const d0 = rep[r];
      const d1 = rep[r + 1];
      const s0 = rep[r + 2];
      const s1 = rep[r + 3];
      const s2 = rep[r + 4];
      add(3, baseLen(i + d0, i, max), i + d0, 2);
      if (d1 !== d0) add(5, baseLen(i + d1, i, max), i + d1, 2);
      if (s0 > 0) add(4, selfLen(i - s0, i, max), i - s0, 2);
      if (s1 > 0 && s1 !== s0) add(6, selfLen(i - s1, i, max), i - s1, 2);
      if (s2 > 0 && s2 !== s0 && s2 !== s1) add(7, selfLen(i - s2, i, max), i - s2, 2);
      const reps = cands.length;
      if (i + HASH <= T) {
        for (let q = head[hashOf(B + i)], depth = 0; q >= 0 && depth < CHAIN; q = chain[q], depth++) {
          if (q < B) {
            if (q - i !== d0 && q - i !== d1) add(1, baseLen(q, i, max), q, HASH);
          } else if (i - (q - B) !== s0 && i - (q - B) !== s1 && i - (q - B) !== s2) add(2, selfLen(q - B, i, max), q - B, HASH);
        }
      }
      for (let x = 0; x < cands.length; x += 3) if (cands[x + 1] >= SUFFICIENT && (long < 0 || cands[x + 1] > cands[long + 1])) long = x;
      if (long >= 0) {
        stop = k;
        break;
      }
      let covered = 0;
      for (let x = 0; x < cands.length; x += 3) {
        const kd = cands[x];
        const n = Math.min(cands[x + 1], E - k);
        const src = cands[x + 2];
        let z = 0;
        if (kd === 1) {
          const d = src - i - d0;
          z = d >= 0 ? 2 * d : -2 * d - 1;
        }
        const fixed = here + prices.kind(prev, kd) + (kd === 1 ? prices.num(8, z + 1) : 0);
        for (let m = x < reps ? 2 : Math.max(HASH, covered + 1); m <= n; m++) {
          const g = kd === 2 ? i - src - m : z;
          const p = fixed + prices.num(kd, m) + (kd === 2 ? prices.num(9, g + 1) : 0);
          if (p < price[k + m]) {
            price[k + m] = p;
            kind[k + m] = kd;
            len[k + m] = m;
            val[k + m] = g;
            run[k + m] = 0;
            advance(rep, r, rep, r + 5 * m, kd, kd === 1 ? src - i : i - src);
          }
        }
        if (x >= reps && n > covered) covered = n;
      }
    }
    // The cheapest path to the window's end, back to front.
    const path: ModelOp[] = [];
    for (let e = stop; e > 0; ) {
      path.push({ kind: kind[e], length: len[e], value: val[e] });
      e -= len[e];
    }
    for (let x = path.length - 1; x >= 0; x--) push(path[x].kind, path[x].length, path[x].value);
    state.set(rep.subarray(5 * stop, 5 * stop + 5));
    carried = run[stop];
    if (stop) carriedKind = kind[stop];
    s += stop;
    if (long >= 0) {
      // The long copy, extended as far as it goes.
      const kd = cands[long];
      const src = cands[long + 2];
      const base = kd === 1 || kd === 3 || kd === 5;
      const n = base ? baseLen(src, s, T - s) : selfLen(src, s, T - s);
      let v = 0;
      if (kd === 1) {
        const d = src - s - state[0];
        v = d >= 0 ? 2 * d : -2 * d - 1;
      } else if (kd === 2) v = s - src - n;
      advance(state, 0, state, 0, kd, base ? src - s : s - src);
      push(kd, n, v);
      carried = 0;
      carriedKind = kd;
      s += n;
    }
  }
  return ops;
}
