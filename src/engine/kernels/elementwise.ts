/**
 * A chain of element-wise ops run as one kernel (issue 63: "chains of element-wise ops fused into
 * one kernel"). The compiled step's fusion pass (src/engine/compiled/fuse.ts) writes an
 * {@link ElementwiseProgram}: inputs (each the output's size, one scalar, or one value per channel
 * of the output's last axis), a few immediate values, registers for the chain's intermediate
 * values, and instructions over them. elementwise.c runs it in blocks with SIMD on the backend's
 * memory; {@link runElementwiseJs} is its scalar twin (the same bits: every op in float32 as tfjs'
 * wasm kernel computes it) and {@link runElementwiseF64} the float64 reference the tests hold both
 * to.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import { simdKernelSwitch, trainKernels } from './train-kernels-simd.ts';
import { asWasm, f32, offsetOf, sizeOf } from './util.ts';

/** Op codes (elementwise.c's enum, in its order). */
export const OP = {
  add: 0, sub: 1, mul: 2, div: 3, max: 4, min: 5, sqdiff: 6, neg: 7, abs: 8, square: 9,
  sqrt: 10, rsqrt: 11, recip: 12, relu: 13, relu6: 14, step: 15, clip: 16,
} as const;
export type OpName = keyof typeof OP;
/** Operands each op reads (step reads its alpha as b; clip its bounds as b and c). */
export const ARITY: Record<OpName, 1 | 2 | 3> = {
  add: 2, sub: 2, mul: 2, div: 2, max: 2, min: 2, sqdiff: 2, neg: 1, abs: 1, square: 1,
  sqrt: 1, rsqrt: 1, recip: 1, relu: 1, relu6: 1, step: 2, clip: 3,
};

/** How an input lines up with the output: value by value, one value, or one per channel (last axis). */
export type InputKind = 'full' | 'scalar' | 'channel';

/**
 * Operands are numbered: 0 the output, 1..inputs.length the inputs, then the immediates, then the
 * registers. Each instruction writes its destination (a register, or the output for the last).
 */
export interface ElementwiseProgram {
  inputs: InputKind[];
  immediates: number[];
  registers: number;
  /** The output's last axis (the channel inputs' length). */
  channels: number;
  code: { op: OpName; dst: number; a: number; b?: number; c?: number }[];
}

/** Why a program is malformed (a bad operand, the last instruction not writing the output), or undefined. */
export function programError(p: ElementwiseProgram): string | undefined {
  const total = 1 + p.inputs.length + p.immediates.length + p.registers;
  const firstRegister = 1 + p.inputs.length + p.immediates.length;
  if (p.code.length === 0) return 'the program has no instructions';
  if (p.inputs.includes('channel') && !(p.channels >= 1)) return `channel inputs need the output's last axis, got ${p.channels}`;
  for (const [k, ins] of p.code.entries()) {
    if (!(ins.op in OP)) return `instruction ${k}: unknown op ${String(ins.op)}`;
    const read = [ins.a, ins.b, ins.c].slice(0, ARITY[ins.op]);
    if (read.some((x) => x === undefined || !Number.isInteger(x) || x < 1 || x >= total)) return `instruction ${k} (${ins.op}) reads operands ${read.join(', ')} of 1..${total - 1}`;
    const last = k === p.code.length - 1;
    if (last ? ins.dst !== 0 : !(ins.dst >= firstRegister && ins.dst < total)) return `instruction ${k} (${ins.op}) writes operand ${ins.dst}: the last writes the output (0), the others a register (${firstRegister}..${total - 1})`;
  }
  return undefined;
}

const fround = Math.fround;
/** tfjs' wasm Maximum and Minimum: a < b ? b : a, b < a ? b : a. */
const pmax = (a: number, b: number) => (a < b ? b : a);
const pmin = (a: number, b: number) => (b < a ? b : a);

const signProbe = new Float32Array(1);
const signBits = new Uint32Array(signProbe.buffer);
/** The float32 sign bit of `x` (a NaN's too: tfjs' Relu zeroes a NaN whose sign bit is set). */
function signBit(x: number): boolean {
  signProbe[0] = x;
  return signBits[0] >>> 31 === 1;
}

/** One op on float32 values, rounded to float32 (round false: the float64 reference). */
function apply(op: OpName, x: number, y: number, z: number, round: (v: number) => number): number {
  switch (op) {
    case 'add': return round(x + y);
    case 'sub': return round(x - y);
    case 'mul': return round(x * y);
    case 'div': return round(x / y);
    case 'max': return pmax(x, y);
    case 'min': return pmin(x, y);
    case 'sqdiff': { const t = round(x - y); return round(t * t); }
    case 'neg': return -x;
    case 'abs': return Math.abs(x);
    case 'square': return round(x * x);
    case 'sqrt': return round(Math.sqrt(x));
    case 'rsqrt': return round(1 / round(Math.sqrt(x)));
    case 'recip': return round(1 / x);
    case 'relu': return signBit(x) ? 0 : x;
    case 'relu6': return pmin(6, x > 0 ? x : 0);
    case 'step': return Number.isNaN(x) ? x : x > 0 ? 1 : y;
    case 'clip': return pmin(z, pmax(y, x));
  }
}

function run(p: ElementwiseProgram, inputs: ArrayLike<number>[], out: Float32Array | Float64Array, round: (v: number) => number): void {
  const nIn = p.inputs.length;
  const firstImm = 1 + nIn;
  const regs = new Float64Array(firstImm + p.immediates.length + p.registers);
  p.immediates.forEach((v, j) => { regs[firstImm + j] = round(v); });
  const C = p.channels;
  for (let i = 0; i < out.length; i++) {
    for (let j = 0; j < nIn; j++) {
      const kind = p.inputs[j];
      regs[1 + j] = inputs[j][kind === 'full' ? i : kind === 'scalar' ? 0 : i % C];
    }
    for (const ins of p.code) regs[ins.dst] = apply(ins.op, regs[ins.a], regs[ins.b ?? ins.a], regs[ins.c ?? ins.a], round);
    out[i] = regs[0];
  }
}

/** Scalar twin of elementwise.c: the same bits. */
export function runElementwiseJs(p: ElementwiseProgram, inputs: Float32Array[], out: Float32Array): void {
  run(p, inputs, out, fround);
}

/** Float64 reference: the same program without rounding to float32 between ops. */
export function runElementwiseF64(p: ElementwiseProgram, inputs: ArrayLike<number>[], out: Float64Array): void {
  run(p, inputs, out, (v) => v);
}

/** Throws unless `inputs` are what program `p` reads for an output of `n` values (a stale plan). */
export function checkElementwiseInputs(p: ElementwiseProgram, inputs: TensorInfo[], n: number): void {
  if (inputs.length !== p.inputs.length) throw new Error(`the fused element-wise kernel takes ${p.inputs.length} inputs, got ${inputs.length}`);
  inputs.forEach((t, j) => {
    const want = p.inputs[j] === 'full' ? n : p.inputs[j] === 'scalar' ? 1 : p.channels;
    if (t.dtype !== 'float32' || sizeOf(t.shape) !== want) throw new Error(`the fused element-wise kernel's input ${j} (${p.inputs[j]}) should hold ${want} float32 values, it is [${t.shape.join(', ')}] ${t.dtype}: rebuild the plan`);
  });
}

/**
 * Runners a backend puts in place of {@link runElementwise} (the native backend: its addon's pool),
 * by backend name; one returning null leaves the call to runElementwise (a small output).
 */
export const elementwiseRunners = new Map<string, (backend: unknown, p: ElementwiseProgram, inputs: TensorInfo[], shape: number[]) => TensorInfo | null>();

/** Floats per block (a multiple of 4; with channel inputs, a whole number of rows). */
const BLOCK = 512;

/** The block length for an output of `n` values with `channels` per row. */
export function blockLength(p: ElementwiseProgram, n: number): number {
  if (!p.inputs.includes('channel')) return Math.min(BLOCK, Math.max(4, n));
  const C = p.channels;
  return C >= BLOCK ? C : C * Math.floor(BLOCK / C);
}

/**
 * Run `p` on the wasm (or native) backend: `inputs` as the program lists them, the output of
 * `shape`. SIMD where the module runs here, else the JavaScript twin (same bits).
 */
export function runElementwise(backendArg: unknown, p: ElementwiseProgram, inputs: TensorInfo[], shape: number[]): TensorInfo {
  const backend = asWasm(backendArg);
  const n = sizeOf(shape);
  const C = p.channels;
  checkElementwiseInputs(p, inputs, n);
  const out = backend.makeOutput([...shape], 'float32');
  if (n === 0) return out;
  const kernels = simdKernelSwitch.enabled ? trainKernels(backend) : null;
  if (kernels === null) {
    runElementwiseJs(p, inputs.map((t) => f32(backend, t)), f32(backend, out));
    return out;
  }
  const L = blockLength(p, n);
  const nIn = p.inputs.length;
  const operands = 1 + nIn + p.immediates.length + p.registers;
  // Fixed blocks: the scalar and channel inputs repeated over a block, the immediates, the registers.
  const fixedInputs = p.inputs.filter((k) => k !== 'full').length;
  const blocks = fixedInputs + p.immediates.length + p.registers;
  const ints = 5 * p.code.length + 2 * operands;
  const scratch = backend.makeOutput([ints + blocks * L + 4], 'float32');
  try {
    const base = offsetOf(backend, scratch);
    // Blocks start 16-byte aligned.
    const blockBase = ((base + 4 * ints + 15) & ~15) >>> 0; // unsigned: offsets reach 4 GiB
    const heap = backend.wasm.HEAPU8.buffer;
    const prog = new Int32Array(heap, base, ints);
    p.code.forEach((ins, k) => prog.set([OP[ins.op], ins.dst, ins.a, ins.b ?? ins.a, ins.c ?? ins.a], 5 * k));
    const table = prog.subarray(5 * p.code.length);
    const fblocks = new Float32Array(heap, blockBase, blocks * L);
    let next = 0;
    const fixed = () => blockBase + 4 * L * next++;
    table[0] = 1;
    table[1] = offsetOf(backend, out);
    const heapF = new Float32Array(heap);
    inputs.forEach((t, j) => {
      const kind = p.inputs[j];
      if (kind === 'full') {
        table[2 + 2 * j] = 1;
        table[3 + 2 * j] = offsetOf(backend, t);
        return;
      }
      const at = fixed();
      const dst = (at - blockBase) >> 2;
      const src = offsetOf(backend, t) >>> 2; // unsigned: offsets reach 4 GiB
      if (kind === 'scalar') fblocks.fill(heapF[src], dst, dst + L);
      else for (let r = 0; r < L; r += C) fblocks.set(heapF.subarray(src, src + C), dst + r);
      table[2 + 2 * j] = 0;
      table[3 + 2 * j] = at;
    });
    p.immediates.forEach((v, j) => {
      const at = fixed();
      fblocks.fill(v, (at - blockBase) >> 2, ((at - blockBase) >> 2) + L);
      const k = 1 + nIn + j;
      table[2 * k] = 0;
      table[2 * k + 1] = at;
    });
    for (let r = 0; r < p.registers; r++) {
      const k = 1 + nIn + p.immediates.length + r;
      table[2 * k] = 0;
      table[2 * k + 1] = fixed();
    }
    kernels.elementwise(base, p.code.length, base + 4 * 5 * p.code.length, n, L);
  } finally {
    backend.disposeData(scratch.dataId);
  }
  return out;
}
